package bos_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/activitytest"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/snapshot"
	"github.com/csmops/etcd-repopulate/procedures/bos"
)

// releaseTemplates are templates as each BOS API version holds them: v1
// ones with v1-only members (partition, a boot set's network).
var releaseTemplates = map[string][]string{
	api.APIv1: {
		`{"name":"cos-1","description":"COS computes","enable_cfs":true,"partition":"p0","cfs":{"configuration":"cos-config"},
		  "boot_sets":{"compute":{"path":"s3://boot-images/abc/manifest.json","type":"s3","etag":"e1","network":"nmn","boot_ordinal":1,
		  "node_roles_groups":["Compute"],"rootfs_provider":"cpss3"}}}`,
		`{"name":"uan-1","boot_sets":{"uan":{"path":"s3://boot-images/def/manifest.json","type":"s3","node_list":["x3000c0s19b0n0"]}}}`,
	},
	api.APIv2: {
		`{"name":"cos-2","description":"COS computes","enable_cfs":true,"cfs":{"configuration":"cos-config"},
		  "boot_sets":{"compute":{"path":"s3://boot-images/abc/manifest.json","type":"s3","etag":"e1","node_roles_groups":["Compute"],"rootfs_provider":"cpss3"}}}`,
		`{"name":"uan-2","boot_sets":{"uan":{"path":"s3://boot-images/def/manifest.json","type":"s3","node_list":["x3000c0s19b0n0"]}}}`,
	},
}

// seedTemplates stores templates in the emulator as its BOS holds them.
func seedTemplates(t *testing.T, e *csmemu.Emulator, raws []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, raw := range raws {
		var head struct{ Name string }
		if err := json.Unmarshal([]byte(raw), &head); err != nil {
			t.Fatal(err)
		}
		if err := e.SetSessionTemplateJSON(head.Name, []byte(raw)); err != nil {
			t.Fatal(err)
		}
		b, _ := e.SessionTemplateJSON(head.Name)
		out[head.Name] = string(b)
	}
	return out
}

// takeSnapshot snapshots the emulator as `repopulate snapshot` would.
func takeSnapshot(t *testing.T, cl *csm.Client) *api.SnapshotInput {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "snap")
	if _, err := snapshot.Take(context.Background(), snapshot.Sources{CSM: cl}, dir); err != nil {
		t.Fatal(err)
	}
	in, _, err := snapshot.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestRestoreTemplatesPerRelease: on CSM 1.0 (BOS v1) and 1.3 (BOS v2), a
// snapshot taken on the same release restores the wiped templates exactly
// (equal as JSON), through that release's API.
func TestRestoreTemplatesPerRelease(t *testing.T) {
	for _, rel := range []api.Release{api.CSM10, api.CSM13} {
		e, a := csmEmuRelease(t, rel, nil)
		before := seedTemplates(t, e, releaseTemplates[rel.APIs().BOSVersion()])
		in := takeSnapshot(t, a.CSM.Client)
		if in.APIs != rel.APIs() {
			t.Fatalf("%s: snapshot APIs %+v", rel, in.APIs)
		}
		e.ClearSessionTemplates()
		e.ResetCounters()
		res, _, err := activitytest.Run[bos.RestoreTemplatesResult](t, a, a.RestoreSessionTemplates,
			bos.RestoreTemplatesRequest{Templates: in.SessionTemplates, APIs: rel.APIs(), SnapshotAPIs: in.APIs}, nil)
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if len(res.Restored) != 2 || len(res.Invalid) != 0 || len(res.Converted) != 0 {
			t.Errorf("%s: %+v", rel, res)
		}
		for name, want := range before {
			got, ok := e.SessionTemplateJSON(name)
			if !ok || !equalJSON(json.RawMessage(got), json.RawMessage(want)) {
				t.Errorf("%s: %s restored as\n%s\nwas\n%s", rel, name, got, want)
			}
		}
		v1 := rel == api.CSM10
		if n := e.Requests(csm.PathBOSv1SessionTemplate); v1 && n != 2 || !v1 && n != 0 {
			t.Errorf("%s: %d POSTs to %s", rel, n, csm.PathBOSv1SessionTemplate)
		}
		if v1 && (res.Unvalidated == "" || !strings.Contains(res.Message, "no template validation endpoint")) {
			t.Errorf("%s: the restore does not say BOS v1 could not validate: %+v", rel, res)
		}
		if !v1 && e.Requests(csm.PathBOSSessionTemplatesV+"/cos-2") != 1 {
			t.Errorf("%s: cos-2 not validated by BOS", rel)
		}
	}
}

// TestRestoreRefusesAV2SnapshotIntoBOSv1: templates read through BOS v2
// cannot go back into BOS v1; the step says so and changes nothing.
func TestRestoreRefusesAV2SnapshotIntoBOSv1(t *testing.T) {
	e13, a13 := csmEmuRelease(t, api.CSM13, nil)
	seedTemplates(t, e13, releaseTemplates[api.APIv2])
	in := takeSnapshot(t, a13.CSM.Client)

	e, a := csmEmuRelease(t, api.CSM10, nil)
	e.ResetCounters()
	_, _, err := activitytest.Run[bos.RestoreTemplatesResult](t, a, a.RestoreSessionTemplates,
		bos.RestoreTemplatesRequest{Templates: in.SessionTemplates, APIs: api.CSM10.APIs(), SnapshotAPIs: in.APIs}, nil)
	activitytest.NonRetryable(t, err, bos.ErrTemplateAPIMismatch, "read through BOS v2", "restores through BOS v1", "nothing was changed")
	if names := e.SessionTemplateNames(); len(names) != 0 {
		t.Errorf("templates stored after the refusal: %v", names)
	}
	for p, n := range e.RequestCounts() {
		if strings.HasPrefix(p, "/apis/") {
			t.Errorf("the refused restore sent %d requests to %s", n, p)
		}
	}
	badinput.Record(t, badinput.Case{Area: badinput.Request, Input: "snapshot taken through BOS v2 (CSM 1.3+) restored on CSM 1.0 (BOS v1 only)",
		Message: activitytest.Message(err), Exit: "step fails, type " + bos.ErrTemplateAPIMismatch,
		Unchanged: "no request reached the CSM APIs; BOS holds no template"})
}

