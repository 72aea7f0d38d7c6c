package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

// TestStartAutoRunsWhatPlanNames is issue 12's acceptance for plan and
// start --services auto: with nothing wiped since the snapshot, no service
// lost data and start --services auto starts nothing; after a "rebuild" of
// only BSS's and HMNFD's data, repopulate plan names exactly bss and hmnfd,
// and start --services auto starts a run (a dry-run here: the selection is
// what is tested) of exactly those, with plan's verdicts recorded in it.
func TestStartAutoRunsWhatPlanNames(t *testing.T) {
	healthy(t)
	freshHMNFD(t, fleet)
	emu.SubscribeReadyCompute()
	// BSS as the emulator starts: the other tests find it so.
	t.Cleanup(func() {
		if err := emu.SetBootParams(csmemu.DefaultBootParams(emu.Components())); err != nil {
			t.Error(err)
		}
	})
	queue := "e2e-auto"
	cfgPath := writeConfig(t, testConfig)
	kc := cluster.Kubeconfig
	snapDir := filepath.Join(t.TempDir(), "snapshot")
	if out, stderr, code := repopulate(t, queue, "snapshot", "--out", snapDir, "--config", cfgPath, "--kubeconfig", kc); code != 0 {
		t.Fatalf("snapshot: exit %d\n%s\n%s", code, out, stderr)
	}
	startWorker(t, queue, testConfig, kc)
	auto := []string{"start", "--services", "auto", "--snapshot", snapDir, "--config", cfgPath, "--kubeconfig", kc, "--dry-run"}

	// Nothing wiped: nothing to start (meds cannot tell: its etcd is unconfirmed).
	out, stderr, code := repopulate(t, queue, append(auto, "--id", "e2e-auto-none")...)
	t.Logf("nothing wiped:\n%s", out)
	if code != 0 || !strings.Contains(out, "nothing to start: no service is known to have lost data") || strings.Contains(out, "started run") {
		t.Fatalf("nothing wiped: exit %d\n%s\n%s", code, out, stderr)
	}
	var notFound *serviceerror.NotFound
	if _, err := tc.DescribeWorkflowExecution(context.Background(), "e2e-auto-none", ""); !errors.As(err, &notFound) {
		t.Errorf("run e2e-auto-none: %v; want not found (nothing started)", err)
	}

	// The rebuild of BSS's and HMNFD's etcd: their data is gone.
	emu.WipeBSS()
	emu.ClearSubscriptions()

	out, stderr, code = repopulate(t, queue, "plan", "--snapshot", snapDir, "--config", cfgPath, "--kubeconfig", kc, "-o", "json")
	var rep struct {
		Services []struct {
			Service api.Service `json:"service"`
			Verdict string      `json:"verdict"`
		} `json:"services"`
		Start string `json:"start"`
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil {
		t.Fatalf("plan: exit %d %v\n%s\n%s", code, err, out, stderr)
	}
	var lost []string
	for _, s := range rep.Services {
		if s.Verdict == "lost data" {
			lost = append(lost, string(s.Service))
		}
	}
	if !slices.Equal(lost, []string{"bss", "hmnfd"}) || rep.Start != "repopulate start --services bss,hmnfd --snapshot "+snapDir {
		t.Fatalf("plan: lost data %v, start line %q; want bss, hmnfd\n%s", lost, rep.Start, out)
	}

	const run = "e2e-auto"
	out, stderr, code = repopulate(t, queue, append(auto, "--id", run, "--wait")...)
	t.Logf("after the rebuild:\n%s", out)
	if code != 0 || !strings.Contains(out, "--services auto: bss,hmnfd (the services plan found lost data)") || !strings.Contains(out, "started run "+run) {
		t.Fatalf("start --services auto: exit %d\n%s\n%s", code, out, stderr)
	}
	out, stderr, code = repopulate(t, queue, "status", run, "-o", "json")
	var st api.RunStatus
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status: exit %d %v\n%s\n%s", code, err, out, stderr)
	}
	var ran []string
	for _, s := range st.Services {
		ran = append(ran, string(s.Service))
	}
	if !slices.Equal(ran, []string{"bss", "hmnfd"}) || !st.DryRun || st.State != api.Done {
		t.Errorf("run %s: services %v, dry-run %v, state %s; want bss and hmnfd, a done dry-run", run, ran, st.DryRun, st.State)
	}
	if p := st.ChosenByPlan; p == nil || len(p.Services) != len(rep.Services) || p.ReferenceFrom != "the snapshot "+snapDir || p.Reference.IsZero() ||
		time.Since(p.Reference) > 10*time.Minute {
		t.Errorf("chosen by plan: %+v", st.ChosenByPlan)
	} else {
		for _, v := range p.Services {
			if (v.Verdict == "lost data") != slices.Contains(ran, string(v.Service)) || v.Reason == "" {
				t.Errorf("recorded verdict %+v does not match the run's services %v", v, ran)
			}
		}
	}
	out, _, _ = repopulate(t, queue, "report", run)
	for _, want := range []string{"Chosen by plan (--services auto; release csm-1.0, reference: the snapshot " + snapDir, "  bss          lost data    BSS boot parameters: 0 now, ",
		"  hmnfd        lost data    HMNFD subscriptions: 0 now, "} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
