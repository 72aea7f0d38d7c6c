package catalog

import (
	"testing"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// TestEtcdClustersFollowTheRunbookTable: cells of CSM-APIS.md §10.
func TestEtcdClustersFollowTheRunbookTable(t *testing.T) {
	for _, tc := range []struct {
		service     api.Service
		release     api.Release
		kind        EtcdKind
		name        string
		unconfirmed bool
	}{
		{api.BOS, api.CSM10, EtcdOperator, "cray-bos-etcd", false},
		{api.BOS, api.CSM15, EtcdBitnami, "cray-bos-bitnami-etcd", false},
		{api.BOS, api.CSM16, EtcdNone, "", false},
		{api.HMNFD, api.CSM13, EtcdOperator, "cray-hmnfd-etcd", false},
		{api.HMNFD, api.CSM16, EtcdBitnami, "cray-hmnfd-bitnami-etcd", false},
		{api.BSS, api.CSM15, EtcdBitnami, "cray-bss-bitnami-etcd", false},
		{api.CRUS, api.CSM15, EtcdNone, "", false},
		{api.ExternalDNS, api.CSM10, EtcdOperator, "cray-externaldns-etcd", false},
		{api.ExternalDNS, api.CSM12, EtcdNone, "", false},
		{api.CPS, api.CSM15, EtcdBitnami, "cray-cps-bitnami-etcd", true},
		{api.REDS, api.CSM12, EtcdOperator, "cray-reds-etcd", false},
		{api.REDS, api.CSM13, EtcdOperator, "cray-reds-etcd", true},
		{api.MEDS, api.CSM10, EtcdNone, "", true},
	} {
		e, _ := Lookup(tc.service)
		c := e.EtcdOn(tc.release)
		if c.Kind != tc.kind || c.Name != tc.name || (c.Unconfirmed != "") != tc.unconfirmed {
			t.Errorf("%s on %s: %+v; want %s %q unconfirmed=%v", tc.service, tc.release, c, tc.kind, tc.name, tc.unconfirmed)
		}
	}
	// BOS templates live in etcd on 1.0 and 1.2 only.
	bos, _ := Lookup(api.BOS)
	if h := bos.EtcdOn(api.CSM12).Holds; len(h) != 1 || h[0] != DataSessionTemplates {
		t.Errorf("bos on 1.2 holds %v", h)
	}
	if h := bos.EtcdOn(api.CSM13).Holds; len(h) != 0 {
		t.Errorf("bos on 1.3 holds %v; BOS v2 keeps templates elsewhere", h)
	}
}

// TestEveryServiceSaysItsEtcdCluster: an entry without Etcd would show no
// cluster on every release, which plan could not tell from a real "none".
func TestEveryServiceSaysItsEtcdCluster(t *testing.T) {
	for _, e := range Entries() {
		if len(e.Etcd) == 0 || e.Etcd[0].Since != api.CSM10 {
			t.Errorf("%s: Etcd %+v; want one from %s on", e.Service, e.Etcd, api.CSM10)
		}
		for _, c := range e.Etcd {
			if (c.Kind == EtcdNone) != (c.Name == "") {
				t.Errorf("%s from %s: kind %q, name %q", e.Service, c.Since, c.Kind, c.Name)
			}
		}
	}
}
