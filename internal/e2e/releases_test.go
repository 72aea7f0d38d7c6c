package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/productcatalog"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/workerconfig"
)

// releaseEmulator starts the CSM emulator of one release with the e2e
// system's computes, and an orca player for it on the shared sshd fleet;
// the worker configuration points at both and takes FAS's loader through
// the API, which every release has.
func releaseEmulator(t *testing.T, rel api.Release) (*csmemu.Emulator, config.Config) {
	t.Helper()
	e, sys, err := testenv.Emulator(t.TempDir(), testenv.CSMOptions{Release: rel, ClientSecret: clientSecret, Computes: computeNodes})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go testenv.OrcaResubscribes(ctx, e, fleet)
	t.Cleanup(func() { cancel(); e.Close() })
	sys.SecretFile, sys.SSHConfig, sys.KnownHosts = system.SecretFile, system.SSHConfig, system.KnownHosts
	c := workerconfig.Short(sys, 2*time.Minute)
	workerconfig.FAS(c).Job = ""
	h := workerconfig.HMNFD(c)
	h.NCNGroups, h.BatchSize, h.Pods.ReadyTimeout = []string{ncnGroup}, 8, config.Duration(2*time.Minute)
	return e, c
}

// setCatalog makes the cluster's product catalog list versions (nil: no
// catalog); the e2e system's own (CSM 1.0) comes back when the test ends.
func setCatalog(t *testing.T, versions []string) {
	t.Helper()
	ctx := context.Background()
	cms := cluster.Core.CoreV1().ConfigMaps(productcatalog.Namespace)
	if err := cms.Delete(ctx, productcatalog.ConfigMap, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if versions != nil {
		if err := cluster.SeedProductCatalog(ctx, versions); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = cms.Delete(ctx, productcatalog.ConfigMap, metav1.DeleteOptions{})
		if err := cluster.SeedProductCatalog(ctx, simcluster.CatalogVersions[api.CSM10]); err != nil {
			t.Errorf("restore the product catalog: %v", err)
		}
	})
}

// hmnfdProcess plays HMNFD's process for the emulator e: when its pods have
// all been replaced by Ready ones, the process has restarted and is ready.
func hmnfdProcess(t *testing.T, e *csmemu.Emulator) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sel := metav1.ListOptions{LabelSelector: simcluster.NameLabel + "=cray-hmnfd"}
	pods, err := cluster.Core.CoreV1().Pods(simcluster.Namespace).List(ctx, sel)
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("cray-hmnfd pods: %v (%d)", err, len(pods.Items))
	}
	old := map[types.UID]bool{}
	for _, p := range pods.Items {
		old[p.UID] = true
	}
	go func() {
		for ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
			now, err := cluster.Core.CoreV1().Pods(simcluster.Namespace).List(ctx, sel)
			if err != nil || len(now.Items) == 0 || simcluster.ReadyPods(now.Items) != len(now.Items) {
				continue
			}
			replaced := true
			for _, p := range now.Items {
				replaced = replaced && !old[p.UID]
			}
			if replaced {
				e.RestartHMNFD()
				return
			}
		}
	}()
}

// releaseProcedures is what each service of a run did, for the log.
func releaseProcedures(report api.Report) string {
	var lines []string
	for _, s := range report.Services {
		var steps []string
		for _, st := range s.Steps {
			steps = append(steps, st.Name+"="+string(st.State))
		}
		lines = append(lines, fmt.Sprintf("  %s: %s [%s] %s", s.Service, s.State, strings.Join(steps, " "), s.Message))
	}
	return strings.Join(lines, "\n")
}

