package csm_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

func TestHSM(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{Components: nodes()}, false)
	c := newClient(t, base, nil)

	ready, err := c.ReadyComputeNodes(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var ids, hosts []string
	for _, n := range ready {
		ids = append(ids, n.ID)
		hosts = append(hosts, n.Hostname())
	}
	if want := []string{"x1000c0s0b0n0", "x1000c0s1b0n0", "x1000c0s2b0n0", "x1000c0s3b0n0"}; !slices.Equal(ids, want) {
		t.Errorf("ready compute ids %v, want %v", ids, want)
	}
	if want := []string{"nid000001-nmn", "nid000002-nmn", "nid000003-nmn", "nid000004-nmn"}; !slices.Equal(hosts, want) {
		t.Errorf("hostnames %v, want %v", hosts, want)
	}
	if got := ready[0]; got.Type != "Node" || got.Role != "Compute" || got.State != "Ready" || !got.Enabled || got.NID != 1 || got.Flag != "OK" || got.Arch != "X86" {
		t.Errorf("component decoded as %+v", got)
	}
	if n := emu.Requests(csm.PathHSMComponents); n != 1 {
		t.Errorf("HSM requests %d, want 1", n)
	}

	byState, err := c.ComponentsByState(ctx(t), "Off", "Standby")
	if err != nil {
		t.Fatal(err)
	}
	if len(byState) != 2 || byState[0].ID != "x1000c0s4b0n0" || byState[1].ID != "x1000c0s5b0n0" {
		t.Errorf("ComponentsByState(Off, Standby) = %+v", byState)
	}
	all, err := c.ComponentsByState(ctx(t))
	if err != nil || len(all) != len(nodes()) {
		t.Errorf("ComponentsByState() = %d components, %v; want %d", len(all), err, len(nodes()))
	}
	uan, err := c.Components(ctx(t), csm.ComponentQuery{Types: []string{"Node"}, Roles: []string{"Application"}, SubRoles: []string{"UAN"}})
	if err != nil || len(uan) != 1 || uan[0].ID != "x3000c0s19b1n0" || uan[0].Class != "River" || uan[0].NetType != "Sling" {
		t.Errorf("Components(Application/UAN) = %+v, %v", uan, err)
	}
	if h := (csm.Component{NID: 1234}).Hostname(); h != "nid001234-nmn" {
		t.Errorf("Hostname = %q", h)
	}
}

func TestHMNFD(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{}, false)
	c := newClient(t, base, nil)
	subs, err := c.Subscriptions(ctx(t))
	if err != nil || len(subs) != 0 {
		t.Fatalf("Subscriptions on a wiped HMNFD = %v, %v", subs, err)
	}
	emu.Subscribe("x1000c0s0b0n0")
	emu.Subscribe("x1000c0s1b0n0")
	emu.Subscribe("x1000c0s0b0n0") // orca restarted twice: still one subscription
	subs, err = c.Subscriptions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 {
		t.Fatalf("got %d subscriptions, want 2: %+v", len(subs), subs)
	}
	s := subs[0]
	if s.Subscriber != "hmnfd-orca@x1000c0s0b0n0" || s.SubscriberComponent != "x1000c0s0b0n0" || s.SubscriberAgent != "hmnfd-orca" ||
		!slices.Equal(s.Components, []string{"x1000c0s0b0n0"}) || !slices.Equal(s.Roles, []string{"Compute"}) ||
		!slices.Contains(s.States, "Ready") || !s.Enabled || s.URL == "" {
		t.Errorf("subscription decoded as %+v", s)
	}
}

