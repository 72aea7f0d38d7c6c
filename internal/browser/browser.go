// Package browser renders a web page in Debian's chromium, headless, and
// reads what it shows: the page's visible text, its DOM and a screenshot.
//
// It speaks the DevTools protocol over --remote-debugging-pipe (no port, no
// websocket) instead of using --dump-dom/--screenshot with
// --virtual-time-budget: with those flags the Temporal UI's page of a running
// workflow never finishes (its polling keeps virtual time from running out),
// so chromium never returns. Here the caller says which texts must appear and
// the render ends as soon as they do, or at a hard timeout that kills
// chromium's whole process group.
package browser

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binary is Debian's chromium itself. /usr/bin/chromium is a wrapper script
// that adds flags from /etc/chromium.d (they differ between machines and one
// of its scripts breaks on hosts with two /dev/shm mounts); Render passes its
// own.
const Binary = "/usr/lib/chromium/chromium"

// InstallCommand installs Binary (pinned Debian package).
const InstallCommand = "hack/install-tools.sh chromium"

// Available reports whether Binary is installed.
func Available() bool {
	_, err := os.Stat(Binary)
	return err == nil
}

// Version is chromium's --version line.
func Version() (string, error) {
	out, err := exec.Command(Binary, "--version").Output()
	return strings.TrimSpace(string(out)), err
}

// Options shape one render.
type Options struct {
	// Want are texts that must all be visible (document.body.innerText)
	// before the page counts as rendered.
	Want []string
	// Timeout bounds the wait for Want, chromium's start included. Default
	// 60 s. Chromium's process group is killed collectGrace after it
	// whatever state the browser is in.
	Timeout time.Duration
	// Screenshot is a PNG file to write; written on timeout too, as it shows
	// what the page had drawn by then.
	Screenshot string
	// Width and Height of the window; default 1600×1200.
	Width, Height int
}

// Page is what a render saw.
type Page struct {
	// Text is the visible text (document.body.innerText) followed by that
	// of each same-origin iframe (the Temporal UI draws user metadata in
	// iframes); DOM the serialized top document
	// (document.documentElement.outerHTML); URL the address shown at the
	// end (location.href: single-page apps redirect).
	Text, DOM, URL string
	// Elapsed runs from starting chromium until every wanted text was visible
	// (or until the timeout).
	Elapsed time.Duration
}

// Render opens url in a fresh headless chromium with a throwaway profile and
// waits until every text in opts.Want is visible. On timeout it returns the
// page as far as it got with an error naming the missing texts.
func Render(ctx context.Context, url string, opts Options) (*Page, error) {
	if !Available() {
		return nil, fmt.Errorf("chromium not found at %s: run %s", Binary, InstallCommand)
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Minute
	}
	if opts.Width == 0 || opts.Height == 0 {
		opts.Width, opts.Height = 1600, 1200
	}
	hard, cancel := context.WithTimeout(ctx, opts.Timeout+collectGrace)
	defer cancel()
	c, err := launch(hard, opts.Width, opts.Height)
	if err != nil {
		return nil, err
	}
	defer c.close()

	page := &Page{}
	wait, cancelWait := context.WithTimeout(hard, opts.Timeout)
	defer cancelWait()
	if err = c.render(wait, url, opts.Want, page); err != nil && wait.Err() != nil {
		err = fmt.Errorf("%s: after %s the page does not show %q", url, time.Since(c.started).Round(time.Millisecond),
			missingTexts(page.Text, opts.Want))
	}
	page.Elapsed = time.Since(c.started)
	// The DOM and screenshot are collected after a failed wait too: they
	// show why it failed.
	if c.session != "" {
		for expr, into := range map[string]*string{"document.documentElement.outerHTML": &page.DOM, "location.href": &page.URL} {
			if evalErr := c.eval(hard, expr, into); evalErr != nil && err == nil {
				err = evalErr
			}
		}
		if opts.Screenshot != "" {
			if shotErr := c.screenshot(hard, opts.Screenshot); shotErr != nil && err == nil {
				err = shotErr
			}
		}
	}
	return page, err
}

// collectGrace is how long the DOM and screenshot may take after the wait.
const collectGrace = 15 * time.Second

func (c *conn) render(ctx context.Context, url string, want []string, page *Page) error {
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := c.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		return err
	}
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	if err := c.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached); err != nil {
		return err
	}
	c.session = attached.SessionID
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	if err := c.call(ctx, c.session, "Page.navigate", map[string]any{"url": url}, &nav); err != nil {
		return err
	}
	if nav.ErrorText != "" {
		return fmt.Errorf("open %s: %s", url, nav.ErrorText)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := c.eval(ctx, visibleText, &page.Text); err != nil {
			return err
		}
		missing := missingTexts(page.Text, want)
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// visibleText is the page's innerText and, depth first, its iframes'.
const visibleText = `(function text(d) {
  let s = d.body ? d.body.innerText : "";
  for (const f of d.querySelectorAll("iframe")) {
    try { if (f.contentDocument) s += "\n" + text(f.contentDocument); } catch (e) {}
  }
  return s;
})(document)`

func missingTexts(text string, want []string) []string {
	var missing []string
	for _, w := range want {
		if !strings.Contains(text, w) {
			missing = append(missing, w)
		}
	}
	return missing
}

func (c *conn) eval(ctx context.Context, expr string, into *string) error {
	var res struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := c.call(ctx, c.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res); err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return fmt.Errorf("evaluate %s: %s", expr, res.ExceptionDetails.Text)
	}
	s, _ := res.Result.Value.(string)
	*into = s
	return nil
}

