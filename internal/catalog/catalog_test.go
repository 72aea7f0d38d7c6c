package catalog

import (
	"slices"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/api"
)

func TestParse(t *testing.T) {
	all, err := Parse(nil)
	if err != nil || !slices.Equal(all, Services()) {
		t.Fatalf("default: %v %v, want every service of the catalog", all, err)
	}
	got, err := Parse([]string{" REDS", "bss", "reds", ""})
	if err != nil || !slices.Equal(got, []api.Service{api.BSS, api.REDS}) {
		t.Errorf("got %v %v, want [bss reds] in runbook order without duplicates", got, err)
	}
	_, err = Parse([]string{"bss", "dns", "hms"})
	if err == nil || !strings.Contains(err.Error(), `"dns", "hms"`) || !strings.Contains(err.Error(), Names()) {
		t.Errorf("unknown: %v", err)
	}
	if _, err := Parse([]string{" ", ""}); err == nil {
		t.Error("a list of blanks must be refused, not read as all")
	}
}

// Every entry is complete: settings whose defaults validate, a variant on
// the oldest release, needs for every procedure it runs, prerequisites
// that are services of the catalog, and no service listed twice.
func TestEveryEntryIsComplete(t *testing.T) {
	seen := map[api.Service]bool{}
	for _, e := range entries {
		if seen[e.Service] || e.Service == "" {
			t.Errorf("service %q listed twice or unnamed", e.Service)
		}
		seen[e.Service] = true
		if e.Title == "" || e.Does == "" || e.Settings == nil {
			t.Errorf("%s: title, what it does and settings are required", e.Service)
			continue
		}
		if errs := e.Settings().Validate("services." + string(e.Service)); len(errs) > 0 {
			t.Errorf("%s: defaults do not validate: %v", e.Service, errs)
		}
		if len(e.Variants) == 0 || e.Variants[0].Since != api.Releases[0] {
			t.Errorf("%s: the first variant must start at %s", e.Service, api.Releases[0])
		}
		for _, r := range api.Releases {
			v := e.Variant(r)
			_ = NeedsOf(v.Procedure) // panics on a procedure without needs
			if v.Procedure == api.NotInRelease && v.Reason == "" {
				t.Errorf("%s on %s: skipped without a reason", e.Service, r)
			}
		}
		for _, p := range e.After {
			if _, ok := Lookup(p.Service); !ok || p.Service == e.Service {
				t.Errorf("%s: prerequisite %q is not another service of the catalog", e.Service, p.Service)
			}
		}
	}
}

func TestVariantFollowsTheRelease(t *testing.T) {
	bos, _ := Lookup(api.BOS)
	for r, want := range map[api.Release]api.Procedure{api.CSM10: api.RestoreBOSTemplates, api.CSM12: api.RestoreBOSTemplates, api.CSM13: api.CheckBOSTemplates, api.CSM16: api.CheckBOSTemplates} {
		if got := bos.Variant(r).Procedure; got != want {
			t.Errorf("bos on %s: %s, want %s", r, got, want)
		}
	}
	dns, _ := Lookup(api.ExternalDNS)
	if v := dns.Variant(api.CSM13); v.Procedure != api.NotInRelease || !strings.Contains(v.Reason, "removed in CSM 1.2") {
		t.Errorf("externaldns on csm-1.3: %+v", v)
	}
}

func TestPrerequisitesFollowTheRunsOrderings(t *testing.T) {
	names := func(ps []Prerequisite) (out []api.Service) {
		for _, p := range ps {
			out = append(out, p.Service)
		}
		return out
	}
	before := Prerequisites(func(string) bool { return false })
	after := Prerequisites(func(since string) bool { return since == ChangeCPSAfterHMNFD })
	if got := names(before[api.CPS]); !slices.Equal(got, []api.Service{api.BOS}) {
		t.Errorf("cps before %s waits for %v, want [bos]", ChangeCPSAfterHMNFD, got)
	}
	if got := names(after[api.CPS]); !slices.Equal(got, []api.Service{api.BOS, api.HMNFD}) {
		t.Errorf("cps waits for %v, want [bos hmnfd]", got)
	}
}

// The services whose pods restart re-derive their data; the others do not.
func TestRederivesFollowsTheProcedure(t *testing.T) {
	var got []api.Service
	for _, e := range entries {
		if Rederives(e.Variant(api.CSM10).Procedure) {
			got = append(got, e.Service)
		}
	}
	if want := []api.Service{api.CRUS, api.MEDS, api.REDS}; !slices.Equal(got, want) {
		t.Errorf("re-derive on csm-1.0: %v, want %v", got, want)
	}
}
