package csmemu_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

func start(t *testing.T, opts csmemu.Options) (*csmemu.Emulator, *csm.Client, string) {
	t.Helper()
	e := csmemu.New(opts)
	base, err := e.Start(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	c, err := csm.New(csm.Config{BaseURL: base, Secret: csm.SecretValue(csmemu.DefaultClientSecret), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e, c, base
}

func bg(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestCRUSSessionProgressesOneStepPerGET(t *testing.T) {
	e, c, _ := start(t, csmemu.Options{})
	script := csmemu.CRUSScript(2)
	id := e.AddCRUSSession(csm.CRUSSession{State: csm.CRUSUpdating, UpgradeStepSize: 50, WorkloadManagerType: "slurm"}, script...)
	if id == "" {
		t.Fatal("no upgrade id")
	}
	var msgs []string
	for i := 0; i < len(script); i++ {
		s, err := c.CRUSSession(bg(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Messages) != i+1 {
			t.Fatalf("GET %d: %d messages, want %d", i+1, len(s.Messages), i+1)
		}
		if last := i == len(script)-1; s.Completed != last {
			t.Fatalf("GET %d: completed=%v", i+1, s.Completed)
		}
		msgs = s.Messages
	}
	want := []string{
		"Quiesce requested in step 0: moving to QUIESCING",
		"All nodes quiesced in step 0: moving to QUIESCED",
		"Began the boot session for step 0: moving to BOOTING",
		"The boot session for step 0 completed: moving to BOOTED",
		"Step 0 boot session succeeded: moving to WLM_WAITING",
		"All WLM returned to ready in step 0: advancing to step 1 and moving to STARTING",
	}
	if !slices.Equal(msgs[:6], want) || !strings.Contains(msgs[6], "step 1: moving to QUIESCING") {
		t.Errorf("messages %q", msgs)
	}
	// Finished: further GETs change nothing.
	s, _ := c.CRUSSession(bg(t), id)
	if !s.Completed || s.State != csm.CRUSReady || s.LastMessage() != "Upgrade Session Completed" || len(s.Messages) != len(script) {
		t.Errorf("final session %+v", s)
	}
	// The list GET advances too.
	id2 := e.AddCRUSSession(csm.CRUSSession{State: csm.CRUSUpdating}, csmemu.CRUSScript(1)...)
	list, err := c.CRUSSessions(bg(t))
	if err != nil || len(list) != 2 || list[1].UpgradeID != id2 || len(list[1].Messages) != 1 {
		t.Errorf("list = %+v, %v", list, err)
	}
}

// TestCRUSPacedSession: with CRUSStepDelay the script follows the clock,
// not the number of GETs, from the session's first GET: nothing changes
// before the first step is due, however often the session is read, and a
// late read applies every step due by then.
func TestCRUSPacedSession(t *testing.T) {
	const step = 300 * time.Millisecond
	e, c, _ := start(t, csmemu.Options{CRUSStepDelay: step})
	script := csmemu.CRUSScript(1) // 8 steps
	id := e.AddCRUSSession(csm.CRUSSession{State: csm.CRUSUpdating}, script...)
	time.Sleep(2 * step) // the clock has not started: nobody has looked
	added := time.Now()
	for i := 0; i < 5 && time.Since(added) < step; i++ {
		s, err := c.CRUSSession(bg(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(added) < step && len(s.Messages) != 0 {
			t.Fatalf("read %d, %v after the session was added: %d messages, want none before the first step is due", i, time.Since(added), len(s.Messages))
		}
	}
	time.Sleep(time.Until(added.Add(3*step + step/2)))
	s, err := c.CRUSSession(bg(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Messages) != 3 || s.Completed {
		t.Fatalf("3.5 steps in: %d messages (completed %v), want 3", len(s.Messages), s.Completed)
	}
	// A restarted clock starts again at the next read.
	e.RestartCRUSClock()
	time.Sleep(2 * step)
	if s, _ = c.CRUSSession(bg(t), id); len(s.Messages) != 3 {
		t.Fatalf("read after the clock was restarted: %d messages, want still 3", len(s.Messages))
	}
	again := time.Now()
	time.Sleep(time.Until(again.Add(time.Duration(len(script)-3)*step + step/2)))
	if s, _ = c.CRUSSession(bg(t), id); !s.Completed || len(s.Messages) != len(script) {
		t.Fatalf("after every step was due: %d messages, completed %v", len(s.Messages), s.Completed)
	}
}

func TestCRUSStuckSessionNeverChanges(t *testing.T) {
	e, c, _ := start(t, csmemu.Options{})
	ex := csmemu.ExampleCRUSSession()
	id := e.AddCRUSSession(ex)
	for i := 0; i < 5; i++ {
		s, err := c.CRUSSession(bg(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if s.Completed || len(s.Messages) != 3 || s.State != csm.CRUSUpdating {
			t.Fatalf("stuck session changed: %+v", s)
		}
	}
	// Restarting the cray-crus pod un-sticks it.
	if !e.SetCRUSScript(id, csmemu.CRUSScript(1)[3:]...) {
		t.Fatal("SetCRUSScript: no session")
	}
	var s csm.CRUSSession
	for i := 0; i < 10 && !s.Completed; i++ {
		s, _ = c.CRUSSession(bg(t), id)
	}
	if !s.Completed {
		t.Errorf("resumed session did not complete: %+v", s)
	}
	if e.SetCRUSScript("nope") {
		t.Error("SetCRUSScript on a missing session")
	}
}

func TestSubscribe(t *testing.T) {
	e, c, _ := start(t, csmemu.Options{Components: csmemu.ComputeNodes(3)})
	e.Subscribe("x1000c0s7b0n0")
	subs, err := c.Subscriptions(bg(t))
	if err != nil || len(subs) != 1 {
		t.Fatalf("Subscriptions = %+v, %v", subs, err)
	}
	// HMNFD lists what it stored in its etcd key: lower-case.
	if got := subs[0]; got.Subscriber != "hmnfd-orca@x1000c0s7b0n0" || got.SubscriberComponent != "x1000c0s7b0n0" ||
		!slices.Equal(got.Components, []string{"x1000c0s7b0n0"}) || !slices.Equal(got.Roles, []string{"compute"}) ||
		!slices.Equal(got.States, []string{"ready", "on", "off", "standby", "halt", "empty"}) || !got.Enabled ||
		got.URL != "http://x1000c0s7b0n0:28600/orca/scn" {
		t.Errorf("subscription %+v", got)
	}
	if n := e.SubscribeReadyCompute(); n != 3 {
		t.Errorf("SubscribeReadyCompute = %d", n)
	}
	if n := len(e.Subscriptions()); n != 4 {
		t.Errorf("%d subscriptions, want 4", n)
	}
	e.Unsubscribe("x1000c0s7b0n0")
	if n := len(e.Subscriptions()); n != 3 {
		t.Errorf("after Unsubscribe %d, want 3", n)
	}
	e.ClearSubscriptions()
	if subs, _ := c.Subscriptions(bg(t)); len(subs) != 0 {
		t.Errorf("after ClearSubscriptions %d", len(subs))
	}
	e.SetSubscriptions([]csm.Subscription{{Subscriber: "a@b", SubscriberComponent: "b"}})
	if subs, _ := c.Subscriptions(bg(t)); len(subs) != 1 || subs[0].Subscriber != "a@b" {
		t.Errorf("SetSubscriptions: %+v", subs)
	}
}

func TestFASBusyThenOK(t *testing.T) {
	e, c, _ := start(t, csmemu.Options{})
	e.SetFASLoaderBusy(3)
	for i := 0; i < 3; i++ {
		st, err := c.FASLoaderStatus(bg(t))
		if err != nil || st.LoaderStatus != "busy" {
			t.Fatalf("status %+v, %v", st, err)
		}
		if _, err := c.FASLoadNexus(bg(t)); csm.KindOf(err) != csm.Busy {
			t.Fatalf("POST %d: %v, want Busy", i+1, err)
		}
	}
	id, err := c.FASLoadNexus(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	if runs := e.FASLoaderRuns(); !slices.Equal(runs, []string{id}) {
		t.Errorf("runs %v", runs)
	}
	if st, _ := c.FASLoaderStatus(bg(t)); st.LoaderStatus != "ready" {
		t.Errorf("status after %+v", st)
	}
	if n := e.Requests(csm.PathFASLoaderNexus); n != 4 {
		t.Errorf("nexus POSTs counted %d, want 4", n)
	}
	if len(e.FASImages()) == 0 {
		t.Error("no images after load")
	}
}

func TestAuthAndCounters(t *testing.T) {
	e, c, base := start(t, csmemu.Options{TokenTTL: 1500 * time.Millisecond})
	// No token, a bad token.
	for _, h := range []string{"", "Bearer nope", "Basic abc"} {
		req, _ := http.NewRequest(http.MethodGet, base+csm.PathHMNFDSubscriptions, nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", h, resp.StatusCode)
		}
	}
	// The token endpoint: wrong grant, wrong secret, right secret.
	post := func(form url.Values) (int, map[string]any) {
		resp, err := http.PostForm(base+csmemu.TokenPath, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if st, m := post(url.Values{"grant_type": {"password"}}); st != 400 || m["error"] != "unsupported_grant_type" {
		t.Errorf("grant: %d %v", st, m)
	}
	if st, m := post(url.Values{"grant_type": {"client_credentials"}, "client_id": {"admin-client"}, "client_secret": {"x"}}); st != 401 || m["error"] != "unauthorized_client" {
		t.Errorf("bad secret: %d %v", st, m)
	}
	st, m := post(url.Values{"grant_type": {"client_credentials"}, "client_id": {"admin-client"}, "client_secret": {csmemu.DefaultClientSecret}})
	if st != 200 || m["access_token"] == "" || m["expires_in"] != float64(2) || m["token_type"] != "Bearer" {
		t.Errorf("good secret: %d %v", st, m)
	}
	// An issued token expires.
	tok := m["access_token"].(string)
	get := func() int {
		req, _ := http.NewRequest(http.MethodGet, base+csm.PathHMNFDSubscriptions, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(); got != 200 {
		t.Errorf("fresh token: %d", got)
	}
	e.ExpireTokens()
	if got := get(); got != 401 {
		t.Errorf("expired token: %d", got)
	}
	if e.TokenRequests() != 3 || e.TokensIssued() != 1 || e.Requests(csm.PathHMNFDSubscriptions) != 5 {
		t.Errorf("counters: token requests %d, issued %d, subscriptions %d", e.TokenRequests(), e.TokensIssued(), e.Requests(csm.PathHMNFDSubscriptions))
	}
	if _, err := c.Subscriptions(bg(t)); err != nil {
		t.Fatal(err)
	}
	if got := e.RequestCounts()[csmemu.TokenPath]; got != 4 {
		t.Errorf("RequestCounts token path %d", got)
	}
	e.ResetCounters()
	if e.TokenRequests() != 0 || len(e.RequestCounts()) != 0 {
		t.Error("ResetCounters")
	}
}

func TestFaults(t *testing.T) {
	e, c, base := start(t, csmemu.Options{Components: csmemu.ComputeNodes(2)})
	e.Fail("/apis/smd", 503, 2)
	for i := 0; i < 2; i++ {
		if _, err := c.ReadyComputeNodes(bg(t)); csm.KindOf(err) != csm.Server {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if got, err := c.ReadyComputeNodes(bg(t)); err != nil || len(got) != 2 {
		t.Fatalf("after the faults: %v %v", got, err)
	}
	e.MalformedJSON("/apis/smd", -1)
	for i := 0; i < 3; i++ {
		if _, err := c.ReadyComputeNodes(bg(t)); csm.KindOf(err) != csm.BadResponse {
			t.Fatalf("persistent malformed %d: %v", i, err)
		}
	}
	e.ClearFaults()
	if _, err := c.ReadyComputeNodes(bg(t)); err != nil {
		t.Fatal(err)
	}
	// Faults hit the token endpoint too.
	e.Fail(csmemu.TokenPath, 500, 1)
	resp, err := http.PostForm(base+csmemu.TokenPath, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Errorf("token fault: %d", resp.StatusCode)
	}
}

func TestControlAPI(t *testing.T) {
	_, _, base := start(t, csmemu.Options{})
	resp, err := http.Post(base+"/_csmemu/subscribe/x1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("control API served without ControlAPI: %d", resp.StatusCode)
	}

	e, c, base := start(t, csmemu.Options{ControlAPI: true, Components: csmemu.ComputeNodes(5)})
	for _, p := range []string{"/_csmemu/subscribe/x9", "/_csmemu/subscribe-ready-compute", "/_csmemu/fas-busy?n=1", "/_csmemu/fail?prefix=/apis/v2&status=500&times=1"} {
		resp, err := http.Post(base+p, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	if n := len(e.Subscriptions()); n != 6 {
		t.Errorf("subscriptions %d, want 6", n)
	}
	if _, err := c.FASLoadNexus(bg(t)); csm.KindOf(err) != csm.Busy {
		t.Errorf("fas-busy: %v", err)
	}
	if _, err := c.CPSContents(bg(t)); csm.KindOf(err) != csm.Server {
		t.Errorf("fail: %v", err)
	}
	resp, err = http.Get(base + "/_csmemu/stats")
	if err != nil {
		t.Fatal(err)
	}
	var stats map[string]any
	json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	if stats["subscriptions"] != float64(6) {
		t.Errorf("stats %v", stats)
	}
}

// TestControlOrcaAndTemplates: the demo's stand-ins for orca starting on a
// node and for an etcd rebuild wiping BOS.
func TestControlOrcaAndTemplates(t *testing.T) {
	e, _, base := start(t, csmemu.Options{ControlAPI: true, Components: csmemu.ComputeNodes(3)})
	post := func(p string) int {
		t.Helper()
		resp, err := http.Post(base+p, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// NID 3 is x1000c0s2b0n0; an NCN or an unknown NID subscribes nothing.
	if code := post("/_csmemu/orca-restarted/nid000003-nmn"); code != 200 {
		t.Errorf("orca-restarted nid000003-nmn: %d", code)
	}
	for _, h := range []string{"ncn-w001", "nid000009-nmn"} {
		if code := post("/_csmemu/orca-restarted/" + h); code != 404 {
			t.Errorf("orca-restarted %s: %d, want 404", h, code)
		}
	}
	if subs := e.Subscriptions(); len(subs) != 1 || subs[0].SubscriberComponent != "x1000c0s2b0n0" {
		t.Errorf("subscriptions %+v, want x1000c0s2b0n0 only", subs)
	}
	if err := e.SetSessionTemplateJSON("t1", []byte(`{"boot_sets":{"c":{"node_list":["x1000c0s0b0n0"]}}}`)); err != nil {
		t.Fatal(err)
	}
	if code := post("/_csmemu/clear-templates"); code != 204 || len(e.SessionTemplateNames()) != 0 {
		t.Errorf("clear-templates: %d, left %v", code, e.SessionTemplateNames())
	}
}

func TestTLSAndCAFile(t *testing.T) {
	e := csmemu.New(csmemu.Options{})
	if _, err := e.CAFile(t.TempDir()); err == nil {
		t.Error("CAFile before Start(true)")
	}
	base, err := e.Start(true)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Start(true); err == nil {
		t.Error("second Start succeeded")
	}
	p, err := e.CAFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(b), "-----BEGIN CERTIFICATE-----") {
		t.Errorf("CA file %q", b)
	}
	c, err := csm.New(csm.Config{BaseURL: base, CABundle: p, Secret: csm.SecretValue(csmemu.DefaultClientSecret)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Authenticate(bg(t)); err != nil {
		t.Errorf("HTTPS with CA: %v", err)
	}
	e.Close()
	if err := c.Authenticate(bg(t)); err != nil {
		t.Errorf("cached token should not need the server: %v", err)
	}
	if _, err := c.Subscriptions(bg(t)); csm.KindOf(err) != csm.Unreachable {
		t.Errorf("after Close: %v", err)
	}
}

func TestComputeNodes(t *testing.T) {
	ns := csmemu.ComputeNodes(16)
	if len(ns) != 16 || ns[0].ID != "x1000c0s0b0n0" || ns[0].NID != 1 || ns[15].ID != "x1000c0s15b0n0" || ns[15].NID != 16 ||
		ns[3].Role != "Compute" || ns[3].State != "Ready" || ns[3].Type != "Node" || ns[15].Hostname() != "nid000016-nmn" {
		t.Errorf("ComputeNodes: %+v", ns)
	}
}
