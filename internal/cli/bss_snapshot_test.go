package cli_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/cli"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/snapshot"
)

// releaseSnapshot takes a snapshot of an emulator of release rel.
func releaseSnapshot(t *testing.T, rel api.Release) string {
	t.Helper()
	noKube(t)
	_, cfg := cli.GatewayOf(t, rel)
	dir := filepath.Join(t.TempDir(), "snap")
	if code, _, errOut := execute(t, context.Background(), "snapshot", "--out", dir, "--config", cfg); code != 0 {
		t.Fatal(errOut)
	}
	return dir
}

// editManifest rewrites dir's manifest through edit.
func editManifest(t *testing.T, dir string, edit func(*snapshot.Manifest)) {
	t.Helper()
	path := filepath.Join(dir, snapshot.ManifestFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m snapshot.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(&m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestStartCarriesGroupedBootParameters: a bss run from a CSM 1.5
// snapshot carries BSS's boot parameters grouped (two computes with the
// same parameters: one group); a run without bss does not.
func TestStartCarriesGroupedBootParameters(t *testing.T) {
	dir := releaseSnapshot(t, api.CSM15)
	// An unreachable Temporal: validation passed if the exit is 1 after the description.
	code, out, errOut := execute(t, context.Background(), "start", "--services", "bss", "--snapshot", dir, "--address", "127.0.0.1:1")
	if code != 1 || !strings.Contains(out, "BSS boot parameters in 1 groups of identical entries to offer at gate bss-restore") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = execute(t, context.Background(), "start", "--services", "hmnfd", "--snapshot", dir, "--address", "127.0.0.1:1")
	if code != 1 || strings.Contains(out, "BSS boot parameters") {
		t.Fatalf("hmnfd only: exit %d, stdout %q", code, out)
	}
}

// TestStartRefusesSnapshotWithoutBSSForARestoringRun: a snapshot without
// bss-bootparameters.json whose probes point to a release that restores
// BSS from it (CSM 1.6: no BOS v1), and one whose grouped boot parameters
// are too large for a run's input, are refused before Temporal is dialled.
func TestStartRefusesSnapshotWithoutBSSForARestoringRun(t *testing.T) {
	noBSS := releaseSnapshot(t, api.CSM16)
	editManifest(t, noBSS, func(m *snapshot.Manifest) {
		var parts []snapshot.Part
		for _, p := range m.Parts {
			if p.Name != snapshot.PartBootParameters {
				parts = append(parts, p)
			}
		}
		m.Parts = parts
	})
	os.Remove(filepath.Join(noBSS, snapshot.PartBootParameters+".json"))

	big := releaseSnapshot(t, api.CSM15)
	// 3,000 hosts each with its own parameters: nothing to group.
	var bs []csm.BootParams
	for i := range 3000 {
		bs = append(bs, csm.BootParams{Hosts: []string{fmt.Sprintf("x1000c%ds%db0n0", i/8, i%8)}, Kernel: "s3://boot-images/k", Params: fmt.Sprintf("%0600d", i)})
	}
	raw, _ := json.Marshal(bs)
	file := snapshot.PartBootParameters + ".json"
	if err := os.WriteFile(filepath.Join(big, file), raw, 0o640); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	editManifest(t, big, func(m *snapshot.Manifest) {
		for i := range m.Parts {
			if m.Parts[i].Name == snapshot.PartBootParameters {
				m.Parts[i].Count, m.Parts[i].SHA256 = len(bs), hex.EncodeToString(sum[:])
			}
		}
	})
	for _, tc := range []struct {
		name, input, dir string
		want             []string
	}{
		{"no bss data", "start --services bss --snapshot DIR, DIR taken on CSM 1.6 without bss-bootparameters.json", noBSS,
			[]string{"the snapshot has no bss-bootparameters.json", "csm-1.6", "repopulate snapshot --out DIR", "leave bss out of --services"}},
		{"too large", "start --services bss --snapshot DIR, DIR with 3,000 hosts' distinct BSS boot parameters", big,
			[]string{"above the 1.5 MiB a workflow start can carry", "3000 BSS boot parameter entries", "leave bss out of --services", file}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := execute(t, context.Background(), "start", "--services", "bss", "--snapshot", tc.dir, "--address", "127.0.0.1:1")
			if code != cli.ExitBadInput || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d", code, out, errOut, cli.ExitBadInput)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr does not say %q: %s", w, errOut)
				}
			}
			badinput.Record(t, badinput.Case{Area: badinput.CLI, Input: tc.input, Message: badinput.Line(errOut, tc.want[0]),
				Exit: fmt.Sprint(code), Unchanged: "refused before dialing Temporal (--address 127.0.0.1:1 would exit 1); nothing printed"})
		})
	}
}
