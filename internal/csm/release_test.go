package csm_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

// TestProbesPerRelease: the probes find each release's API versions, and
// the versions chosen from them are the release's.
func TestProbesPerRelease(t *testing.T) {
	for _, tc := range []struct {
		rel  api.Release
		want api.ReleaseProbes
	}{
		{api.CSM10, api.ReleaseProbes{BOSv1: true}},
		{api.CSM12, api.ReleaseProbes{BOSv1: true, HMNFDv2: true}},
		{api.CSM13, api.ReleaseProbes{BOSv1: true, BOSv2: true, HMNFDv2: true}},
		{api.CSM15, api.ReleaseProbes{BOSv1: true, BOSv2: true, HMNFDv2: true}},
		{api.CSM16, api.ReleaseProbes{BOSv2: true, HMNFDv2: true}},
	} {
		_, base := startEmu(t, csmemu.Options{Release: tc.rel}, false)
		p, err := newClient(t, base, nil).Probe(ctx(t))
		if err != nil || p != tc.want {
			t.Errorf("%s: Probe = %+v, %v; want %+v", tc.rel, p, err, tc.want)
			continue
		}
		if v, err := p.APIs(); err != nil || v != tc.rel.APIs() {
			t.Errorf("%s: APIs from probes = %+v, %v; want %+v", tc.rel, v, err, tc.rel.APIs())
		}
	}
	// Anything but 200 or 404 is not an answer a probe may guess from.
	emu, base := startEmu(t, csmemu.Options{}, false)
	emu.Fail(csm.PathBOSv2, 503, 1)
	_, err := newClient(t, base, nil).Probe(ctx(t))
	e := wantKind(t, err, csm.Server)
	wantContains(t, e.Message, "expected 200 (API present) or 404 (absent)")
	if _, err := (api.ReleaseProbes{HMNFDv2: true}).APIs(); err == nil || !strings.Contains(err.Error(), "neither BOS /v1 nor /v2") {
		t.Errorf("no BOS at all: %v", err)
	}
}

// bodies records the JSON bodies sent to the emulator, by method and path.
type bodies struct {
	next http.Handler
	mu   sync.Mutex
	got  map[string][]string
}

func (b *bodies) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(raw))
	b.mu.Lock()
	b.got[r.Method+" "+r.URL.Path] = append(b.got[r.Method+" "+r.URL.Path], string(raw))
	b.mu.Unlock()
	b.next.ServeHTTP(w, r)
}

func recordBodies(t *testing.T, opts csmemu.Options) (*csmemu.Emulator, *bodies, string) {
	t.Helper()
	opts.ClientSecret = testSecret
	emu := csmemu.New(opts)
	b := &bodies{next: emu, got: map[string][]string{}}
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	return emu, b, srv.URL
}

// TestPutTemplateLeavesOutReadOnlyMembers: BOS v2 refuses a template PUT
// carrying name, tenant or links (connexion's readOnly check); the client
// never sends them, whatever the template it is given holds.
func TestPutTemplateLeavesOutReadOnlyMembers(t *testing.T) {
	emu, rec, base := recordBodies(t, csmemu.Options{Release: api.CSM15})
	c := newClient(t, base, nil)
	var tmpl csm.SessionTemplate
	if err := json.Unmarshal([]byte(`{"name":"t1","tenant":"blue","links":[{"rel":"self","href":"/v2/sessiontemplates/t1"}],
		"boot_sets":{"b":{"path":"s3://x/manifest.json","type":"s3","node_list":["x1000c0s0b0n0"]}}}`), &tmpl); err != nil {
		t.Fatal(err)
	}
	tmpl.Extra = map[string]json.RawMessage{"name": json.RawMessage(`"sneaky"`)} // also where Extra could carry it
	got, err := c.PutSessionTemplate(csm.WithTenant(ctx(t), "blue"), tmpl)
	if err != nil || got.Name != "t1" || got.Tenant != "blue" {
		t.Fatalf("PutSessionTemplate = %+v, %v", got, err)
	}
	sent := rec.got["PUT "+csm.PathBOSSessionTemplates+"/t1"]
	if len(sent) != 1 {
		t.Fatalf("%d PUTs, want 1", len(sent))
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(sent[0]), &body); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "tenant", "links"} {
		if _, ok := body[k]; ok {
			t.Errorf("the PUT body carries %q: %s", k, sent[0])
		}
	}
	if _, ok := body["boot_sets"]; !ok {
		t.Errorf("the PUT body lost the boot sets: %s", sent[0])
	}

	// What the client leaves out, BOS refuses.
	for _, k := range []string{"name", "tenant", "links"} {
		st, msg := rawPut(t, emu, base, "t2", `{"`+k+`":"x","boot_sets":{}}`)
		if st != http.StatusBadRequest || !strings.Contains(msg, "Property is read-only - '"+k+"'") {
			t.Errorf("PUT with %s: %d %s", k, st, msg)
		}
	}
	st, msg := rawPut(t, emu, base, "t2", `{"partition":"p1","boot_sets":{}}`)
	if st != http.StatusBadRequest || !strings.Contains(msg, "Additional properties are not allowed ('partition' was unexpected)") {
		t.Errorf("PUT with a v1-only member: %d %s", st, msg)
	}
	if _, ok := emu.SessionTemplateJSON("t2"); ok {
		t.Error("a refused template was stored")
	}
}

