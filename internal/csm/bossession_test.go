package csm_test

import (
	"net/http"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

func TestNamedBOSSessionAndComponentsByID(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{Components: csmemu.ComputeNodes(3)}, false)
	c := newClient(t, base, nil)
	comps, err := c.Components(ctx(t), csm.ComponentQuery{IDs: []string{"x1000c0s2b0n0", "x1000c0s0b0n0"}})
	if err != nil || len(comps) != 2 || comps[0].ID != "x1000c0s0b0n0" || comps[1].ID != "x1000c0s2b0n0" {
		t.Fatalf("Components by id = %+v, %v; want x1000c0s0b0n0 and x1000c0s2b0n0", comps, err)
	}

	if err := emu.SetSessionTemplate(csm.SessionTemplate{Name: "t", BootSets: map[string]csm.BootSet{"b": {Path: "s3://x", Type: "s3", NodeList: []string{"x1000c0s0b0n0"}}}}); err != nil {
		t.Fatal(err)
	}
	s, err := c.CreateBOSSession(ctx(t), csm.BOSSessionRequest{Name: "mine", TemplateName: "t", Operation: "shutdown", Limit: "x1000c0s0b0n0"})
	if err != nil || s.Name != "mine" {
		t.Fatalf("CreateBOSSession with a name = %+v, %v", s, err)
	}
	got, err := c.BOSSession(ctx(t), "mine")
	if err != nil || got.Name != "mine" || got.TemplateName != "t" || got.Operation != "shutdown" || got.Limit != "x1000c0s0b0n0" {
		t.Errorf("BOSSession(mine) = %+v, %v", got, err)
	}
	_, err = c.CreateBOSSession(ctx(t), csm.BOSSessionRequest{Name: "mine", TemplateName: "t", Operation: "shutdown"})
	if e := wantKind(t, err, csm.BadRequest); e.Status != http.StatusConflict {
		t.Errorf("same name again: HTTP %d, want 409", e.Status)
	}
	_, err = c.BOSSession(ctx(t), "other")
	wantKind(t, err, csm.NotFound)
	_, err = c.BOSSession(ctx(t), "")
	wantKind(t, err, csm.BadRequest)
}