func (c *conn) screenshot(ctx context.Context, path string) error {
	var shot struct {
		Data string `json:"data"`
	}
	if err := c.call(ctx, c.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot); err != nil {
		return err
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return os.WriteFile(path, png, 0o644)
}

// conn is one chromium process and its DevTools pipe: chromium reads
// NUL-terminated JSON commands on fd 3 and writes replies and events on fd 4.
type conn struct {
	cmd     *exec.Cmd
	profile string
	started time.Time
	session string

	in      io.WriteCloser
	writeMu sync.Mutex
	mu      sync.Mutex
	nextID  int
	waiting map[int]chan reply
	// dead is closed when the reply stream ends (chromium exited or was
	// killed); err says why.
	dead chan struct{}
	err  error
	// exited is closed once the process has been waited for.
	exited chan struct{}
}

type reply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func launch(ctx context.Context, width, height int) (*conn, error) {
	profile, err := os.MkdirTemp("", "chromium-profile-")
	if err != nil {
		return nil, err
	}
	args := []string{
		"--headless=new",
		"--remote-debugging-pipe",
		"--user-data-dir=" + profile,
		"--disable-gpu",
		// A container's /dev/shm is often 64 MB, too small for the renderer.
		"--disable-dev-shm-usage",
		fmt.Sprintf("--window-size=%d,%d", width, height),
		"--no-first-run", "--no-default-browser-check", "--disable-background-networking",
		"--disable-extensions", "--disable-sync", "--mute-audio",
	}
	if os.Geteuid() == 0 {
		// Chromium refuses to start its sandbox as root; it renders only the
		// test's own loopback pages here.
		args = append(args, "--no-sandbox")
	}
	args = append(args, "about:blank")
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		os.RemoveAll(profile)
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		cmdR.Close()
		cmdW.Close()
		os.RemoveAll(profile)
		return nil, err
	}
	cmd := exec.Command(Binary, args...)
	cmd.ExtraFiles = []*os.File{cmdR, outW}
	// Its own process group, so that a timeout kills the renderer, GPU and
	// zygote processes with it; Pdeathsig if the test process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c := &conn{cmd: cmd, profile: profile, started: time.Now(), in: cmdW,
		waiting: map[int]chan reply{}, dead: make(chan struct{}), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		cmdR.Close()
		cmdW.Close()
		outR.Close()
		outW.Close()
		os.RemoveAll(profile)
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	cmdR.Close()
	outW.Close()
	go func() { _ = cmd.Wait(); close(c.exited) }()
	go c.readReplies(outR)
	go func() {
		select {
		case <-ctx.Done():
			c.kill()
		case <-c.exited:
		}
	}()
	return c, nil
}

func (c *conn) readReplies(r *os.File) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			c.mu.Lock()
			c.err = fmt.Errorf("chromium closed its DevTools pipe: %w", err)
			c.mu.Unlock()
			close(c.dead)
			return
		}
		var m struct {
			ID int `json:"id"`
			reply
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
			continue // events: the render polls instead
		}
		c.mu.Lock()
		ch := c.waiting[m.ID]
		delete(c.waiting, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m.reply
		}
	}
}

// call sends method to the browser (session "") or to a page's session and
// decodes its result into result.
func (c *conn) call(ctx context.Context, session, method string, params, result any) error {
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	ch := make(chan reply, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	_, err = c.in.Write(append(data, 0))
	c.writeMu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("%s: %s", method, r.Error.Message)
		}
		if result == nil {
			return nil
		}
		return json.Unmarshal(r.Result, result)
	case <-c.dead:
		c.mu.Lock()
		defer c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, c.err)
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.waiting, id)
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// kill ends chromium's whole process group at once.
func (c *conn) kill() {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
}

// close asks chromium to quit, kills whatever is left of its process group
// anyway, and removes the profile.
func (c *conn) close() {
	quit, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c.call(quit, "", "Browser.close", struct{}{}, nil) == nil {
		select {
		case <-c.exited:
		case <-quit.Done():
		}
	}
	c.kill()
	<-c.exited
	c.in.Close()
	if err := os.RemoveAll(c.profile); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "browser: remove profile %s: %v\n", c.profile, err)
	}
}