// TestNineServicesOnEachRelease is issue 10's acceptance run: against the
// emulator of CSM 1.0 (BOS v1 only, HMNFD v1 only, no cray-fas-loader Job
// in the cluster), 1.2, 1.3 and 1.5, release: auto finds the release in a
// seeded product catalog and the probes confirm it; a snapshot taken before
// the rebuild restores the templates where they were in etcd; HMNFD, left
// not ready by the rebuild, has its pods restarted before orca; services
// the release lacks are skipped with the reason; on 1.5 BSS, untouched by
// the rebuild, is compared with the snapshot and needs no restore.
func TestNineServicesOnEachRelease(t *testing.T) {
	for _, rel := range []api.Release{api.CSM10, api.CSM12, api.CSM13, api.CSM15} {
		t.Run(string(rel), func(t *testing.T) {
			healthy(t)
			e, cfg := releaseEmulator(t, rel)
			versions := simcluster.CatalogVersions[rel]
			setCatalog(t, versions)
			ctx := context.Background()
			if rel == api.CSM10 {
				// FAS removed its loader Job before CSM 1.0.
				background := metav1.DeletePropagationBackground
				if err := cluster.Core.BatchV1().Jobs(simcluster.Namespace).Delete(ctx, simcluster.FASLoaderJob, metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					for cluster.CreateJob(ctx, simcluster.FASLoaderJob) != nil && ctx.Err() == nil {
						time.Sleep(200 * time.Millisecond) // the old one is still going
					}
				})
				// A node without cray-dvs-orca: it restarts cray-orca instead.
				if err := fleet.SetCommandFailure("nid000001-nmn", "systemctl restart cray-dvs-orca", 5, "Failed to restart cray-dvs-orca.service: Unit cray-dvs-orca.service not found."); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = fleet.SetCommandFailure("nid000001-nmn", "systemctl restart cray-dvs-orca", 0, "") })
			}
			if err := e.SetSessionTemplateJSON("uan-2.4", []byte(`{"name":"uan-2.4","description":"UANs","enable_cfs":false,
				"boot_sets":{"uan":{"path":"s3://boot-images/uan/manifest.json","type":"s3","etag":"def","kernel_parameters":"console=ttyS0","node_roles_groups":["Application"],"rootfs_provider":"sbps"}}}`)); err != nil {
				t.Fatal(err)
			}
			if err := fleet.ResetRestarts(); err != nil {
				t.Fatal(err)
			}
			e.SubscribeReadyCompute()
			queue := "e2e-release-" + string(rel)
			cfgPath := writeConfig(t, cfg)
			snapDir := filepath.Join(t.TempDir(), "snapshot")
			if out, stderr, code := repopulate(t, queue, "snapshot", "--out", snapDir, "--config", cfgPath, "--kubeconfig", cluster.Kubeconfig); code != 0 {
				t.Fatalf("snapshot: exit %d\n%s\n%s", code, out, stderr)
			}
			savedTemplate, _ := e.SessionTemplateJSON("uan-2.4")

			// The rebuild: BOS templates are lost where they live in etcd
			// (1.0, 1.2); HMNFD loses its subscriptions and stays not ready.
			inEtcd := !rel.AtLeast(api.CSM13)
			if inEtcd {
				e.ClearSessionTemplates()
			}
			e.WipeHMNFD()
			hmnfdProcess(t, e)

			startWorker(t, queue, cfg, cluster.Kubeconfig)
			run := "e2e-release-" + strings.ReplaceAll(string(rel), ".", "")
			out, stderr, code := repopulate(t, queue, "start", "--id", run, "--snapshot", snapDir, "--wait", "-o", "json")
			var report api.Report
			if err := json.Unmarshal([]byte(out), &report); err != nil {
				t.Fatalf("start: exit %d, report not JSON: %v\n%s\n%s", code, err, out, stderr)
			}
			t.Logf("%s: release %s (%s)\n%s", rel, report.Release, report.Detection, releaseProcedures(report))
			if code != 0 || report.State != api.Done {
				t.Fatalf("run %s: exit %d: %s", report.State, code, report.Message)
			}
			if d := report.Detection; report.Release != rel || d == nil || !strings.Contains(d.How, "product catalog's highest CSM version is "+api.HighestVersion(versions)) || !strings.Contains(d.How, "confirmed by API probes") {
				t.Errorf("release %s, detection %+v", report.Release, report.Detection)
			}
			absent := map[api.Release][]api.Service{
				api.CSM10: nil,
				api.CSM12: {api.ExternalDNS},
				api.CSM13: {api.ExternalDNS},
				api.CSM15: {api.ExternalDNS, api.CRUS, api.REDS, api.CPS},
			}[rel]
			for _, s := range report.Services {
				switch {
				case contains(serviceNames(absent), string(s.Service)):
					if s.State != api.Skipped || s.Message == "" || len(s.FollowUps) == 0 {
						t.Errorf("%s on %s: %s %q, want skipped with the reason", s.Service, rel, s.State, s.Message)
					}
				case s.State != api.Done:
					t.Errorf("%s on %s: %s %s", s.Service, rel, s.State, s.Message)
				}
			}
			if rel == api.CSM15 {
				// The snapshot holds BSS's boot parameters and the rebuild
				// left BSS alone: compared, nothing to restore, no gate.
				if bss := service(report, api.BSS); !strings.Contains(bss.Message, "nothing to restore") || len(bss.Gates) != 1 || bss.Gates[0].State != api.GateSkipped {
					t.Errorf("bss on 1.5: %+v", bss)
				}
			}
			fas := service(report, api.FAS)
			if len(fas.Steps) == 0 || fas.Steps[0].Name != "start-fas-loader" {
				t.Errorf("fas on %s must use the loader API: %+v", rel, fas.Steps)
			}
			// HMNFD: found not ready, its pods restarted and waited for, before orca.
			h := service(report, api.HMNFD)
			steps := map[string]api.StepStatus{}
			for _, st := range h.Steps {
				steps[st.Name] = st
			}
			if c := steps["check-hmnfd-ready"]; c.State != api.Done || !strings.Contains(c.Message, "not ready") {
				t.Errorf("check-hmnfd-ready: %+v", c)
			}
			if r, o := steps["wait-hmnfd-ready"], steps["restart-orca"]; r.State != api.Done || steps["restart-hmnfd-pods"].State != api.Done || o.Started.Before(r.Ended) {
				t.Errorf("HMNFD must be restarted and ready before orca: %+v / %+v", r, o)
			}
			if rel == api.CSM10 {
				if !contains(h.OrcaUnits["cray-orca"], "nid000001-nmn") || len(h.OrcaUnits["cray-dvs-orca"]) != computeNodes+1 {
					t.Errorf("orca units on 1.0: %v", h.OrcaUnits)
				}
			} else if len(h.OrcaUnits["cray-orca"]) != computeNodes+2 {
				t.Errorf("orca units on %s: %v", rel, h.OrcaUnits)
			}
			// BOS: restored as the snapshot had it where it was lost;
			// checked, not restored, where it was kept.
			bos := service(report, api.BOS)
			got, ok := e.SessionTemplateJSON("uan-2.4")
			var gotV, wantV any
			_ = json.Unmarshal(got, &gotV)
			_ = json.Unmarshal(savedTemplate, &wantV)
			if !ok || !testenv.EqualJSON(gotV, wantV) {
				t.Errorf("template uan-2.4 after the run:\n%s\nwant\n%s", got, savedTemplate)
			}
			if wantStep := map[bool]string{true: "restore-bos-templates", false: "check-bos-templates"}[inEtcd]; len(bos.Steps) != 1 || bos.Steps[0].Name != wantStep {
				t.Errorf("bos on %s: steps %+v, want %s", rel, bos.Steps, wantStep)
			}
			text, _, _ := repopulate(t, queue, "report", run)
			if !strings.Contains(text, "CSM release "+string(rel)+": product catalog") || !strings.Contains(text, "Orca units restarted (hmnfd)") {
				t.Errorf("text report lacks the release or the orca units:\n%s", text)
			}
		})
	}
}

