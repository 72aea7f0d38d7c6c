package csm_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

// TestBootParametersListAndRestore: the list holds the image entries and
// one entry per node; after the etcd rebuild it is empty (BSS answers
// null); putting the saved node entries back restores them equal, and a
// second PUT replaces rather than refuses.
func TestBootParametersListAndRestore(t *testing.T) {
	e, base := startEmu(t, csmemu.Options{Components: csmemu.ComputeNodes(3)}, false)
	c := newClient(t, base, nil)
	before, err := c.BootParameters(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var nodes []csm.BootParams
	for _, b := range before {
		if b.Host() != "" {
			nodes = append(nodes, b)
		}
	}
	if len(before) != 5 || len(nodes) != 3 || nodes[0].Host() != "x1000c0s0b0n0" || nodes[0].Kernel != csmemu.BootImage+"/kernel" {
		t.Fatalf("list %+v", before)
	}

	e.WipeBSS()
	empty, err := c.BootParameters(ctx(t))
	if err != nil || len(empty) != 0 {
		t.Fatalf("after the rebuild: %v, %v", empty, err)
	}

	for _, b := range nodes {
		if err := c.PutBootParameters(ctx(t), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.PutBootParameters(ctx(t), nodes[0]); err != nil {
		t.Fatalf("PUT of an existing entry: %v", err)
	}
	after, err := c.BootParameters(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("restored %d entries, had %d", len(after), len(before))
	}
	for i := range before {
		if !before[i].Equal(after[i]) {
			t.Errorf("entry %d: restored %+v, was %+v", i, after[i], before[i])
		}
	}
	if !json.Valid(after[2].CloudInit) || len(after[2].CloudInit) == 0 {
		t.Errorf("cloud-init not kept: %q", after[2].CloudInit)
	}
}

// TestBootParamsEqual: cloud-init compares as JSON values, the empty one
// BSS renders equals none; anything else that differs is unequal.
func TestBootParamsEqual(t *testing.T) {
	a := csm.BootParams{Hosts: []string{"x1"}, Kernel: "k", Params: "p",
		CloudInit: json.RawMessage(`{"meta-data":null,"user-data":null,"phone-home":{"pub_key_dsa":"","fqdn":""}}`)}
	b := a
	b.CloudInit = nil
	if !a.Equal(b) {
		t.Error("empty cloud-init differs from none")
	}
	b.CloudInit = json.RawMessage(`{"user-data":{"a":1}}`)
	if a.Equal(b) {
		t.Error("user-data ignored")
	}
	c := a
	c.CloudInit = json.RawMessage(`{"phone-home": {"fqdn": ""}, "user-data": null}`)
	if !a.Equal(c) {
		t.Error("same cloud-init in another order or spacing differs")
	}
	e := a
	e.CloudInit = json.RawMessage(`{"user-data":{"a":""}}`)
	f := a
	f.CloudInit = json.RawMessage(`{"user-data":{}}`)
	if e.Equal(f) || e.Equal(a) {
		t.Error("an empty string inside user-data ignored")
	}
	g := a
	g.CloudInit = json.RawMessage(`{"phone-home":{"fqdn":"nid000001"}}`)
	if g.Equal(a) {
		t.Error("phone-home ignored")
	}
	d := a
	d.Params = "q"
	if a.Equal(d) {
		t.Error("params ignored")
	}
}

// TestPutBootParametersRefusesBadInput: each refusal names the input and
// what to give instead, and nothing is sent.
func TestPutBootParametersRefusesBadInput(t *testing.T) {
	e, base := startEmu(t, csmemu.Options{}, false)
	c := newClient(t, base, nil)
	for _, tc := range []struct {
		b    csm.BootParams
		want string
	}{
		{csm.BootParams{Kernel: "s3://b/k"}, "name no host: give the node's xname"},
		{csm.BootParams{Hosts: []string{"x1", " "}}, "hosts[1] is empty"},
		{csm.BootParams{Hosts: []string{"x1"}, Nids: []int{1}}, "name nodes by hosts only"},
		{csm.BootParams{Hosts: []string{"x1"}, CloudInit: json.RawMessage(`{`)}, "cloud-init of x1 is not JSON"},
	} {
		err := c.PutBootParameters(ctx(t), tc.b)
		wantContains(t, wantKind(t, err, csm.BadRequest).Error(), tc.want)
	}
	if n := e.Requests(csm.PathBSSBootParameters); n != 0 {
		t.Errorf("%d requests sent for bad input", n)
	}
}

// TestBootParametersErrorKinds: the client's error kinds apply to BSS.
func TestBootParametersErrorKinds(t *testing.T) {
	e, base := startEmu(t, csmemu.Options{}, false)
	c := newClient(t, base, nil)
	e.Fail(csm.PathBSSBootParameters, http.StatusServiceUnavailable, 1)
	_, err := c.BootParameters(ctx(t))
	if !csm.Retryable(err) {
		t.Errorf("503: %v, want retryable", err)
	}
	e.MalformedJSON(csm.PathBSSBootParameters, 1)
	_, err = c.BootParameters(ctx(t))
	wantContains(t, wantKind(t, err, csm.BadResponse).Error(), "JSON array of BSS boot parameters")
	e.Fail(csm.PathBSSBootParameters, http.StatusForbidden, 1)
	wantKind(t, c.PutBootParameters(ctx(t), csm.BootParams{Hosts: []string{"x1"}}), csm.Forbidden)
}