func TestCRUS(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{}, false)
	c := newClient(t, base, nil)
	ex := csmemu.ExampleCRUSSession()
	id := emu.AddCRUSSession(ex)

	list, err := c.CRUSSessions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !reflect.DeepEqual(list[0], ex) {
		t.Fatalf("CRUSSessions = %+v\nwant %+v", list, ex)
	}
	got, err := c.CRUSSession(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.UpgradeID != "e0131663-dbee-47c2-aa5c-13fe9b110242" || got.State != csm.CRUSUpdating || got.Completed ||
		got.UpgradeStepSize != 50 || got.WorkloadManagerType != "slurm" || got.Kind != "ComputeUpgradeSession" ||
		got.LastMessage() != "Began the boot session for step 0: moving to BOOTING" {
		t.Errorf("CRUSSession = %+v", got)
	}
	_, err = c.CRUSSession(ctx(t), "no-such-id")
	wantKind(t, err, csm.NotFound)
	_, err = c.CRUSSession(ctx(t), "")
	wantKind(t, err, csm.BadRequest)

	emu.DisableCRUS()
	_, err = c.CRUSSessions(ctx(t))
	e := wantKind(t, err, csm.NotFound)
	if e.Status != 404 || csm.Retryable(err) {
		t.Errorf("disabled CRUS: %+v retryable=%v", e, csm.Retryable(err))
	}
}

func TestFAS(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{}, false)
	c := newClient(t, base, nil)

	imgs, err := c.FASImages(ctx(t))
	if err != nil || len(imgs) != 0 {
		t.Fatalf("FASImages before load = %v, %v", imgs, err)
	}
	emu.SetFASLoaderBusy(2)
	st, err := c.FASLoaderStatus(ctx(t))
	if err != nil || !st.Busy() || len(st.LoaderRunList) != 0 {
		t.Fatalf("FASLoaderStatus = %+v, %v; want busy, no runs", st, err)
	}
	for i := 0; i < 2; i++ {
		_, err := c.FASLoadNexus(ctx(t))
		e := wantKind(t, err, csm.Busy)
		if e.Status != 429 || !csm.Retryable(err) {
			t.Fatalf("busy loader: %+v", e)
		}
	}
	id, err := c.FASLoadNexus(ctx(t))
	if err != nil || id == "" {
		t.Fatalf("FASLoadNexus = %q, %v", id, err)
	}
	st, err = c.FASLoaderStatus(ctx(t))
	if err != nil || st.Busy() || !slices.Equal([]string(st.LoaderRunList), []string{id}) {
		t.Fatalf("FASLoaderStatus after load = %+v, %v", st, err)
	}
	run, err := c.FASLoaderRun(ctx(t), id)
	if err != nil || len(run.LoaderRunOutput) == 0 || !strings.Contains(strings.Join(run.LoaderRunOutput, "\n"), "finished") {
		t.Fatalf("FASLoaderRun = %+v, %v", run, err)
	}
	_, err = c.FASLoaderRun(ctx(t), "nope")
	wantKind(t, err, csm.NotFound)

	imgs, err = c.FASImages(ctx(t))
	if err != nil || len(imgs) != len(csmemu.DefaultFASImages()) || imgs[0].ImageID == "" || imgs[0].Target != "BIOS" || imgs[0].SemanticFirmwareVersion != "1.5.0" {
		t.Fatalf("FASImages after load = %+v, %v", imgs, err)
	}

	acts, err := c.FASActions(ctx(t))
	if err != nil || len(acts) != 0 {
		t.Fatalf("FASActions = %v, %v", acts, err)
	}
	emu.SetFASActions([]csm.FASAction{{ActionID: "a1", State: "completed", Command: csm.FASCommand{Description: "update BMCs", OverrideDryrun: true},
		OperationCounts: csm.FASOperationCounts{Total: 3, Succeeded: 2, Failed: 1}}})
	acts, err = c.FASActions(ctx(t))
	if err != nil || len(acts) != 1 || acts[0].ActionID != "a1" || acts[0].OperationCounts.Failed != 1 || !acts[0].Command.OverrideDryrun {
		t.Fatalf("FASActions = %+v, %v", acts, err)
	}
}

