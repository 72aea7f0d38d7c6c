package csmemu_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

// call sends one request with a bearer token, bypassing the client (which
// would never send some of these), and returns the status and body.
func call(t *testing.T, _ *csm.Client, base, method, path, body string) (int, string) {
	t.Helper()
	form := strings.NewReader("grant_type=client_credentials&client_id=" + csm.DefaultClientID + "&client_secret=" + csmemu.DefaultClientSecret)
	resp, err := http.Post(base+csmemu.TokenPath, "application/x-www-form-urlencoded", form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tok := strings.Split(strings.Split(string(b), `"access_token":"`)[1], `"`)[0]
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ = io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestReleaseSurface: each release serves exactly its API versions; absent
// ones answer 404 the way the service's server does.
func TestReleaseSurface(t *testing.T) {
	paths := []string{csm.PathBOSv1SessionTemplate, csm.PathBOSSessionTemplates, csm.PathHMNFDv1Subscriptions,
		csm.PathHMNFDSubscriptions, csm.PathCRUSSession, csm.PathCPSContents, csm.PathFASLoader, csm.PathHSMComponents, "/apis/smd/hsm/v1/State/Components",
		csm.PathBSSBootParameters}
	want := map[api.Release][]int{
		//            bos v1 bos v2 hmi v1 hmi v2 crus cps fas hsm2 hsm1 bss
		api.CSM10: {200, 404, 200, 404, 200, 200, 200, 200, 404, 200},
		api.CSM12: {200, 404, 200, 200, 200, 200, 200, 200, 404, 200},
		api.CSM13: {200, 200, 200, 200, 200, 200, 200, 200, 404, 200},
		api.CSM15: {200, 200, 200, 200, 404, 404, 200, 200, 404, 200},
		api.CSM16: {404, 200, 200, 200, 404, 404, 200, 200, 404, 200},
	}
	for rel, statuses := range want {
		_, c, base := start(t, csmemu.Options{Release: rel})
		for i, p := range paths {
			st, body := call(t, c, base, http.MethodGet, p, "")
			if st != statuses[i] {
				t.Errorf("%s: GET %s = %d %s, want %d", rel, p, st, body, statuses[i])
			}
			if st == 404 && p == csm.PathHMNFDSubscriptions && body != "404 page not found" {
				t.Errorf("%s: HMNFD 1.8.5's 404 is Go's default mux text, got %q", rel, body)
			}
		}
	}
	if e := csmemu.New(csmemu.Options{}); e.Release() != api.CSM13 {
		t.Errorf("default release %s, want csm-1.3", e.Release())
	}
}

// TestCPSTransportsNeedsItsParameters: GET /transports needs s3path and
// transport, and answers one object for the content.
func TestCPSTransportsNeedsItsParameters(t *testing.T) {
	e, c, base := start(t, csmemu.Options{})
	e.SetCPSContents([]csm.CPSContent{{S3Path: "s3://boot-images/a/rootfs", Etag: "e1"}})
	for _, q := range []string{"", "?s3path=s3://boot-images/a/rootfs", "?transport=dvs"} {
		if st, body := call(t, c, base, http.MethodGet, csm.PathCPSTransports+q, ""); st != 400 || !strings.Contains(body, "Missing query parameter") {
			t.Errorf("GET transports%s = %d %s, want 400", q, st, body)
		}
	}
	st, body := call(t, c, base, http.MethodGet, csm.PathCPSTransports+"?s3path=s3://boot-images/a/rootfs&transport=dvs", "")
	if st != 200 || !strings.HasPrefix(body, `{"artifactID":"boot-images/a/rootfs","transports":[{"type":"dvs","readyForMount":true}]`) {
		t.Errorf("GET transports = %d %s", st, body)
	}
	if st, body := call(t, c, base, http.MethodGet, csm.PathCPSContents, ""); st != 200 || !strings.HasPrefix(body, "[") {
		t.Errorf("GET contents = %d %s, want an array", st, body)
	}
}

// TestHMNFDShapes: values lower-case, null for none, GET …/agents is 405,
// a v1 subscribe is stored as HMNFD stores it, a duplicate refused.
func TestHMNFDShapes(t *testing.T) {
	e, c, base := start(t, csmemu.Options{})
	if _, body := call(t, c, base, http.MethodGet, csm.PathHMNFDSubscriptions+"/x1000c0s0b0n0", ""); body != `{"SubscriptionList":null}` {
		t.Errorf("none for an xname: %s", body)
	}
	sub := `{"Subscriber":"orca@x3000c0s1b0n0","Components":["allnodes"],"States":["Ready","Standby"],"Roles":["Compute"],"Enabled":true,"Url":"http://X3000c0s1b0n0:7999/scn"}`
	if st, body := call(t, c, base, http.MethodPost, "/apis/hmnfd/hmi/v1/subscribe", sub); st != 200 {
		t.Fatalf("subscribe: %d %s", st, body)
	}
	if st, body := call(t, c, base, http.MethodPost, "/apis/hmnfd/hmi/v1/subscribe", sub); st != 400 || !strings.Contains(body, "Subscription exists") {
		t.Errorf("same subscription again: %d %s", st, body)
	}
	_, body := call(t, c, base, http.MethodGet, csm.PathHMNFDv1Subscriptions, "")
	const want = `{"SubscriptionList":[{"Subscriber":"orca@x3000c0s1b0n0","SubscriberComponent":"x3000c0s1b0n0","SubscriberAgent":"orca","Components":["allnodes"],"Roles":["compute"],"States":["ready","standby"],"Enabled":true,"Url":"http://x3000c0s1b0n0:7999/scn"}]}`
	if body != want {
		t.Errorf("list\n got %s\nwant %s", body, want)
	}
	if st, _ := call(t, c, base, http.MethodGet, csm.PathHMNFDSubscriptions+"/x3000c0s1b0n0/agents", ""); st != 405 {
		t.Errorf("GET …/agents = %d, want 405 (only DELETE is routed)", st)
	}
	if st, body := call(t, c, base, http.MethodPost, "/apis/hmnfd/hmi/v1/subscribe", `{"Subscriber":"orca@nothing","Components":["a"],"States":["ready"],"Url":"u"}`); st != 400 || !strings.Contains(body, "not a valid XName") {
		t.Errorf("bad xname: %d %s", st, body)
	}
	e.WipeHMNFD()
	if st, _ := call(t, c, base, http.MethodGet, csm.PathHMNFDReadiness, ""); st != 503 {
		t.Errorf("readiness after a wipe = %d, want 503", st)
	}
}

// TestFASLoaderListsObjectsAndDropResponse: loaderRunList items are
// objects, as FAS's code answers; DropResponse makes the change and loses
// the answer.
func TestFASLoaderListsObjectsAndDropResponse(t *testing.T) {
	e, c, base := start(t, csmemu.Options{})
	e.DropResponse(http.MethodPost, csm.PathFASLoaderNexus, 1)
	if _, err := c.FASLoadNexus(bg(t)); csm.KindOf(err) != csm.Unreachable {
		t.Fatalf("FASLoadNexus with the answer dropped: %v, want Unreachable", err)
	}
	runs := e.FASLoaderRuns()
	if len(runs) != 1 {
		t.Fatalf("runs %v, want the one the lost request started", runs)
	}
	if _, body := call(t, c, base, http.MethodGet, csm.PathFASLoader, ""); body != `{"loaderRunList":[{"loaderRunID":"`+runs[0]+`"}],"loaderStatus":"ready"}` {
		t.Errorf("GET loader = %s", body)
	}
	if _, err := c.FASLoadNexus(bg(t)); err != nil {
		t.Errorf("the fault was not used up: %v", err)
	}
}
