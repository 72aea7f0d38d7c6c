package browser_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/browser"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// pages: /late draws its text from a script after a delay, as a single-page
// app does; /busy also long-polls forever, as the Temporal UI does on a
// running workflow's page.
func pages(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/late", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<html><body>loading<script>
setTimeout(() => { document.body.textContent = "drawn late"; }, 700);
</script></body></html>`)
	})
	mux.HandleFunc("/busy", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<html><body>still running<script>
(async () => { for (;;) { try { await fetch("/poll"); } catch (e) {} } })();
</script></body></html>`)
	})
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func isPNG(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("%s is not a PNG (%d bytes)", path, len(data))
	}
}

func TestRenderWaitsForScriptText(t *testing.T) {
	testenv.Chromium(t)
	s := pages(t)
	shot := filepath.Join(t.TempDir(), "late.png")
	page, err := browser.Render(context.Background(), s.URL+"/late", browser.Options{Want: []string{"drawn late"}, Timeout: 30 * time.Second, Screenshot: shot})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.DOM, "<body>drawn late</body>") {
		t.Errorf("DOM: %s", page.DOM)
	}
	isPNG(t, shot)
	t.Logf("rendered in %s", page.Elapsed)
}

// A page that never settles ends at the timeout, with what it showed.
func TestRenderTimesOutOnABusyPage(t *testing.T) {
	testenv.Chromium(t)
	s := pages(t)
	shot := filepath.Join(t.TempDir(), "busy.png")
	started := time.Now()
	page, err := browser.Render(context.Background(), s.URL+"/busy", browser.Options{Want: []string{"never shown"}, Timeout: 10 * time.Second, Screenshot: shot})
	if err == nil || !strings.Contains(err.Error(), `does not show ["never shown"]`) {
		t.Fatalf("want a timeout naming the missing text, got %v", err)
	}
	// The wait ends at 10 s; collecting the DOM and screenshot may add a
	// little on a loaded machine, never a hang.
	if took := time.Since(started); took > 25*time.Second {
		t.Errorf("a 10 s render took %s", took)
	}
	if page == nil || !strings.Contains(page.Text, "still running") {
		t.Fatalf("page as far as it got: %+v", page)
	}
	isPNG(t, shot)
}
