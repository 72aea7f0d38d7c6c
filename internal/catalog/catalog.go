// Package catalog is the one table of the services the runbook
// repopulates. Each entry names the service's procedure on each CSM
// release, its settings and their defaults, the services that must finish
// before it starts, the part of a snapshot it uses and what a person is left
// to do. Config decoding and validation, plans, preflight, the CLI's service
// lists, help and completion, the generated docs and the test fixtures all
// read it: adding a service is adding an entry (docs/architecture.md).
package catalog

import (
	"fmt"
	"slices"
	"strings"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/settings"
)

// Entry is one service.
type Entry struct {
	Service api.Service
	// Title is the service's name in CSM's documentation.
	Title string
	// Does says, in a few words, what a run does for the service (help texts).
	Does string
	// Settings returns the service's default settings: their type decodes
	// services.<service> in the worker config and makes the service's plan.
	Settings func() settings.Settings
	// Variants say which procedure each release runs, oldest first: a
	// release takes the last variant it has reached.
	Variants []Variant
	// After are the services that must finish before this one starts.
	After []Prerequisite
	// SnapshotPart copies the part of a pre-rebuild snapshot the service
	// uses into part; nil when it uses none.
	SnapshotPart func(full, part *api.SnapshotInput)
	// FollowUps are what the runbook leaves to a person once the steps
	// are done, given the run's snapshot (nil without one).
	FollowUps func(snap *api.SnapshotInput) []string
	// Etcd is the service's etcd cluster per release, oldest first, as
	// CSM-APIS.md §10 has it (repopulate plan reads it).
	Etcd []Etcd
	// DataCheck closes the service on every release that runs a procedure
	// for it, where the procedure alone does not show the data is back.
	DataCheck api.DataCheck
}

// Variant is the procedure a service runs from a release on.
type Variant struct {
	Since     api.Release
	Procedure api.Procedure
	// Reason says why a NotInRelease service is skipped.
	Reason string
	// FollowUps are what a person does instead (the release's runbook
	// step the worker leaves to a person).
	FollowUps []string
}

// Prerequisite is a service that must finish first.
type Prerequisite struct {
	Service api.Service
	// Since is the change ID (workflow.GetVersion) of the ordering: runs
	// started before it replay without it. Empty: every run has it.
	Since string
	// Why is shown while the service waits.
	Why string
	// DoneSince, when set, is the change ID (workflow.GetVersion) from
	// which the service starts only when this prerequisite ended done; it
	// is not started otherwise, and NotDone says why and FollowUp what a
	// person must do. Empty: the prerequisite's finishing is enough.
	DoneSince, NotDone, FollowUp string
}

// Services lists every service in the runbook's order.
func Services() []api.Service {
	out := make([]api.Service, len(entries))
	for i, e := range entries {
		out[i] = e.Service
	}
	return out
}

// Entries lists every entry in the runbook's order.
func Entries() []Entry { return slices.Clone(entries) }

// Lookup returns the entry of s.
func Lookup(s api.Service) (Entry, bool) {
	for _, e := range entries {
		if e.Service == s {
			return e, true
		}
	}
	return Entry{}, false
}

// Names is the comma-separated list of the services.
func Names() string {
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = string(e.Service)
	}
	return strings.Join(names, ",")
}

// Variant returns the procedure s runs on release r.
func (e Entry) Variant(r api.Release) Variant {
	return reached(e.Variants, func(v Variant) api.Release { return v.Since }, r,
		Variant{Procedure: api.NotInRelease, Reason: fmt.Sprintf("not in this release: %s came after %s", e.Service, r)})
}

// reached returns the last of items, oldest first, whose release r has
// reached, or none when r precedes them all.
func reached[T any](items []T, since func(T) api.Release, r api.Release, none T) T {
	at, out := slices.Index(api.Releases, r), none
	for _, item := range items {
		if i := slices.Index(api.Releases, since(item)); i >= 0 && i <= at {
			out = item
		}
	}
	return out
}

// Parse turns "bss,fas" into services, in the runbook's order and without
// duplicates. An empty list means all. Unknown names are an error naming
// the valid ones.
func Parse(list []string) ([]api.Service, error) {
	if len(list) == 0 {
		return Services(), nil
	}
	want := map[api.Service]bool{}
	var unknown []string
	for _, raw := range list {
		name := api.Service(strings.ToLower(strings.TrimSpace(raw)))
		if name == "" {
			continue
		}
		if _, ok := Lookup(name); !ok {
			unknown = append(unknown, fmt.Sprintf("%q", raw))
			continue
		}
		want[name] = true
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown service %s: valid services are %s", strings.Join(unknown, ", "), Names())
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("no service named: give one or more of %s, or leave the list out for all", Names())
	}
	var out []api.Service
	for _, e := range entries {
		if want[e.Service] {
			out = append(out, e.Service)
		}
	}
	return out, nil
}

// Prerequisites says which services must finish before another starts in
// a run that has the orderings for which has returns true.
func Prerequisites(has func(since string) bool) map[api.Service][]Prerequisite {
	out := map[api.Service][]Prerequisite{}
	for _, e := range entries {
		for _, p := range e.After {
			if p.Since == "" || has(p.Since) {
				out[e.Service] = append(out[e.Service], p)
			}
		}
	}
	return out
}

// KnownRelease reports whether r is a release the table describes (not auto).
func KnownRelease(r api.Release) bool { return slices.Contains(api.Releases, r) }

// NeedsDoneChanges lists the change IDs of prerequisites that must end
// done (DoneSince), in the order the catalog names them: the parent
// workflow asks workflow.GetVersion for each, in this order, before the
// ordering changes.
func NeedsDoneChanges() []string {
	var out []string
	for _, e := range entries {
		for _, p := range e.After {
			if p.DoneSince != "" && !slices.Contains(out, p.DoneSince) {
				out = append(out, p.DoneSince)
			}
		}
	}
	return out
}

// OrderingChanges lists the change IDs of versioned prerequisites, in
// the order the catalog names them: the parent workflow asks
// workflow.GetVersion for each, in this order.
func OrderingChanges() []string {
	var out []string
	for _, e := range entries {
		for _, p := range e.After {
			if p.Since != "" && !slices.Contains(out, p.Since) {
				out = append(out, p.Since)
			}
		}
	}
	return out
}

// Extend adds entries to the catalog for a test that shows what a new
// service takes, and returns the function that restores the catalog. Not
// safe while anything else reads the catalog.
func Extend(more ...Entry) (restore func()) {
	saved := entries
	entries = append(slices.Clone(entries), more...)
	return func() { entries = saved }
}

// ServicesHelp lists each service, what a run does for it and what it
// reaches besides Kubernetes, one line each, for the commands' --help.
func ServicesHelp() string {
	var b strings.Builder
	for _, e := range entries {
		var uses []string
		if n := NeedsOf(e.Variants[0].Procedure); n.CSMAPI || e.DataCheck != "" {
			uses = append(uses, "CSM API")
		}
		if n := NeedsOf(e.Variants[0].Procedure); n.SSH {
			uses = append(uses, "SSH")
		}
		line := fmt.Sprintf("  %-12s %s", e.Service, e.Does)
		if len(uses) > 0 {
			line += " [" + strings.Join(uses, ", ") + "]"
		}
		b.WriteString(line + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// PodSets lists the pods the service's default settings restart, for
// fixtures that seed a system like CSM's.
func (e Entry) PodSets() []api.PodSet {
	if s, ok := e.Settings().(interface{ PodSets() []api.PodSet }); ok {
		return s.PodSets()
	}
	return nil
}
