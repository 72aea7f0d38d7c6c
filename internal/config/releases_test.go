package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/api"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the generated tables of docs/csm-releases.md")

const (
	tableBegin = "<!-- generated from internal/config/releases.go: begin -->\n"
	tableEnd   = "<!-- generated from internal/config/releases.go: end -->\n"
)

// releaseTables renders ReleaseTable and the plans it yields as the tables
// docs/csm-releases.md shows.
func releaseTables() string {
	cfg := Default()
	var b strings.Builder
	b.WriteString("| service |")
	for _, f := range ReleaseTable {
		fmt.Fprintf(&b, " %s |", f.Release)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(ReleaseTable)) + "\n")
	for _, s := range api.AllServices {
		fmt.Fprintf(&b, "| %s |", s)
		for _, f := range ReleaseTable {
			p := cfg.Plan(f.Release, s)
			cell := "`" + string(p.Procedure) + "`"
			switch {
			case p.Procedure == api.NotInRelease && len(p.FollowUps) > 0:
				cell = "follow-up: " + p.FollowUps[0]
			case p.Procedure == api.NotInRelease:
				cell = "skipped: " + p.Reason
			case s == api.BOS:
				cell += fmt.Sprintf(" (BOS %s)", p.APIs.BOSVersion())
			case s == api.CPS:
				cell += fmt.Sprintf(" (BOS %s sessions)", p.APIs.BOSVersion())
			case s == api.HMNFD:
				cell += fmt.Sprintf(" (HMNFD %s)", p.APIs.HMNFDVersion())
			case s == api.FAS:
				cell += " (or `rerun-job` where services.fas.job names a Job that exists)"
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n| release | BOS API | HMNFD API | orca units, tried in order | NCN groups |\n|---|---|---|---|---|\n")
	for _, f := range ReleaseTable {
		apis := f.Release.APIs()
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", f.Release, apis.BOSVersion(), apis.HMNFDVersion(),
			"`"+strings.Join(f.OrcaUnits, "`, `")+"`", "`"+strings.Join(f.NCNGroups, "`, `")+"`")
	}
	return b.String()
}

// TestReleasesDocMatchesTheTable: docs/csm-releases.md shows what the code
// does on each release (go test ./internal/config -update-docs rewrites it).
func TestReleasesDocMatchesTheTable(t *testing.T) {
	const path = "../../docs/csm-releases.md"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i, j := strings.Index(doc, tableBegin), strings.Index(doc, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no generated block (%q … %q)", path, tableBegin, tableEnd)
	}
	want := releaseTables()
	if got := doc[i+len(tableBegin) : j]; got != want {
		if *updateDocs {
			if err := os.WriteFile(path, []byte(doc[:i+len(tableBegin)]+want+doc[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("%s differs from internal/config/releases.go; run go test ./internal/config -run TestReleasesDocMatchesTheTable -update-docs\n--- doc\n%s\n--- code\n%s", path, got, want)
	}
}