// TestRestoreConvertsAV1SnapshotForBOSv2: templates saved on CSM 1.2 (BOS
// v1) restored after an upgrade to 1.3 lose their v1-only members, and
// the result names them.
func TestRestoreConvertsAV1SnapshotForBOSv2(t *testing.T) {
	e12, a12 := csmEmuRelease(t, api.CSM12, nil)
	seedTemplates(t, e12, releaseTemplates[api.APIv1])
	in := takeSnapshot(t, a12.CSM.Client)

	e, a := csmEmuRelease(t, api.CSM13, nil)
	res, _, err := activitytest.Run[bos.RestoreTemplatesResult](t, a, a.RestoreSessionTemplates,
		bos.RestoreTemplatesRequest{Templates: in.SessionTemplates, APIs: api.CSM13.APIs(), SnapshotAPIs: in.APIs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []bos.TemplateConversion{{Name: "cos-1", Dropped: []string{"boot_sets.compute.boot_ordinal", "boot_sets.compute.network", "partition"}}}
	if !equalJSON(res.Converted, want) || len(res.Restored) != 2 || len(res.Invalid) != 0 || !strings.Contains(res.Message, "converted from v1") {
		t.Fatalf("converted %+v, result %+v", res.Converted, res)
	}
	got, _ := e.SessionTemplateJSON("cos-1")
	var m map[string]any
	json.Unmarshal(got, &m)
	if _, ok := m["partition"]; ok || m["description"] != "COS computes" {
		t.Errorf("stored %s", got)
	}
}

// TestRestoreReportsAWarningAsAWarning: BOS's validation message that is a
// warning does not make the template invalid.
func TestRestoreReportsAWarningAsAWarning(t *testing.T) {
	e, a := csmEmuRelease(t, api.CSM15, nil)
	seedTemplates(t, e, releaseTemplates[api.APIv2])
	in := takeSnapshot(t, a.CSM.Client)
	const warning = "Session template: 'cos-2' boot set: 'compute' could not locate its initrd. Warning: An error occurred (404) when calling the HeadObject operation: Not Found"
	e.SetTemplateValidation("cos-2", warning)
	res, _, err := activitytest.Run[bos.RestoreTemplatesResult](t, a, a.RestoreSessionTemplates,
		bos.RestoreTemplatesRequest{Templates: in.SessionTemplates, APIs: api.CSM15.APIs(), SnapshotAPIs: in.APIs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Invalid) != 0 || len(res.Warnings) != 1 || res.Warnings[0].Name != "cos-2" || res.Warnings[0].Message != warning {
		t.Errorf("result %+v", res)
	}
	chk, _, err := activitytest.Run[bos.TemplatesCheck](t, a, a.CheckSessionTemplates, bos.CheckTemplatesRequest{APIs: api.CSM15.APIs()}, nil)
	if err != nil || len(chk.Invalid) != 0 || len(chk.Warnings) != 1 || len(chk.Names) != 2 {
		t.Errorf("CheckSessionTemplates = %+v, %v", chk, err)
	}
}

// TestRestoreFailsWhenBOSRefusesATemplate: a saved template that BOS will
// not store (here a BOS v2 boot-set member, arch, sent to BOS 1.7, whose
// schema has additionalProperties false) is not back, so the restore fails
// and names it; the templates BOS took are stored.
func TestRestoreFailsWhenBOSRefusesATemplate(t *testing.T) {
	e, a := csmEmuRelease(t, api.CSM10, nil)
	good := json.RawMessage(`{"name":"cos-ok","boot_sets":{"compute":{"path":"s3://boot-images/cos/manifest.json","type":"s3","node_list":["x1000c0s0b0n0"]}}}`)
	refused := json.RawMessage(`{"name":"cos-arch","boot_sets":{"compute":{"path":"s3://boot-images/cos/manifest.json","type":"s3","arch":"X86","node_list":["x1000c0s1b0n0"]}}}`)
	_, _, err := activitytest.Run[bos.RestoreTemplatesResult](t, a, a.RestoreSessionTemplates,
		bos.RestoreTemplatesRequest{Templates: []json.RawMessage{good, refused}, APIs: api.CSM10.APIs(), SnapshotAPIs: api.CSM10.APIs()}, nil)
	activitytest.NonRetryable(t, err, bos.ErrTemplatesRefused, "BOS refused to store 1 of the snapshot's session templates", "cos-arch", "arch")
	if names := e.SessionTemplateNames(); !slices.Equal(names, []string{"cos-ok"}) {
		t.Errorf("templates stored: %v, want cos-ok only", names)
	}
}