const templateJSON = `{
  "name": "compute-23.7",
  "description": "",
  "enable_cfs": true,
  "cfs": {"configuration": "compute-23.7", "clone_url": "legacy"},
  "boot_sets": {
    "compute": {
      "arch": "X86",
      "etag": "d4e2c3a1",
      "kernel_parameters": "console=ttyS0,115200 bad_page=panic",
      "node_roles_groups": ["Compute"],
      "path": "s3://boot-images/2a7d/manifest.json",
      "rootfs_provider": "cpss3",
      "rootfs_provider_passthrough": "dvs:api-gw-service-nmn.local:300:nmn0",
      "type": "s3",
      "network": "nmn",
      "cfs": {"configuration": "override"}
    }
  },
  "links": [{"href": "/v2/sessiontemplates/compute-23.7", "rel": "self"}],
  "future_field": {"x": [1, 2, 3]}
}`

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func TestBOS(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{}, false)
	c := newClient(t, base, nil)

	var tmpl csm.SessionTemplate
	if err := json.Unmarshal([]byte(templateJSON), &tmpl); err != nil {
		t.Fatal(err)
	}
	stored, err := c.PutSessionTemplate(ctx(t), tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Name != "compute-23.7" || stored.BootSets["compute"].KernelParameters == "" {
		t.Errorf("PUT returned %+v", stored)
	}
	// What the emulator stored is exactly what was read: nothing dropped.
	raw, ok := emu.SessionTemplateJSON("compute-23.7")
	if !ok || !jsonEqual(t, raw, []byte(templateJSON)) {
		t.Errorf("stored template differs from the original:\n%s", raw)
	}

	list, err := c.SessionTemplates(ctx(t))
	if err != nil || len(list) != 1 || list[0].Name != "compute-23.7" {
		t.Fatalf("SessionTemplates = %+v, %v", list, err)
	}
	got, err := c.SessionTemplate(ctx(t), "compute-23.7")
	if err != nil {
		t.Fatal(err)
	}
	if !got.BootSets["compute"].HasNodes() || got.CFS.Configuration != "compute-23.7" || *got.EnableCFS != true {
		t.Errorf("SessionTemplate = %+v", got)
	}
	_, err = c.SessionTemplate(ctx(t), "missing")
	wantKind(t, err, csm.NotFound)

	valid, msg, err := c.SessionTemplateValid(ctx(t), "compute-23.7")
	if err != nil || !valid || msg != "Valid" {
		t.Errorf("SessionTemplateValid = %v, %q, %v", valid, msg, err)
	}
	// Templates restored from an old backup may lack boot sets or nodes.
	if err := emu.SetSessionTemplateJSON("empty", []byte(`{"enable_cfs": false}`)); err != nil {
		t.Fatal(err)
	}
	valid, msg, err = c.SessionTemplateValid(ctx(t), "empty")
	if err != nil || valid || !strings.Contains(msg, "requires at least 1 boot set") {
		t.Errorf("SessionTemplateValid(empty) = %v, %q, %v", valid, msg, err)
	}
	if err := emu.SetSessionTemplateJSON("nonodes", []byte(`{"boot_sets": {"bs": {"path": "s3://x", "type": "s3"}}}`)); err != nil {
		t.Fatal(err)
	}
	valid, msg, err = c.SessionTemplateValid(ctx(t), "nonodes")
	if err != nil || valid || !strings.Contains(msg, "hardware specifier") {
		t.Errorf("SessionTemplateValid(nonodes) = %v, %q, %v", valid, msg, err)
	}
	_, _, err = c.SessionTemplateValid(ctx(t), "missing")
	wantKind(t, err, csm.NotFound)

	// PUT without boot_sets is refused by BOS.
	_, err = c.PutSessionTemplate(ctx(t), csm.SessionTemplate{Name: "bad"})
	e := wantKind(t, err, csm.BadRequest)
	wantContains(t, e.Message, "boot_sets")
	_, err = c.PutSessionTemplate(ctx(t), csm.SessionTemplate{})
	wantKind(t, err, csm.BadRequest)

	sess, err := c.CreateBOSSession(ctx(t), csm.BOSSessionRequest{TemplateName: "compute-23.7", Operation: "reboot", Limit: "x1000c0s0b0n0,x1000c0s1b0n0"})
	if err != nil {
		t.Fatal(err)
	}
	if sess.Name == "" || sess.Operation != "reboot" || sess.TemplateName != "compute-23.7" || sess.Limit != "x1000c0s0b0n0,x1000c0s1b0n0" || sess.Status.Status != "pending" {
		t.Errorf("CreateBOSSession = %+v", sess)
	}
	if rec := emu.BOSSessions(); len(rec) != 1 || rec[0].Name != sess.Name {
		t.Errorf("emulator recorded %+v", rec)
	}
	_, err = c.CreateBOSSession(ctx(t), csm.BOSSessionRequest{TemplateName: "missing", Operation: "reboot"})
	wantKind(t, err, csm.BadRequest)
	_, err = c.CreateBOSSession(ctx(t), csm.BOSSessionRequest{TemplateName: "nonodes", Operation: "reboot"})
	wantKind(t, err, csm.BadRequest)
	_, err = c.CreateBOSSession(ctx(t), csm.BOSSessionRequest{TemplateName: "compute-23.7", Operation: "explode"})
	wantKind(t, err, csm.BadRequest)
}

