// Package testenv finds the real binaries the tests run (make tools puts
// them in bin/) and starts the shared parts: a Kubernetes control plane and
// a Temporal dev server. A missing binary fails the test with the command
// that installs it; it never skips, so CI cannot pass without the real parts.
// The one exception is chromium, see Chromium.
package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/browser"
	"github.com/csmops/etcd-repopulate/internal/devserver"
	"github.com/csmops/etcd-repopulate/internal/pgtemporal"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
)

// RepoRoot is the directory of the project's go.mod.
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module github.com/csmops/etcd-repopulate\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("testenv: not inside the etcd-repopulate module")
		}
		dir = parent
	}
}

// BinDir holds the test binaries: $REPOPULATE_TOOLS_BIN, else bin/.
func BinDir() string {
	if d := os.Getenv("REPOPULATE_TOOLS_BIN"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "bin")
}

// Cluster starts a control plane for the calling test package. With
// controllers it is seeded like a CSM system and an etcd-operator stand-in
// runs until ctx ends.
func Cluster(ctx context.Context, dir string, controllers bool) (*simcluster.Cluster, error) {
	c, err := simcluster.Start(ctx, simcluster.Options{BinDir: BinDir(), Dir: dir, Controllers: controllers})
	if err != nil {
		return nil, err
	}
	if !controllers {
		return c, nil
	}
	go c.RunEtcdOperator(ctx, 500*time.Millisecond)
	if err := c.Seed(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Temporal starts a dev server with its database in dir.
func Temporal(ctx context.Context, dir string) (*devserver.Server, error) {
	return devserver.Start(ctx, filepath.Join(BinDir(), "temporal"), filepath.Join(dir, "temporal.db"), 0, 0)
}

// TemporalOnPostgres starts PostgreSQL and the Temporal server on it, set up
// by hack/temporal-setup.sh as the compose stack is.
func TemporalOnPostgres(ctx context.Context) (*pgtemporal.Server, error) {
	return pgtemporal.Start(ctx, pgtemporal.Options{BinDir: BinDir(), SetupScript: filepath.Join(RepoRoot(), "hack", "temporal-setup.sh")})
}

// BuildCommands builds the repopulate CLI and the repopulate-worker into
// dir and returns their paths.
func BuildCommands(dir string) (cli, worker string, err error) {
	cli, worker = filepath.Join(dir, "repopulate"), filepath.Join(dir, "repopulate-worker")
	for out, pkg := range map[string]string{cli: "./starter", worker: "./worker"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = RepoRoot()
		if msg, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("build %s: %v\n%s", pkg, err, msg)
		}
	}
	return cli, worker, nil
}

// ArtifactsEnv names a directory where tests keep what a person may want to
// look at afterwards (screenshots, logs), one subdirectory per test.
const ArtifactsEnv = "REPOPULATE_ARTIFACTS"

// Artifacts returns the test's artifact directory: $REPOPULATE_ARTIFACTS/<test>
// when set (relative to the repository root), kept; else a scratch directory
// removed only if the test passes.
func Artifacts(t testing.TB) string {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	if root := os.Getenv(ArtifactsEnv); root != "" {
		if !filepath.IsAbs(root) {
			root = filepath.Join(RepoRoot(), root)
		}
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir, err := os.MkdirTemp("", name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("artifacts kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// BrowserOptionalEnv, set to 1, lets the browser tests skip where chromium
// is not installed (a developer machine without root). Unset, as in make
// test, a missing chromium fails them.
const BrowserOptionalEnv = "REPOPULATE_BROWSER_OPTIONAL"

// Chromium fails t, or skips it when BrowserOptionalEnv=1, unless Debian's
// chromium is installed.
func Chromium(t testing.TB) {
	t.Helper()
	if browser.Available() {
		return
	}
	msg := fmt.Sprintf("chromium not found at %s: install it with %s", browser.Binary, browser.InstallCommand)
	if os.Getenv(BrowserOptionalEnv) == "1" {
		t.Skipf("%s (skipped: %s=1)", msg, BrowserOptionalEnv)
	}
	t.Fatalf("%s (or set %s=1 to skip the browser tests)", msg, BrowserOptionalEnv)
}

// Fatalf reports a set-up failure from TestMain, where there is no *testing.T.
func Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "testenv: "+format+"\n", args...)
	os.Exit(1)
}

// KeepDir returns a scratch directory for a package's shared parts.
func KeepDir(prefix string) string {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		Fatalf("scratch dir: %v", err)
	}
	return dir
}

// EqualJSON reports whether a and b encode to the same JSON.
func EqualJSON(a, b any) bool {
	x, errX := json.Marshal(a)
	y, errY := json.Marshal(b)
	return errX == nil && errY == nil && string(x) == string(y)
}
