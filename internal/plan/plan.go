// Package plan decides, from what a service's etcd cluster and its data
// look like now and what a snapshot held, whether an etcd rebuild lost the
// service's data. It does no I/O: repopulate plan (internal/cli) gathers
// the evidence and prints the verdicts.
package plan

import (
	"fmt"
	"strings"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Verdict says whether a service needs repopulating.
type Verdict string

const (
	// LostData: the service needs a run.
	LostData Verdict = "lost data"
	// Intact: the service holds its data; no run needed.
	Intact Verdict = "intact"
	// CannotTell: the evidence does not decide; the reason says what is missing.
	CannotTell Verdict = "cannot tell"
)

// Cluster is what was read of the service's etcd cluster.
type Cluster struct {
	Kind string `json:"kind,omitempty"`
	Name string `json:"name,omitempty"`
	// Unconfirmed says why the catalog's name for it is not confirmed.
	Unconfirmed string `json:"unconfirmed,omitempty"`
	// Created is the object's creation time; zero when it was not read.
	Created time.Time `json:"created,omitzero"`
	Ready   int       `json:"membersReady"`
	Size    int       `json:"size"`
	// Err says why the cluster was not read (missing, forbidden, no
	// Kubernetes credentials), naming it; empty when it was or there is none.
	Err string `json:"error,omitempty"`
}

// None: the release has no etcd cluster for the service.
func (c Cluster) None() bool { return c.Kind == "" }

// Count is one kind of data the service holds.
type Count struct {
	What string `json:"what"`
	Now  int    `json:"now"`
	// NowErr says why Now could not be read; empty when it was.
	NowErr string `json:"nowError,omitempty"`
	// Then is the snapshot's count, when HaveThen (only a snapshot gives one).
	Then     int  `json:"then"`
	HaveThen bool `json:"haveThen"`
	// Expected says why a healthy system always holds some (empty: it may
	// hold none).
	Expected string `json:"expected,omitempty"`
}

// Evidence is everything the verdict of one service rests on.
type Evidence struct {
	Service api.Service
	Cluster Cluster
	Counts  []Count
	// Rederives: the service's procedure re-derives its data, so the
	// cluster's age decides even where counts look present.
	Rederives bool
	// Reference is when the data was known good, against which the
	// cluster's age is compared: --since, else the snapshot's time; zero
	// when neither was given. RefWhat names it.
	Reference time.Time
	RefWhat   string
}

// Decision is a service's verdict and why.
type Decision struct {
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason"`
}

// Decide is the verdict on one service. Data decides first: a count that
// is 0 now where the snapshot had some, or where a healthy system always
// has some, is lost data. Then the cluster: one created after the reference
// was rebuilt. A service whose data plan does not count, or whose procedure
// re-derives it, follows its cluster; one whose data was counted is intact
// when its data is there.
func Decide(ev Evidence) Decision {
	rebuilt, clusterWhy := rebuilt(ev)
	for _, c := range ev.Counts {
		if c.NowErr != "" || c.Now > 0 {
			continue
		}
		if c.HaveThen && c.Then > 0 {
			return Decision{LostData, fmt.Sprintf("%s: 0 now, %d in the snapshot", c.What, c.Then)}
		}
		if !c.HaveThen && c.Expected != "" {
			return Decision{LostData, fmt.Sprintf("%s: 0 now, and %s", c.What, c.Expected)}
		}
	}
	if rebuilt == yes {
		for _, c := range ev.Counts {
			if c.NowErr == "" && c.HaveThen && c.Now < c.Then {
				return Decision{LostData, fmt.Sprintf("%s: %d now, %d in the snapshot, and %s", c.What, c.Now, c.Then, clusterWhy)}
			}
		}
	}
	if len(ev.Counts) == 0 || ev.Rederives {
		why := clusterWhy
		if len(ev.Counts) == 0 {
			why += "; plan counts none of its data, so the cluster decides"
		} else {
			why += "; its procedure re-derives the data, so the cluster decides"
		}
		switch rebuilt {
		case yes:
			return Decision{LostData, why}
		case no:
			return Decision{Intact, why}
		}
		return Decision{CannotTell, clusterWhy}
	}
	var unread, held, empty []string
	for _, c := range ev.Counts {
		switch {
		case c.NowErr != "":
			unread = append(unread, fmt.Sprintf("%s not read: %s", c.What, c.NowErr))
		case c.HaveThen:
			held = append(held, fmt.Sprintf("%s: %d now, %d in the snapshot", c.What, c.Now, c.Then))
		case c.Now > 0:
			held = append(held, fmt.Sprintf("%s: %d", c.What, c.Now))
		default:
			empty = append(empty, fmt.Sprintf("%s: 0 and no snapshot to compare", c.What))
		}
	}
	if len(unread) > 0 {
		return Decision{CannotTell, strings.Join(append(unread, clusterWhy), "; ")}
	}
	if len(empty) > 0 {
		switch rebuilt {
		case yes:
			if len(held) == 0 {
				return Decision{LostData, strings.Join(append(empty, clusterWhy), "; ")}
			}
		case no:
		default:
			if len(held) == 0 {
				return Decision{CannotTell, strings.Join(append(empty, clusterWhy), "; ")}
			}
		}
	}
	return Decision{Intact, strings.Join(append(append(held, empty...), clusterWhy), "; ")}
}

type tri int

const (
	unknown tri = iota
	yes
	no
)

// rebuilt says whether the cluster was created after the reference, and
// in words why (or why that is not known).
func rebuilt(ev Evidence) (tri, string) {
	c := ev.Cluster
	switch {
	case c.None() && c.Unconfirmed != "":
		return unknown, c.Unconfirmed
	case c.None():
		return unknown, "no etcd cluster on this release"
	case c.Err != "" && c.Unconfirmed != "":
		return unknown, fmt.Sprintf("%s (the name is unconfirmed: %s)", c.Err, c.Unconfirmed)
	case c.Err != "":
		return unknown, c.Err
	case ev.Reference.IsZero():
		return unknown, fmt.Sprintf("%s %s created %s; no --snapshot or --since to compare its age with", c.Kind, c.Name, c.Created.UTC().Format(time.RFC3339))
	case c.Created.After(ev.Reference):
		return yes, fmt.Sprintf("%s %s created %s, after %s: rebuilt", c.Kind, c.Name, c.Created.UTC().Format(time.RFC3339), ev.RefWhat)
	}
	return no, fmt.Sprintf("%s %s created %s, before %s", c.Kind, c.Name, c.Created.UTC().Format(time.RFC3339), ev.RefWhat)
}

// StartLine is the command that repopulates exactly the services that lost
// data; empty when none did.
func StartLine(decided map[api.Service]Decision, order []api.Service, snapshotDir string) string {
	var names []string
	for _, s := range order {
		if d, ok := decided[s]; ok && d.Verdict == LostData {
			names = append(names, string(s))
		}
	}
	if len(names) == 0 {
		return ""
	}
	line := "repopulate start --services " + strings.Join(names, ",")
	if snapshotDir != "" {
		line += " --snapshot " + snapshotDir
	}
	return line
}
