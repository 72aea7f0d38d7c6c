package csm_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/api"
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
		!slices.Equal(s.Components, []string{"x1000c0s0b0n0"}) || !slices.Equal(s.Roles, []string{"compute"}) ||
		!slices.Contains(s.States, "ready") || !s.Enabled || s.URL == "" || s.Xname() != "x1000c0s0b0n0" {
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
  "cfs": {"configuration": "compute-23.7"},
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
      "cfs": {"configuration": "override"}
    }
  },
  "links": [{"href": "/v2/sessiontemplates/compute-23.7", "rel": "self"}]
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
	// BOS 2.10 (CSM 1.5): boot sets may carry arch.
	emu, base := startEmu(t, csmemu.Options{Release: api.CSM15}, false)
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
	// What the emulator stored is what was read, less the links BOS
	// generates: nothing else dropped.
	raw, ok := emu.SessionTemplateJSON("compute-23.7")
	var want map[string]any
	json.Unmarshal([]byte(templateJSON), &want)
	delete(want, "links")
	wantJSON, _ := json.Marshal(want)
	if !ok || !jsonEqual(t, raw, wantJSON) {
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

	v, err := c.ValidateSessionTemplate(ctx(t), "compute-23.7")
	if err != nil || v.Verdict != csm.TemplateValid || v.Message != "Valid" {
		t.Errorf("ValidateSessionTemplate = %+v, %v", v, err)
	}
	// Templates restored from an old backup may lack boot sets or nodes.
	if err := emu.SetSessionTemplateJSON("empty", []byte(`{"enable_cfs": false}`)); err != nil {
		t.Fatal(err)
	}
	v, err = c.ValidateSessionTemplate(ctx(t), "empty")
	if err != nil || v.Verdict != csm.TemplateInvalid || !strings.Contains(v.Message, "requires at least 1 boot set") {
		t.Errorf("ValidateSessionTemplate(empty) = %+v, %v", v, err)
	}
	if err := emu.SetSessionTemplateJSON("nonodes", []byte(`{"boot_sets": {"bs": {"path": "s3://x", "type": "s3"}}}`)); err != nil {
		t.Fatal(err)
	}
	v, err = c.ValidateSessionTemplate(ctx(t), "nonodes")
	if err != nil || v.Verdict != csm.TemplateInvalid || !strings.Contains(v.Message, "hardware specifier") {
		t.Errorf("ValidateSessionTemplate(nonodes) = %+v, %v", v, err)
	}
	// BOS reports a boot set whose initrd it cannot find as a warning.
	const warning = "Session template: 'compute-23.7' boot set: 'compute' could not locate its initrd. Warning: An error occurred (404) when calling the HeadObject operation: Not Found"
	emu.SetTemplateValidation("compute-23.7", warning)
	v, err = c.ValidateSessionTemplate(ctx(t), "compute-23.7")
	if err != nil || v.Verdict != csm.TemplateWarning || v.Message != warning {
		t.Errorf("ValidateSessionTemplate with a warning = %+v, %v", v, err)
	}
	emu.SetTemplateValidation("compute-23.7", "")
	_, err = c.ValidateSessionTemplate(ctx(t), "missing")
	wantKind(t, err, csm.NotFound)

	// A template with keys BOS v2 refuses is refused before it is sent.
	legacy := tmpl
	legacy.Name = "legacy"
	legacy.Extra = map[string]json.RawMessage{"partition": json.RawMessage(`"p1"`)}
	n := emu.Requests(csm.PathBOSSessionTemplates + "/legacy")
	_, err = c.PutSessionTemplate(ctx(t), legacy)
	e := wantKind(t, err, csm.BadRequest)
	wantContains(t, e.Message, "partition", "ConvertToV2")
	if emu.Requests(csm.PathBOSSessionTemplates+"/legacy") != n {
		t.Error("the refused template was sent")
	}
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
	emu.SetCPSContents([]csm.CPSContent{{S3Path: "s3://boot-images/abc/rootfs", Etag: "e1", Transports: []string{"dvs"},
		Extra: map[string]json.RawMessage{"artifactID": json.RawMessage(`"abc"`)}}})
	emu.SetCPSTransports([]csm.CPSTransport{{ReadyForMount: true}, {ReadyForMount: false}})
	cs, err = c.CPSContents(ctx(t))
	if err != nil || len(cs) != 1 || cs[0].S3Path != "s3://boot-images/abc/rootfs" || cs[0].Etag != "e1" || string(cs[0].Extra["artifactID"]) != `"abc"` {
		t.Fatalf("CPSContents = %+v, %v", cs, err)
	}
	// One object per content, asked with its s3path and transport.
	ts, err := c.CPSTransports(ctx(t), cs[0].S3Path, "dvs", cs[0].Etag)
	if err != nil || ts.ArtifactID != "abc" || len(ts.Transports) != 2 || ts.Transports[0].Type != "dvs" || ts.ReadyForMount() != 1 {
		t.Fatalf("CPSTransports = %+v, %v", ts, err)
	}
	_, err = c.CPSTransports(ctx(t), "s3://boot-images/other/rootfs", "dvs", "")
	wantKind(t, err, csm.NotFound)
	// Both query parameters are required: the client refuses, and so does CPS.
	_, err = c.CPSTransports(ctx(t), cs[0].S3Path, "", "")
	wantKind(t, err, csm.BadRequest)
	if n := emu.Requests(csm.PathCPSTransports); n != 2 {
		t.Errorf("%d transports requests, want 2 (the refused one is not sent)", n)
	}
}
