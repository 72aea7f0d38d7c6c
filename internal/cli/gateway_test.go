package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

// The CSM API gateway the snapshot and plan tests read: exported for
// package cli_test.

// GatewayOf starts an emulator of release (empty: the emulator's default)
// with two computes (BSS holds their boot parameters) and template cos,
// and writes a config file that reaches it.
func GatewayOf(t *testing.T, release api.Release) (*csmemu.Emulator, string) {
	t.Helper()
	e := csmemu.New(csmemu.Options{Release: release, Components: csmemu.ComputeNodes(2)})
	base, err := e.Start(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := e.SetSessionTemplateJSON("cos", []byte(`{"boot_sets":{"c":{"node_roles_groups":["Compute"]}}}`)); err != nil {
		t.Fatal(err)
	}
	return e, CSMConfig(t, base)
}

// CSMConfig writes a config file that reaches the gateway at base with the
// client secret from a file.
func CSMConfig(t *testing.T, base string) string {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte(csmemu.DefaultClientSecret+"\n"), 0o600)
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("csm:\n  baseURL: %s\n  clientSecret:\n    file: %s\n  timeout: 5s\n", base, secret)), 0o600)
	return cfg
}
