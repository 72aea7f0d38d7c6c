package config

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/procedures/orca"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the generated blocks of docs/csm-releases.md and docs/configuration.md")

const (
	tableBegin = "<!-- generated from internal/catalog: begin -->\n"
	tableEnd   = "<!-- generated from internal/catalog: end -->\n"
)

// releaseTables renders the catalog's variants and the plans they yield as
// the tables docs/csm-releases.md shows.
func releaseTables() string {
	cfg := Default()
	var b strings.Builder
	b.WriteString("| service |")
	for _, r := range api.Releases {
		fmt.Fprintf(&b, " %s |", r)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(api.Releases)) + "\n")
	for _, s := range catalog.Services() {
		fmt.Fprintf(&b, "| %s |", s)
		for _, r := range api.Releases {
			p := cfg.Plan(r, s)
			cell := "`" + string(p.Procedure) + "`"
			switch note := catalog.NeedsOf(p.Procedure).Note; {
			case p.Procedure == api.NotInRelease && len(p.FollowUps) > 0:
				cell = "follow-up: " + p.FollowUps[0]
			case p.Procedure == api.NotInRelease:
				cell = "skipped: " + p.Reason
			case note != nil:
				cell += " (" + note(p.APIs) + ")"
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n| release | BOS API | HMNFD API | orca units, tried in order | NCN groups |\n|---|---|---|---|---|\n")
	for _, r := range api.Releases {
		apis, where := r.APIs(), orca.PlacementOn(r)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r, apis.BOSVersion(), apis.HMNFDVersion(),
			"`"+strings.Join(where.Units, "`, `")+"`", "`"+strings.Join(where.NCNGroups, "`, `")+"`")
	}
	b.WriteString("\netcd cluster per service (namespace " + catalog.EtcdNamespace + "; what repopulate plan reads and counts):\n\n| service |")
	for _, r := range api.Releases {
		fmt.Fprintf(&b, " %s |", r)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(api.Releases)) + "\n")
	var unconfirmed []string
	for _, e := range catalog.Entries() {
		fmt.Fprintf(&b, "| %s |", e.Service)
		for _, r := range api.Releases {
			c := e.EtcdOn(r)
			cell := "none"
			if c.Kind != catalog.EtcdNone {
				cell = fmt.Sprintf("%s `%s`", c.Kind, c.Name)
			}
			if len(c.Holds) > 0 {
				var holds []string
				for _, d := range c.Holds {
					holds = append(holds, string(d))
				}
				cell += ": counts " + strings.Join(holds, ", ")
			}
			if c.Unconfirmed != "" {
				cell += " **[UNCONFIRMED]**"
				if !slices.Contains(unconfirmed, c.Unconfirmed) {
					unconfirmed = append(unconfirmed, c.Unconfirmed)
				}
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	for _, u := range unconfirmed {
		b.WriteString("\n[UNCONFIRMED]: " + u + "\n")
	}
	return b.String()
}

// TestReleasesDocMatchesTheTable: docs/csm-releases.md shows what the code
// does on each release (go test ./internal/config -update-docs rewrites it).
func TestReleasesDocMatchesTheTable(t *testing.T) {
	checkGenerated(t, "../../docs/csm-releases.md", tableBegin, tableEnd, releaseTables())
}

// TestConfigurationDocShowsEverySetting: docs/configuration.md shows each
// service's keys and defaults as the catalog has them.
func TestConfigurationDocShowsEverySetting(t *testing.T) {
	checkGenerated(t, "../../docs/configuration.md",
		"<!-- generated from internal/catalog: settings begin -->\n", "<!-- generated from internal/catalog: settings end -->\n",
		"```yaml\n"+catalog.SettingsYAML()+"```\n")
}

// checkGenerated compares the block of path between begin and end with
// want, or rewrites it with -update-docs.
func checkGenerated(t *testing.T, path, begin, end, want string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no generated block (%q … %q)", path, begin, end)
	}
	if got := doc[i+len(begin) : j]; got != want {
		if *updateDocs {
			if err := os.WriteFile(path, []byte(doc[:i+len(begin)]+want+doc[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("%s differs from internal/catalog; run go test ./internal/config -update-docs\n--- doc\n%s\n--- code\n%s", path, got, want)
	}
}

// The documented defaults are a valid file that changes nothing.
func TestDocumentedSettingsAreTheDefaults(t *testing.T) {
	cfg := Default()
	if err := Parse([]byte(catalog.SettingsYAML()), &cfg); err != nil {
		t.Fatalf("the documented services block is refused: %v", err)
	}
	if !reflect.DeepEqual(cfg.Services, Default().Services) {
		t.Errorf("the documented services block differs from the defaults:\n%s", catalog.SettingsYAML())
	}
}
