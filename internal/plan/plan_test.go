package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
)

func TestDecide(t *testing.T) {
	snap := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	old := Cluster{Kind: "EtcdCluster", Name: "cray-x-etcd", Created: snap.Add(-30 * 24 * time.Hour), Ready: 3, Size: 3}
	young := old
	young.Created = snap.Add(time.Hour)
	unread := Cluster{Kind: "EtcdCluster", Name: "cray-x-etcd", Err: `cannot read EtcdCluster services/cray-x-etcd: forbidden: User "nobody" cannot get resource "etcdclusters"`}
	ref := func(ev Evidence) Evidence {
		ev.Reference, ev.RefWhat = snap, "the snapshot"
		return ev
	}
	boot := func(now, then int, have bool) Count {
		return Count{What: "BSS boot parameters", Now: now, Then: then, HaveThen: have, Expected: "every node has boot parameters"}
	}
	for _, tc := range []struct {
		name    string
		ev      Evidence
		verdict Verdict
		reason  string
	}{
		{"emptied since the snapshot", ref(Evidence{Cluster: old, Counts: []Count{boot(0, 4, true)}}), LostData, "BSS boot parameters: 0 now, 4 in the snapshot"},
		{"empty where a healthy system has some, no snapshot", Evidence{Cluster: old, Counts: []Count{boot(0, 0, false)}}, LostData, "0 now, and every node has boot parameters"},
		{"empty in the snapshot too", ref(Evidence{Cluster: old, Counts: []Count{{What: "CRUS sessions", HaveThen: true}}}), Intact, "CRUS sessions: 0 now, 0 in the snapshot"},
		{"data back in a rebuilt cluster", ref(Evidence{Cluster: young, Counts: []Count{boot(4, 4, true)}}), Intact, "4 now, 4 in the snapshot; EtcdCluster cray-x-etcd created 2026-11-30T13:00:00Z, after the snapshot: rebuilt"},
		{"counts against the snapshot, age against --since", Evidence{Cluster: young, Reference: snap, RefWhat: "--since 2026-11-30T12:00:00Z", Counts: []Count{boot(0, 4, true)}}, LostData, "BSS boot parameters: 0 now, 4 in the snapshot"},
		{"part back in a rebuilt cluster", ref(Evidence{Cluster: young, Counts: []Count{{What: "HMNFD subscriptions", Now: 3, Then: 100, HaveThen: true}}}), LostData, "3 now, 100 in the snapshot, and EtcdCluster cray-x-etcd created"},
		{"fewer in an old cluster is churn", ref(Evidence{Cluster: old, Counts: []Count{{What: "HMNFD subscriptions", Now: 98, Then: 100, HaveThen: true}}}), Intact, "98 now, 100 in the snapshot"},
		{"no counts, rebuilt", ref(Evidence{Cluster: young}), LostData, "after the snapshot: rebuilt; plan counts none of its data"},
		{"no counts, older", ref(Evidence{Cluster: old}), Intact, "before the snapshot"},
		{"no counts, no reference", Evidence{Cluster: old}, CannotTell, "no --snapshot or --since to compare its age with"},
		{"no counts, cluster unreadable", ref(Evidence{Cluster: unread}), CannotTell, `cannot read EtcdCluster services/cray-x-etcd: forbidden`},
		{"unconfirmed, no cluster", ref(Evidence{Cluster: Cluster{Unconfirmed: "whether MEDS keeps data in etcd is unconfirmed"}, Rederives: true}), CannotTell, "whether MEDS keeps data in etcd is unconfirmed"},
		{"rederives follows a young cluster although sessions are there", ref(Evidence{Cluster: young, Rederives: true, Counts: []Count{{What: "CRUS sessions", Now: 1, Then: 1, HaveThen: true}}}), LostData, "re-derives the data"},
		{"rederives, old cluster", ref(Evidence{Cluster: old, Rederives: true, Counts: []Count{{What: "CRUS sessions", Now: 1, Then: 1, HaveThen: true}}}), Intact, "before the snapshot"},
		{"API unreachable", ref(Evidence{Cluster: old, Counts: []Count{{What: "FAS images", NowErr: "dial tcp: connection refused", Then: 5, HaveThen: true}}}), CannotTell, "FAS images not read: dial tcp: connection refused"},
		{"API unreachable, rebuilt cluster still cannot tell", ref(Evidence{Cluster: young, Counts: []Count{{What: "FAS images", NowErr: "timeout", Then: 5, HaveThen: true}}}), CannotTell, "FAS images not read: timeout; EtcdCluster cray-x-etcd created"},
		{"0 with no snapshot, no reference", Evidence{Cluster: old, Counts: []Count{{What: "BOS session templates"}}}, CannotTell, "BOS session templates: 0 and no snapshot to compare"},
		{"0 with no snapshot in a rebuilt cluster", Evidence{Cluster: young, Reference: snap, RefWhat: "--since 2026-11-30T12:00:00Z", Counts: []Count{{What: "FAS images"}, {What: "FAS actions"}}}, LostData, "after --since 2026-11-30T12:00:00Z: rebuilt"},
		{"0 with no snapshot in an old cluster", Evidence{Cluster: old, Reference: snap, RefWhat: "--since", Counts: []Count{{What: "FAS actions"}}}, Intact, "FAS actions: 0 and no snapshot to compare"},
		{"present, no snapshot, no reference", Evidence{Cluster: old, Counts: []Count{boot(4, 0, false)}}, Intact, "BSS boot parameters: 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.ev)
			if d.Verdict != tc.verdict || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("got %q (%s); want %q with %q", d.Verdict, d.Reason, tc.verdict, tc.reason)
			}
		})
	}
}

func TestStartLine(t *testing.T) {
	order := []api.Service{api.BOS, api.BSS, api.FAS, api.HMNFD}
	d := map[api.Service]Decision{api.HMNFD: {Verdict: LostData}, api.BSS: {Verdict: LostData}, api.FAS: {Verdict: CannotTell}, api.BOS: {Verdict: Intact}}
	if got := StartLine(d, order, "/root/snap"); got != "repopulate start --services bss,hmnfd --snapshot /root/snap" {
		t.Errorf("got %q", got)
	}
	if got := StartLine(map[api.Service]Decision{api.BOS: {Verdict: Intact}}, order, ""); got != "" {
		t.Errorf("nothing lost: got %q", got)
	}
}