// rawPut sends a template PUT as-is (not through the client).
func rawPut(t *testing.T, emu *csmemu.Emulator, base, name, body string) (int, string) {
	t.Helper()
	return rawCall(t, base, http.MethodPut, csm.PathBOSSessionTemplates+"/"+name, body)
}

func rawCall(t *testing.T, base, method, path, body string) (int, string) {
	t.Helper()
	form := strings.NewReader("grant_type=client_credentials&client_id=" + csm.DefaultClientID + "&client_secret=" + testSecret)
	resp, err := http.Post(base+csm.DefaultTokenPath, "application/x-www-form-urlencoded", form)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBOSv1 (CSM 1.0, BOS 1.7): templates through /v1/sessiontemplate
// (POST replaces), sessions with templateUuid, the id from the links,
// progress from /status; templateName is refused by BOS 1.7.
func TestBOSv1(t *testing.T) {
	emu, rec, base := recordBodies(t, csmemu.Options{Release: api.CSM10, Components: csmemu.ComputeNodes(2)})
	c := newClient(t, base, nil).WithAPIs(api.CSM10.APIs())
	tmpl := csm.SessionTemplate{Name: "cos-1", Links: []csm.Link{{Rel: "self", Href: "/v1/sessiontemplate/cos-1"}},
		Extra:    map[string]json.RawMessage{"partition": json.RawMessage(`"p0"`)},
		BootSets: map[string]csm.BootSet{"compute": {Path: "s3://x/manifest.json", Type: "s3", NodeList: []string{"x1000c0s0b0n0", "x1000c0s1b0n0"}}}}
	got, err := c.PutSessionTemplate(ctx(t), tmpl)
	if err != nil || got.Name != "cos-1" || string(got.Extra["partition"]) != `"p0"` {
		t.Fatalf("PutSessionTemplate v1 = %+v, %v", got, err)
	}
	posted := rec.got["POST "+csm.PathBOSv1SessionTemplate]
	if len(posted) != 1 || !strings.Contains(posted[0], `"name":"cos-1"`) || strings.Contains(posted[0], "links") {
		t.Errorf("v1 template POST body %q: want the name, no links", posted)
	}
	if list, err := c.SessionTemplates(ctx(t)); err != nil || len(list) != 1 {
		t.Errorf("SessionTemplates v1 = %+v, %v", list, err)
	}
	_, err = c.ValidateSessionTemplate(ctx(t), "cos-1")
	e := wantKind(t, err, csm.BadRequest)
	wantContains(t, e.Message, "no session template validation endpoint")
	if msg := csm.CheckTemplate(got); msg != "" {
		t.Errorf("CheckTemplate = %q", msg)
	}

	s, err := c.CreateBOSSession(ctx(t), csm.BOSSessionRequest{Name: "ignored", TemplateName: "cos-1", Operation: "shutdown", Limit: "x1000c0s0b0n0"})
	if err != nil || s.Name == "" || s.Name == "ignored" {
		t.Fatalf("CreateBOSSession v1 = %+v, %v", s, err)
	}
	sent := rec.got["POST "+csm.PathBOSv1Session]
	if len(sent) != 1 || !strings.Contains(sent[0], `"templateUuid":"cos-1"`) || strings.Contains(sent[0], "templateName") {
		t.Errorf("v1 session body %q: want templateUuid only", sent)
	}
	ids, err := c.BOSSessionIDs(ctx(t))
	if err != nil || !slices.Equal(ids, []string{s.Name}) {
		t.Errorf("BOSSessionIDs = %v, %v", ids, err)
	}
	have, err := c.BOSSession(ctx(t), s.Name)
	if err != nil || have.TemplateName != "cos-1" || have.Operation != "shutdown" || have.Limit != "x1000c0s0b0n0" || have.Status.Status != "complete" {
		t.Errorf("BOSSession v1 = %+v, %v", have, err)
	}
	if comps := emu.Components(); comps[0].State != "Off" || comps[1].State != "Ready" {
		t.Errorf("after the v1 shutdown of x1000c0s0b0n0: %+v", comps)
	}

	// BOS 1.7 (CSM 1.0) refuses templateName; BOS 1.10 (CSM 1.2) takes it.
	st, msg := rawCall(t, base, http.MethodPost, csm.PathBOSv1Session, `{"operation":"boot","templateName":"cos-1"}`)
	if st != http.StatusBadRequest || !strings.Contains(msg, "'templateName' was unexpected") {
		t.Errorf("templateName on BOS 1.7: %d %s", st, msg)
	}
	_, base12 := startEmu(t, csmemu.Options{Release: api.CSM12}, false)
	c12 := newClient(t, base12, nil).WithAPIs(api.CSM12.APIs())
	if _, err := c12.PutSessionTemplate(ctx(t), tmpl); err != nil {
		t.Fatal(err)
	}
	if st, msg := rawCall(t, base12, http.MethodPost, csm.PathBOSv1Session, `{"operation":"boot","templateName":"cos-1"}`); st != http.StatusCreated {
		t.Errorf("templateName on BOS 1.10: %d %s", st, msg)
	}
	// BOS v2 does not exist on CSM 1.0.
	_, err = newClient(t, base, nil).SessionTemplates(ctx(t))
	wantKind(t, err, csm.NotFound)
}

// TestHMNFDv1: HMNFD 1.8.5 (CSM 1.0) serves only /hmi/v1; its
// subscriptions have no SubscriberComponent, so the xname comes from
// Subscriber; an empty list is null; readiness is 503 after a wipe until
// HMNFD restarts.
func TestHMNFDv1(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{Release: api.CSM10}, false)
	c := newClient(t, base, nil).WithAPIs(api.CSM10.APIs())
	st, body := rawCall(t, base, http.MethodGet, csm.PathHMNFDSubscriptions, "")
	if st != http.StatusNotFound || strings.TrimSpace(body) != "404 page not found" {
		t.Errorf("/hmi/v2 on HMNFD 1.8.5: %d %q", st, body)
	}
	st, body = rawCall(t, base, http.MethodGet, csm.PathHMNFDv1Subscriptions, "")
	if st != http.StatusOK || strings.TrimSpace(body) != `{"SubscriptionList":null}` {
		t.Errorf("no subscriptions: %d %s", st, body)
	}
	if subs, err := c.Subscriptions(ctx(t)); err != nil || len(subs) != 0 {
		t.Errorf("Subscriptions of none = %+v, %v", subs, err)
	}
	emu.Subscribe("X1000C0S0B0N0")
	emu.SetSubscriptions(append(emu.Subscriptions(), csm.Subscription{Subscriber: "x1000c0s1b0n0", Components: []string{"allnodes"}, States: []string{"Ready"}, URL: "http://x/scn"}))
	subs, err := c.Subscriptions(ctx(t))
	if err != nil || len(subs) != 2 {
		t.Fatalf("Subscriptions = %+v, %v", subs, err)
	}
	var xnames []string
	for _, s := range subs {
		if s.SubscriberComponent != "" || s.SubscriberAgent != "" {
			t.Errorf("HMNFD 1.8.5 has no SubscriberComponent/Agent: %+v", s)
		}
		xnames = append(xnames, s.Xname())
	}
	if !slices.Equal(xnames, []string{"x1000c0s0b0n0", "x1000c0s1b0n0"}) || subs[0].Subscriber != "hmnfd-orca@x1000c0s0b0n0" {
		t.Errorf("xnames %v from %+v", xnames, subs)
	}

	ready, err := c.HMNFDReady(ctx(t))
	if err != nil || !ready {
		t.Errorf("HMNFDReady before the wipe = %v, %v", ready, err)
	}
	emu.WipeHMNFD()
	emu.Subscribe("x1000c0s0b0n0") // a node re-subscribing does not make HMNFD ready
	if ready, err := c.HMNFDReady(ctx(t)); err != nil || ready {
		t.Errorf("HMNFDReady after the wipe = %v, %v; want false", ready, err)
	}
	emu.RestartHMNFD()
	if ready, err := c.HMNFDReady(ctx(t)); err != nil || !ready {
		t.Errorf("HMNFDReady after the restart = %v, %v", ready, err)
	}
	emu.Fail(csm.PathHMNFDReadiness, 500, 1)
	_, err = c.HMNFDReady(ctx(t))
	wantKind(t, err, csm.Server)
}

// TestConvertToV2 drops exactly the members BOS v2 does not have.
func TestConvertToV2(t *testing.T) {
	var tmpl csm.SessionTemplate
	if err := json.Unmarshal([]byte(legacyTemplateJSON), &tmpl); err != nil {
		t.Fatal(err)
	}
	want := []string{"boot_sets.compute.network", "cfs.clone_url", "future_field"}
	if got := csm.V1OnlyKeys(tmpl); !slices.Equal(got, want) {
		t.Errorf("V1OnlyKeys = %v, want %v", got, want)
	}
	conv, dropped := csm.ConvertToV2(tmpl)
	if !slices.Equal(dropped, want) || len(csm.V1OnlyKeys(conv)) != 0 {
		t.Errorf("ConvertToV2 dropped %v, left %v", dropped, csm.V1OnlyKeys(conv))
	}
	if conv.CFS.Configuration != "compute-23.7" || conv.BootSets["compute"].KernelParameters == "" || string(conv.BootSets["compute"].Extra["network"]) != "" {
		t.Errorf("converted %+v", conv)
	}
	if string(tmpl.BootSets["compute"].Extra["network"]) != `"nmn"` {
		t.Error("ConvertToV2 changed its argument")
	}
}
