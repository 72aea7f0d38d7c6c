package csm_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/csm"
)

// legacyTemplateJSON has members the client does not model, some of them
// BOS v1 only (cfs.clone_url, a boot set's network).
const legacyTemplateJSON = `{
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

func TestSessionTemplateRoundTrip(t *testing.T) {
	var tmpl csm.SessionTemplate
	if err := json.Unmarshal([]byte(legacyTemplateJSON), &tmpl); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, out, []byte(legacyTemplateJSON)) {
		t.Errorf("round trip changed the template:\n got %s\nwant %s", out, legacyTemplateJSON)
	}
	bs := tmpl.BootSets["compute"]
	if string(tmpl.Extra["future_field"]) == "" || string(bs.Extra["network"]) != `"nmn"` ||
		string(tmpl.CFS.Extra["clone_url"]) != `"legacy"` || bs.CFS.Configuration != "override" {
		t.Errorf("unknown members not kept: %+v / %+v", tmpl.Extra, bs.Extra)
	}

	// Edit and re-encode: edits win, everything else stays.
	bs.NodeRolesGroups = nil
	bs.NodeList = []string{"x1000c0s0b0n0"}
	tmpl.BootSets["compute"] = bs
	tmpl.Description = "rebuilt after etcd restore"
	out, _ = json.Marshal(tmpl)
	var m map[string]any
	json.Unmarshal(out, &m)
	set := m["boot_sets"].(map[string]any)["compute"].(map[string]any)
	if m["description"] != "rebuilt after etcd restore" || set["node_roles_groups"] != nil || set["network"] != "nmn" ||
		m["future_field"] == nil || len(set["node_list"].([]any)) != 1 {
		t.Errorf("edited template: %s", out)
	}

	// Explicit false and empty values survive.
	in := `{"name":"t","enable_cfs":false,"boot_sets":{"b":{"kernel_parameters":"","node_list":[]}},"tenant":""}`
	var t2 csm.SessionTemplate
	if err := json.Unmarshal([]byte(in), &t2); err != nil {
		t.Fatal(err)
	}
	out, _ = json.Marshal(t2)
	if !jsonEqual(t, out, []byte(in)) {
		t.Errorf("empty values lost: %s", out)
	}
	if t2.EnableCFS == nil || *t2.EnableCFS {
		t.Errorf("enable_cfs decoded as %v", t2.EnableCFS)
	}

	// A template built from scratch has no surprises.
	on := true
	out, _ = json.Marshal(csm.SessionTemplate{Name: "n", EnableCFS: &on, CFS: &csm.CFSParameters{Configuration: "c"},
		BootSets: map[string]csm.BootSet{"b": {Path: "p", Type: "s3", NodeList: []string{"x"}}}})
	if want := `{"boot_sets":{"b":{"node_list":["x"],"path":"p","type":"s3"}},"cfs":{"configuration":"c"},"enable_cfs":true,"name":"n"}`; !jsonEqual(t, out, []byte(want)) {
		t.Errorf("fresh template %s", out)
	}
	if err := json.Unmarshal([]byte(`[1]`), &t2); err == nil {
		t.Error("array decoded as a template")
	}
}

func TestLoaderRunListForms(t *testing.T) {
	for _, in := range []string{
		`{"loaderStatus":"ready","loaderRunList":["a","b"]}`,
		`{"loaderStatus":"ready","loaderRunList":[{"loaderRunID":"a"},{"loaderRunID":"b"}]}`,
	} {
		var st csm.LoaderStatus
		if err := json.Unmarshal([]byte(in), &st); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if st.Busy() || !slices.Equal([]string(st.LoaderRunList), []string{"a", "b"}) {
			t.Errorf("%s decoded as %+v", in, st)
		}
	}
	var st csm.LoaderStatus
	if err := json.Unmarshal([]byte(`{"loaderRunList":[3]}`), &st); err == nil || !strings.Contains(err.Error(), "loaderRunID") {
		t.Errorf("bad entry: %v", err)
	}
}

func TestCRUSSessionJSONFieldNames(t *testing.T) {
	const in = `{"api_version":"1.0.0","completed":false,"failed_label":"failed-nodes","kind":"ComputeUpgradeSession",
	"messages":["m1"],"starting_label":"slurm-nodes","state":"UPDATING","upgrade_id":"u1","upgrade_step_size":50,
	"upgrade_template_id":"boot-template","upgrading_label":"upgrading-nodes","workload_manager_type":"slurm"}`
	var s csm.CRUSSession
	if err := json.Unmarshal([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(s)
	if !jsonEqual(t, out, []byte(in)) {
		t.Errorf("CRUS session round trip: %s", out)
	}
}
