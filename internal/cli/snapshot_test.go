package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/cli"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/snapshot"
)

func execute(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Execute(ctx, args, cli.Streams{Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// noKube makes sure no Kubernetes credentials are found from the test's
// environment.
func noKube(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
}

// gateway starts an emulator holding what a snapshot saves, and writes a
// config file that reaches it.
func gateway(t *testing.T) (*csmemu.Emulator, string) {
	t.Helper()
	e, cfg := cli.GatewayOf(t, "")
	e.Subscribe("x1000c0s0b0n0")
	e.SetFASActions([]csm.FASAction{{ActionID: "a1", State: "running"}})
	return e, cfg
}

func TestSnapshotThenStartFromIt(t *testing.T) {
	noKube(t)
	_, cfg := gateway(t)
	dir := filepath.Join(t.TempDir(), "snap")
	code, out, errOut := execute(t, context.Background(), "snapshot", "--out", dir, "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"bos-sessiontemplates  1", "hmnfd-subscriptions  1", "fas-actions  1", "bss-bootparameters  4", "(not saved: EtcdCluster services/cray-externaldns-etcd not saved: no Kubernetes credentials", "snapshot written to " + dir} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "note: no Kubernetes credentials") {
		t.Errorf("stderr lacks the note: %s", errOut)
	}

	// -o json is the manifest.
	dir2 := filepath.Join(t.TempDir(), "snap2")
	code, out, errOut = execute(t, context.Background(), "snapshot", "--out", dir2, "--config", cfg, "-o", "json")
	var m snapshot.Manifest
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil || len(m.Parts) != 7 {
		t.Fatalf("exit %d, manifest %+v: %s %s", code, m, out, errOut)
	}

	// start --snapshot reads it and says what it will restore before it
	// dials Temporal (unreachable here, so the run itself fails with 1).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, out, errOut = execute(t, ctx, "start", "--snapshot", dir, "--address", "127.0.0.1:1")
	if code != cli.ExitFailed || !strings.Contains(out, "snapshot "+dir+" (taken ") || !strings.Contains(out, "1 BOS session templates to restore, 1 subscribed xnames to check in HMNFD, 1 unfinished FAS actions") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

func TestSnapshotBadInputs(t *testing.T) {
	noKube(t)
	e, cfg := gateway(t)
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "notes.txt"), []byte("mine"), 0o600)
	kubeSecret := filepath.Join(t.TempDir(), "kube.yaml")
	os.WriteFile(kubeSecret, []byte("csm:\n  baseURL: "+e.URL()+"\n"), 0o600)
	noURL := filepath.Join(t.TempDir(), "nourl.yaml")
	os.WriteFile(noURL, []byte("release: csm-1.2\n"), 0o600)
	for _, tc := range []struct {
		name  string
		input string // for docs/bad-input.md
		args  []string
		want  string
	}{
		{"no out", "snapshot without --out", []string{"snapshot", "--config", cfg}, "--out DIR is required"},
		{"out not empty", "snapshot --out DIR, DIR not empty", []string{"snapshot", "--out", full, "--config", cfg}, "is not empty: give a new directory, or --force"},
		{"config missing", "snapshot --config /nonexistent.yaml", []string{"snapshot", "--out", t.TempDir() + "/s", "--config", "/nonexistent.yaml"}, "--config: config file: open /nonexistent.yaml"},
		{"no baseURL", "snapshot --config FILE, FILE without csm.baseURL", []string{"snapshot", "--out", t.TempDir() + "/s", "--config", noURL}, "csm.baseURL is not set"},
		{"secret in kubernetes, no credentials", "snapshot, client secret in Kubernetes, no Kubernetes credentials", []string{"snapshot", "--out", t.TempDir() + "/s", "--config", kubeSecret}, "Kubernetes secret default/admin-client-auth (csm.clientSecret.kubernetes) but there are no Kubernetes credentials: give --kubeconfig"},
		{"kubeconfig missing", "snapshot --kubeconfig /nonexistent", []string{"snapshot", "--out", t.TempDir() + "/s", "--config", cfg, "--kubeconfig", "/nonexistent"}, "--kubeconfig: stat /nonexistent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.ResetCounters()
			code, _, errOut := execute(t, context.Background(), tc.args...)
			if code != cli.ExitBadInput || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errOut, tc.want)
			}
			if n := len(e.RequestCounts()); n != 0 {
				t.Errorf("bad input still reached the gateway (%d paths)", n)
			}
			badinput.Record(t, badinput.Case{Area: badinput.CLI, Input: tc.input, Message: badinput.Line(errOut, tc.want),
				Exit: fmt.Sprint(code), Unchanged: "no request reached the gateway (emulator counted none); nothing written"})
		})
	}
	if b, _ := os.ReadFile(filepath.Join(full, "notes.txt")); string(b) != "mine" {
		t.Error("the non-empty --out was changed")
	}

	// The gateway refusing the secret is not bad input: exit 1, and nothing written.
	e.Fail(csm.DefaultTokenPath, 401, -1)
	out := filepath.Join(t.TempDir(), "s")
	code, _, errOut := execute(t, context.Background(), "snapshot", "--out", out, "--config", cfg)
	if code != cli.ExitFailed || !strings.Contains(errOut, "snapshot not taken, nothing written to "+out) {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed snapshot left its directory")
	}
	badinput.Record(t, badinput.Case{Area: badinput.Remote, Input: "CSM token endpoint answers 401 to snapshot", Message: badinput.Line(errOut, "snapshot not taken"),
		Exit: fmt.Sprint(code), Unchanged: "snapshot read-only; its --out directory does not exist afterwards"})
}

func TestStartSnapshotBadInputs(t *testing.T) {
	noKube(t)
	_, cfg := gateway(t)
	dir := filepath.Join(t.TempDir(), "snap")
	if code, _, errOut := execute(t, context.Background(), "snapshot", "--out", dir, "--config", cfg); code != 0 {
		t.Fatal(errOut)
	}
	subs := filepath.Join(dir, snapshot.PartSubscriptions+".json")
	b, _ := os.ReadFile(subs)
	os.WriteFile(subs, bytes.Replace(b, []byte("x1000c0s0b0n0"), []byte("x1000c0s9b0n0"), 1), 0o640)
	for _, tc := range []struct {
		name, input, dir, want string
	}{
		{"not a snapshot", "start --snapshot DIR, DIR without manifest.json", t.TempDir(), "no manifest.json: give the directory repopulate snapshot --out wrote"},
		{"tampered", "start --snapshot DIR, a file changed since it was taken", dir, subs + ": the checksum does not match manifest.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// An unreachable Temporal: had validation passed, the exit would be 1.
			code, out, errOut := execute(t, context.Background(), "start", "--snapshot", tc.dir, "--address", "127.0.0.1:1")
			if code != cli.ExitBadInput || !strings.Contains(errOut, tc.want) || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errOut, tc.want)
			}
			badinput.Record(t, badinput.Case{Area: badinput.CLI, Input: tc.input, Message: badinput.Line(errOut, tc.want),
				Exit: fmt.Sprint(code), Unchanged: "refused before dialing Temporal (--address 127.0.0.1:1 would exit 1); nothing printed"})
		})
	}
}