func serviceNames(ss []api.Service) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	sort.Strings(out)
	return out
}

// TestReleaseRefusalsChangeNothing: a release that cannot be told, and one
// the probes contradict, refuse the run before anything changes.
func TestReleaseRefusalsChangeNothing(t *testing.T) {
	cases := []struct {
		name, input string
		emulator    api.Release
		catalog     []string
		release     api.Release
		want        []string
	}{
		{"no catalog, probes inconclusive", "no ConfigMap services/cray-product-catalog, release: auto, APIs of CSM 1.3 (1.5 answers the probes alike)",
			api.CSM13, nil, "", []string{"cannot tell which CSM release this is", "ConfigMap services/cray-product-catalog not found", "they fit csm-1.3 or csm-1.5", "set release: in the worker config"}},
		{"configured release contradicted", "release: csm-1.3 on a system whose APIs are CSM 1.0's",
			api.CSM10, simcluster.CatalogVersions[api.CSM10], api.CSM13, []string{"release csm-1.3 is configured, but the CSM APIs answer like csm-1.0", "nothing was changed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			healthy(t)
			e, cfg := releaseEmulator(t, tc.emulator)
			if tc.release != "" {
				cfg.Release = tc.release
			}
			setCatalog(t, tc.catalog)
			before := fingerprint(t)
			requests := e.RequestCounts()
			queue := "e2e-release-refused-" + strings.ReplaceAll(tc.name, " ", "-")
			startWorker(t, queue, cfg, cluster.Kubeconfig)
			out, stderr, code := repopulate(t, queue, "start", "--wait")
			all := out + stderr
			if code != 1 {
				t.Errorf("exit %d, want 1\n%s", code, all)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
			sameFingerprint(t, before, tc.name, true)
			for path, n := range e.RequestCounts() {
				if n != requests[path] && !strings.HasPrefix(path, "/apis/bos/v") && !strings.HasPrefix(path, "/apis/hmnfd/hmi/v2/health") && !strings.Contains(path, "token") {
					t.Errorf("%s was called %d times: only the probes may be", path, n-requests[path])
				}
			}
			at := strings.Index(all, tc.want[0])
			if at < 0 {
				return // reported above
			}
			line := all[at:]
			if i := strings.Index(line, "\n"); i > 0 {
				line = line[:i]
			}
			badinput.Record(t, badinput.Case{Area: badinput.Cluster, Input: tc.input, Message: line,
				Exit: "exit 1: the run fails at preflight", Unchanged: "cluster fingerprint unchanged; the CSM APIs were only probed"})
		})
	}
}
