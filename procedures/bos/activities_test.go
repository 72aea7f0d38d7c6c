package bos_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/activitytest"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/internal/snapshot"
	"github.com/csmops/etcd-repopulate/procedures/bos"
)

// n0 is a compute node of csmemu.ComputeNodes.
const n0 = "x1000c0s0b0n0"

// csmEmu serves an emulator with comps in HSM and returns the BOS
// activities talking to it over HTTP.
func csmEmu(t *testing.T, comps []csm.Component) (*csmemu.Emulator, *bos.Activities) {
	t.Helper()
	return csmEmuRelease(t, "", comps)
}

func setTemplate(t *testing.T, e *csmemu.Emulator, name string, bs csm.BootSet) {
	t.Helper()
	bs.Path, bs.Type = "s3://boot-images/"+name+"/manifest.json", "s3"
	if err := e.SetSessionTemplate(csm.SessionTemplate{Name: name, BootSets: map[string]csm.BootSet{"compute": bs}}); err != nil {
		t.Fatal(err)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// bosTemplates: one of a tenant, one with every member BOS 2.0 (CSM 1.3,
// the emulator's default) has, one whose boot set names no nodes (BOS
// stores it but finds it invalid).
var bosTemplates = []string{
	`{"name":"cos-2.4","description":"COS compute","enable_cfs":true,"cfs":{"configuration":"cos-config-2.4"},
	  "boot_sets":{"compute":{"name":"compute","path":"s3://boot-images/abc/manifest.json","type":"s3","etag":"e1","kernel_parameters":"console=ttyS0",
	  "node_roles_groups":["Compute"],"node_groups":[],"rootfs_provider":"cpss3","rootfs_provider_passthrough":"dvs:api-gw-service-nmn.local:300:nmn0",
	  "cfs":{"configuration":"cos-config-2.4-compute"}}}}`,
	`{"name":"uan-2.4","tenant":"blue","enable_cfs":false,
	  "boot_sets":{"uan":{"path":"s3://boot-images/def/manifest.json","type":"s3","node_list":["x3000c0s19b0n0"]}}}`,
	`{"name":"broken","boot_sets":{"none":{"path":"s3://boot-images/x/manifest.json","type":"s3"}}}`,
}

// bosSnapshot starts an emulator holding bosTemplates and returns the
// templates as a snapshot taken from it saved them.
func bosSnapshot(t *testing.T) (*csmemu.Emulator, *csm.Client, []json.RawMessage) {
	t.Helper()
	e, acts := csmEmu(t, nil)
	for _, raw := range bosTemplates {
		var tmpl csm.SessionTemplate
		if err := json.Unmarshal([]byte(raw), &tmpl); err != nil {
			t.Fatal(err)
		}
		if err := e.SetSessionTemplate(tmpl); err != nil {
			t.Fatal(err)
		}
	}
	cl := acts.CSM.Client
	dir := filepath.Join(t.TempDir(), "snap")
	if _, err := snapshot.Take(context.Background(), snapshot.Sources{CSM: cl}, dir); err != nil {
		t.Fatal(err)
	}
	in, _, err := snapshot.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return e, cl, in.SessionTemplates
}

func restore(t *testing.T, c *activities.CSM, templates []json.RawMessage, heartbeat any) (bos.RestoreTemplatesResult, error) {
	t.Helper()
	a := &bos.Activities{CSM: c}
	out, _, err := activitytest.Run[bos.RestoreTemplatesResult](t, a, a.RestoreSessionTemplates, bos.RestoreTemplatesRequest{Templates: templates}, heartbeat)
	return out, err
}

func templatePath(name string) string { return csm.PathBOSSessionTemplates + "/" + name }

// TestRestoreSessionTemplatesAfterWipe: the templates an etcd rebuild wiped
// come back as saved; the invalid one is reported with BOS's message; a
// second run changes nothing.
func TestRestoreSessionTemplatesAfterWipe(t *testing.T) {
	e, cl, saved := bosSnapshot(t)
	acts := &activities.CSM{Client: cl}
	e.ClearSessionTemplates()

	res, err := restore(t, acts, saved, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"broken", "cos-2.4", "blue/uan-2.4"}; !slices.Equal(res.Restored, want) || len(res.Unchanged) != 0 {
		t.Fatalf("restored %v unchanged %v, want restored %v (%s)", res.Restored, res.Unchanged, want, res.Message)
	}
	if len(res.Invalid) != 1 || res.Invalid[0].Name != "broken" || !strings.Contains(res.Invalid[0].Message, "must have at least one hardware specifier") {
		t.Fatalf("invalid %+v, want broken with BOS's message", res.Invalid)
	}
	for _, raw := range saved {
		var head struct{ Name, Tenant string }
		json.Unmarshal(raw, &head)
		got, err := cl.SessionTemplate(csm.WithTenant(context.Background(), head.Tenant), head.Name)
		if err != nil {
			t.Fatalf("%s not restored: %v", head.Name, err)
		}
		b, _ := json.Marshal(got)
		var x, y any
		json.Unmarshal(raw, &x)
		json.Unmarshal(b, &y)
		if !reflect.DeepEqual(x, y) {
			t.Errorf("%s restored as\n%s\nsaved as\n%s", head.Name, b, raw)
		}
	}

	// Run again, as a retry after the last heartbeat was lost would: only
	// GETs, no PUT, same verdicts.
	e.ResetCounters()
	again, err := restore(t, acts, saved, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Restored) != 0 || len(again.Unchanged) != 3 || len(again.Invalid) != 1 {
		t.Fatalf("second run: %+v", again)
	}
	for _, name := range []string{"cos-2.4", "uan-2.4", "broken"} {
		if n := e.Requests(templatePath(name)); n != 1 {
			t.Errorf("second run sent %d requests for %s, want 1 GET and no PUT", n, name)
		}
	}

	// A template changed after the rebuild is put back; the others are left alone.
	if err := e.SetSessionTemplateJSON("cos-2.4", []byte(`{"boot_sets":{"b":{"node_list":["x1"]}}}`)); err != nil {
		t.Fatal(err)
	}
	third, err := restore(t, acts, saved, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(third.Restored, []string{"cos-2.4"}) || len(third.Unchanged) != 2 {
		t.Fatalf("third run: %+v", third)
	}
}

// TestRestoreSessionTemplatesResumesFromHeartbeat: a retried attempt skips
// the templates the heartbeat says are done, and still reports them.
func TestRestoreSessionTemplatesResumesFromHeartbeat(t *testing.T) {
	e, cl, saved := bosSnapshot(t)
	e.ClearSessionTemplates()
	e.ResetCounters()
	res, err := restore(t, &activities.CSM{Client: cl}, saved, map[string]any{
		"progress": "1/3 templates", "done": 1, "restored": []string{"broken"},
		"invalid": []bos.TemplateProblem{{Name: "broken", Message: "earlier verdict"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := e.Requests(templatePath("broken")); n != 0 {
		t.Errorf("the template done before the retry was requested %d times", n)
	}
	if !slices.Equal(res.Restored, []string{"broken", "cos-2.4", "blue/uan-2.4"}) || len(res.Invalid) != 1 || res.Invalid[0].Message != "earlier verdict" {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(res.Message, "1 done before a retry") {
		t.Errorf("message %q", res.Message)
	}
}

// TestRestoreSessionTemplatesErrors: what a retry cannot fix stops the step
// at once, naming the credential or the template.
func TestRestoreSessionTemplatesErrors(t *testing.T) {
	e, cl, saved := bosSnapshot(t)
	nonRetryable := func(err error, wantType, wantText string) {
		t.Helper()
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || !appErr.NonRetryable() || appErr.Type() != wantType || !strings.Contains(err.Error(), wantText) {
			t.Fatalf("error %v, want non-retryable %s containing %q", err, wantType, wantText)
		}
	}
	e.Fail(csm.PathBOSSessionTemplates, 403, -1)
	_, err := restore(t, &activities.CSM{Client: cl}, saved, nil)
	nonRetryable(err, "CSMForbidden", `client_id "admin-client" is not allowed`)
	e.ClearFaults()

	bad, _ := csm.New(csm.Config{BaseURL: e.URL(), Secret: csm.SecretValue("wrong-secret"), Timeout: 5 * time.Second})
	_, err = restore(t, &activities.CSM{Client: bad}, saved, nil)
	nonRetryable(err, "CSMUnauthorized", "admin-client-auth")

	_, err = restore(t, &activities.CSM{Client: cl}, []json.RawMessage{json.RawMessage(`{"boot_sets":{}}`)}, nil)
	nonRetryable(err, api.InvalidRequestError, "snapshot session template 1: has no name")

	_, err = restore(t, &activities.CSM{}, saved, nil)
	nonRetryable(err, activities.ErrCSMNotConfigured, "csm.baseURL")

	// A server error is left to the retry policy.
	e.Fail(csm.PathBOSSessionTemplatesV, 503, 1)
	_, err = restore(t, &activities.CSM{Client: cl}, saved, nil)
	var appErr *temporal.ApplicationError
	if err == nil || errors.As(err, &appErr) && appErr.NonRetryable() {
		t.Fatalf("503: %v, want a retryable error", err)
	}
}

// Thousands of templates outlast one attempt: the check heartbeats after
// each template with its index, and a retry resumes there; a list that
// changed under it is checked again from the start.
func TestCheckSessionTemplatesResumesFromItsIndex(t *testing.T) {
	e, a := csmEmu(t, csmemu.ComputeNodes(1))
	names := []string{"t1", "t2", "t3", "t4", "t5"}
	for _, n := range names {
		setTemplate(t, e, n, csm.BootSet{NodeList: []string{n0}})
	}
	validated := func() []int {
		var out []int
		for _, n := range names {
			out = append(out, e.Requests(csm.PathBOSSessionTemplatesV+"/"+n))
		}
		return out
	}
	// The SDK throttles what reaches a test listener: count at the source.
	recorded, stop := activities.CountHeartbeats()
	defer stop()
	first, _, err := activitytest.Run[bos.TemplatesCheck](t, a, a.CheckSessionTemplates, bos.CheckTemplatesRequest{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	beats := recorded()
	if len(first.Names) != 5 || len(beats) != 5 || !strings.Contains(beats[4], `"progress":"5/5 templates"`) || !strings.Contains(beats[1], `"done":2`) {
		t.Fatalf("first attempt: names %v heartbeats %v, want one heartbeat per template with its index", first.Names, beats)
	}
	e.ResetCounters()
	// The attempt before was lost after validating t1 and t2.
	got, _, err := activitytest.Run[bos.TemplatesCheck](t, a, a.CheckSessionTemplates, bos.CheckTemplatesRequest{},
		map[string]any{"done": 2, "last": first.Names[1], "names": first.Names[:2]})
	if err != nil {
		t.Fatal(err)
	}
	beats = recorded()[len(beats):]
	if v := validated(); !slices.Equal(v, []int{0, 0, 1, 1, 1}) {
		t.Errorf("validations per template %v after resuming at 2, want [0 0 1 1 1]", v)
	}
	if !slices.Equal(got.Names, first.Names) || len(beats) != 3 || !strings.Contains(got.Message, "BOS has 5 session templates") {
		t.Errorf("resumed: names %v heartbeats %v message %q", got.Names, beats, got.Message)
	}
	e.ResetCounters()
	// Details naming another template at that index: the list changed, start over.
	got, _, err = activitytest.Run[bos.TemplatesCheck](t, a, a.CheckSessionTemplates, bos.CheckTemplatesRequest{},
		map[string]any{"done": 2, "last": "gone", "names": []string{"gone", "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if v := validated(); !slices.Equal(v, []int{1, 1, 1, 1, 1}) || !slices.Equal(got.Names, first.Names) {
		t.Errorf("changed list: validations %v names %v, want all five checked again", v, got.Names)
	}
}

// csmEmuRelease serves an emulator of rel's APIs ("": the default) with
// comps in HSM and returns the bos activities talking to it.
func csmEmuRelease(t *testing.T, rel api.Release, comps []csm.Component) (*csmemu.Emulator, *bos.Activities) {
	e, c := activitytest.CSM(t, rel, comps)
	return e, &bos.Activities{CSM: c}
}