func TestBOSTenant(t *testing.T) {
	_, base := startEmu(t, csmemu.Options{}, false)
	vast := newClient(t, base, func(c *csm.Config) { c.Tenant = "vast" })
	plain := newClient(t, base, nil)
	tmpl := csm.SessionTemplate{Name: "t1", BootSets: map[string]csm.BootSet{"b": {Path: "s3://x", Type: "s3", NodeList: []string{"x1000c0s0b0n0"}}}}
	got, err := vast.PutSessionTemplate(ctx(t), tmpl)
	if err != nil || got.Tenant != "vast" {
		t.Fatalf("PUT with tenant = %+v, %v", got, err)
	}
	if _, err := vast.SessionTemplate(ctx(t), "t1"); err != nil {
		t.Errorf("tenant GET: %v", err)
	}
	_, err = plain.SessionTemplate(ctx(t), "t1")
	wantKind(t, err, csm.NotFound)
	s, err := vast.CreateBOSSession(ctx(t), csm.BOSSessionRequest{TemplateName: "t1", Operation: "boot"})
	if err != nil || s.Tenant != "vast" {
		t.Errorf("tenant session = %+v, %v", s, err)
	}
}

func TestCPS(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{}, false)
	c := newClient(t, base, nil)
	cs, err := c.CPSContents(ctx(t))
	if err != nil || len(cs) != 0 {
		t.Fatalf("CPSContents = %v, %v", cs, err)
	}
	emu.SetCPSContents([]csm.CPSContent{{S3Path: "s3://boot-images/abc/rootfs", Etag: "e1",
		Extra: map[string]json.RawMessage{"transport": json.RawMessage(`"dvs"`)}}})
	emu.SetCPSTransports([]csm.CPSTransport{{ReadyForMount: true}, {ReadyForMount: false}})
	cs, err = c.CPSContents(ctx(t))
	if err != nil || len(cs) != 1 || cs[0].S3Path != "s3://boot-images/abc/rootfs" || cs[0].Etag != "e1" || string(cs[0].Extra["transport"]) != `"dvs"` {
		t.Fatalf("CPSContents = %+v, %v", cs, err)
	}
	ts, err := c.CPSTransports(ctx(t))
	if err != nil || len(ts) != 2 || !ts[0].ReadyForMount || ts[1].ReadyForMount {
		t.Fatalf("CPSTransports = %+v, %v", ts, err)
	}
}
