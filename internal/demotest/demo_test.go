// Package demotest runs `make demo`'s script, hack/demo.sh, as a person
// would, on ports and in a directory of its own so that a demo already
// running is left alone.
package demotest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/loopback"
	"github.com/csmops/etcd-repopulate/internal/testenv"
)

// TestDemo: snapshot, "rebuild", a run of all nine services whose cps gates
// the script approves; the run ends done and every process stops.
func TestDemo(t *testing.T) {
	root := testenv.RepoRoot()
	dir := testenv.KeepDir("demo-")
	ports, err := loopback.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	address := fmt.Sprintf("127.0.0.1:%d", ports[0])
	env := append(os.Environ(), "DEMO_DIR="+dir, fmt.Sprintf("DEMO_TEMPORAL_PORT=%d", ports[0]),
		fmt.Sprintf("DEMO_UI_PORT=%d", ports[1]), fmt.Sprintf("DEMO_WORKER_HTTP_PORT=%d", ports[2]), "DEMO_AUTO_APPROVE=1")
	script := filepath.Join(root, "hack", "demo.sh")
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			stop := exec.Command(script, "stop")
			stop.Env = env
			_ = stop.Run()
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("demo logs kept in %s", dir)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "start")
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	started := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("hack/demo.sh start: %v after %s\n%s", err, time.Since(started).Round(time.Second), out.String())
	}
	t.Logf("hack/demo.sh start took %s", time.Since(started).Round(time.Second))
	m := regexp.MustCompile(`demo: run (demo-[0-9-]+) is done: 9 of 9 services done`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no line saying the run is done with 9 of 9 services:\n%s", out.String())
	}
	for _, want := range []string{"1. before the rebuild", "clear-templates: 204", "approve " + m[1] + " cps-unmount", "approve " + m[1] + " cps-reboot", "make demo-stop"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// repopulate plan is shown before the run: the rebuild wiped BOS's
	// templates and HMNFD's subscriptions, so it names exactly bos and hmnfd.
	plan := regexp.MustCompile(`(?s)demo: 3\. what did the rebuild lose\?.*demo: 4\. the run`).FindString(out.String())
	t.Logf("the plan step:\n%s", plan)
	if !strings.Contains(plan, "to repopulate exactly the services that lost data:") || !strings.Contains(plan, "repopulate start --services bos,hmnfd --snapshot ") {
		t.Errorf("the plan step does not name exactly bos and hmnfd:\n%s", out.String())
	}

	// The report, read back through the CLI as a person would.
	rep := exec.CommandContext(ctx, filepath.Join(root, "bin", "repopulate"), "--address", address, "report", m[1], "-o", "json")
	b, err := rep.Output()
	if err != nil {
		t.Fatalf("repopulate report: %v\n%s", err, b)
	}
	var report api.Report
	if err := json.Unmarshal(b, &report); err != nil {
		t.Fatal(err)
	}
	if report.State != api.Done || len(report.Services) != len(catalog.Services()) {
		t.Fatalf("report: state %s, %d services", report.State, len(report.Services))
	}
	for _, s := range report.Services {
		if s.State != api.Done {
			t.Errorf("%s: %s %s", s.Service, s.State, s.Message)
		}
		for _, g := range s.Gates {
			if g.State != api.GateApproved {
				t.Errorf("gate %s: %s", g.Name, g.State)
			}
		}
	}

	stop := exec.Command(script, "stop")
	stop.Env = env
	if b, err := stop.CombinedOutput(); err != nil {
		t.Fatalf("hack/demo.sh stop: %v\n%s", err, b)
	}
	stopped = true
	// Nothing the demo started is left: no process runs from its directory.
	procs, _ := exec.Command("pgrep", "-f", dir).Output()
	if s := strings.TrimSpace(string(procs)); s != "" {
		t.Errorf("processes still running after stop: %s", s)
	}
}
