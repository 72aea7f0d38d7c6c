// Package badinput lets the tests that prove how a bad input is refused
// record what they observed, so that docs/bad-input.md is generated from
// passing tests instead of written by hand (make bad-input-doc).
package badinput

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// EnvLog names the file Record appends to; without it Record does nothing,
// so the ordinary test runs write no file.
const EnvLog = "REPOPULATE_BAD_INPUT_LOG"

// Areas, in the order the document lists them.
const (
	CLI     = "CLI flags"
	Config  = "config file"
	Request = "request"
	Cluster = "cluster state"
	Remote  = "remote answers"
)

// Areas is the document's order of areas.
var Areas = []string{CLI, Config, Request, Cluster, Remote}

// Case is one row of docs/bad-input.md.
type Case struct {
	Area string `json:"area"`
	// Input is the bad input. It must be a string literal in the calling
	// test file (or a []string literal of a command line, words joined by
	// spaces): TestDocRowsHaveTheirTests checks it, so that a row cannot
	// outlive its test.
	Input string `json:"input"`
	// Message is the text the test observed, never a copy written by hand.
	Message string `json:"message"`
	// Exit is the CLI exit code, or what stands for it where there is no
	// CLI ("worker exits 1", "run fails, type X", "error kind Busy").
	Exit string `json:"exit"`
	// Unchanged says what the test checked to prove nothing was changed.
	Unchanged string `json:"unchanged"`
	// Test is filled in by Record.
	Test string `json:"test"`
}

// Record writes c to the log once the test has finished, and only if it
// passed: a row then stands for assertions that held.
func Record(t testing.TB, c Case) {
	t.Helper()
	if !slices.Contains(Areas, c.Area) {
		t.Errorf("badinput.Record: area %q is not one of %q", c.Area, Areas)
	}
	if strings.TrimSpace(c.Input) == "" || strings.TrimSpace(c.Message) == "" || c.Exit == "" || c.Unchanged == "" {
		t.Errorf("badinput.Record: every field is needed: %+v", c)
	}
	c.Test = t.Name()
	path := os.Getenv(EnvLog)
	if path == "" {
		return
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		line, err := json.Marshal(c)
		if err != nil {
			t.Errorf("badinput.Record: %v", err)
			return
		}
		// One write of one line with O_APPEND: lines from parallel tests and
		// test processes do not interleave.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Errorf("badinput.Record: %v", err)
			return
		}
		defer f.Close()
		if _, err := f.Write(append(line, '\n')); err != nil {
			t.Errorf("badinput.Record: %v", err)
		}
	})
}

// Line is the first line of observed output that contains want, trimmed:
// the message as shown, without the rest of a long report. It is the whole
// output, trimmed, when no line does.
func Line(observed, want string) string {
	for _, l := range strings.Split(observed, "\n") {
		if strings.Contains(l, want) {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(observed)
}
