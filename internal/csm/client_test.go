package csm_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

// fakeClock is a settable clock for token refresh timing.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// parallel runs n calls of f at once and returns their errors.
func parallel(n int, f func() error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f()
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

func TestTokenCachedAndSharedByConcurrentCallers(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{Components: nodes()}, false)
	c := newClient(t, base, nil)
	for _, err := range parallel(32, func() error { _, err := c.ReadyComputeNodes(ctx(t)); return err }) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := emu.TokenRequests(); n != 1 {
		t.Errorf("32 concurrent first calls made %d token requests, want 1", n)
	}
	for i := 0; i < 5; i++ {
		if _, err := c.Subscriptions(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if n := emu.TokenRequests(); n != 1 {
		t.Errorf("cached token: %d token requests, want 1", n)
	}
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	// expires_in 300s: refreshed when less than min(30s, 60s) = 30s remain.
	emu, base := startEmu(t, csmemu.Options{TokenTTL: 300 * time.Second}, false)
	c := newClient(t, base, nil)
	clk := &fakeClock{t: time.Now()}
	csm.SetClock(c, clk.now)

	call := func() error { _, err := c.Subscriptions(ctx(t)); return err }
	if err := call(); err != nil {
		t.Fatal(err)
	}
	clk.add(269 * time.Second) // 31s left: still used
	if err := call(); err != nil {
		t.Fatal(err)
	}
	if n := emu.TokenRequests(); n != 1 {
		t.Fatalf("token with 31s left was replaced: %d token requests", n)
	}
	clk.add(2 * time.Second) // 29s left: refreshed, once, for all callers
	for _, err := range parallel(24, call) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := emu.TokenRequests(); n != 2 {
		t.Errorf("after the refresh point 24 concurrent calls made %d token requests in all, want 2", n)
	}

	// A short expires_in (5s) is refreshed when less than 5/5 = 1s remains.
	emu.SetTokenTTL(5 * time.Second)
	clk.add(time.Hour)
	if err := call(); err != nil {
		t.Fatal(err)
	}
	clk.add(3900 * time.Millisecond)
	if err := call(); err != nil {
		t.Fatal(err)
	}
	if n := emu.TokenRequests(); n != 3 {
		t.Fatalf("short token replaced early: %d token requests, want 3", n)
	}
	clk.add(200 * time.Millisecond)
	if err := call(); err != nil {
		t.Fatal(err)
	}
	if n := emu.TokenRequests(); n != 4 {
		t.Errorf("short token not refreshed with <1s left: %d token requests, want 4", n)
	}
}

func TestRealShortTokenIsReissued(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{TokenTTL: time.Second}, false)
	c := newClient(t, base, nil)
	if _, err := c.Subscriptions(ctx(t)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the emulator's token has expired
	if _, err := c.Subscriptions(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if n := emu.TokensIssued(); n != 2 {
		t.Errorf("tokens issued %d, want 2", n)
	}
	// Refreshed ahead of expiry, so the API never had to answer 401.
	if n := emu.Requests(csm.PathHMNFDSubscriptions); n != 2 {
		t.Errorf("subscription requests %d, want 2 (no 401 retry)", n)
	}
}

func TestUnauthorizedRefreshAndRetry(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{Components: nodes()}, false)
	c := newClient(t, base, nil)
	if _, err := c.ReadyComputeNodes(ctx(t)); err != nil {
		t.Fatal(err)
	}

	// The token is revoked server-side: 401, new token, retry succeeds.
	emu.ExpireTokens()
	if _, err := c.ReadyComputeNodes(ctx(t)); err != nil {
		t.Fatalf("after ExpireTokens: %v", err)
	}
	if n := emu.TokenRequests(); n != 2 {
		t.Errorf("token requests %d, want 2", n)
	}
	if n := emu.Requests(csm.PathHSMComponents); n != 3 {
		t.Errorf("HSM requests %d, want 3 (1 + 401 + retry)", n)
	}

	// One injected 401 with a POST body: the body is re-sent on retry.
	emu.Fail(csm.PathFASLoaderNexus, http.StatusUnauthorized, 1)
	if id, err := c.FASLoadNexus(ctx(t)); err != nil || id == "" {
		t.Fatalf("FASLoadNexus after one 401 = %q, %v", id, err)
	}
	if n := emu.TokenRequests(); n != 3 {
		t.Errorf("token requests %d, want 3", n)
	}

	// 401 twice: the fresh token is rejected too.
	emu.Fail(csm.PathHSMComponents, http.StatusUnauthorized, 2)
	_, err := c.ReadyComputeNodes(ctx(t))
	e := wantKind(t, err, csm.Unauthorized)
	wantContains(t, e.Error(), "ReadyComputeNodes", "the API rejected the access token", `client_id "admin-client"`, "accepted at "+c.TokenURL())
	if e.Status != 401 || csm.Retryable(err) || e.Method != "GET" {
		t.Errorf("double 401: %+v", e)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Remote, Input: "CSM API answers 401 to a fresh token as well", Message: e.Error(),
		Exit: "csm.Error kind Unauthorized, not retried", Unchanged: "the refused call was a GET (read only) and is not retried"})
}

func TestBadSecretNamesClientAndTokenURL(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{}, false)
	c := newClient(t, base, func(cfg *csm.Config) { cfg.Secret = csm.SecretValue("wrong-secret-value") })
	_, err := c.Subscriptions(ctx(t))
	e := wantKind(t, err, csm.Unauthorized)
	wantContains(t, e.Error(), "client secret", `client_id "admin-client"`, base+csm.DefaultTokenPath, "Subscriptions")
	if csm.Retryable(err) {
		t.Error("bad secret is retryable")
	}
	if strings.Contains(err.Error(), "wrong-secret-value") {
		t.Errorf("secret in error: %v", err)
	}
	if n := emu.Requests(csm.PathHMNFDSubscriptions); n != 0 {
		t.Errorf("HMNFD asked %d times without a token", n)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Remote, Input: "wrong client secret: token endpoint answers 401", Message: e.Error(),
		Exit: "csm.Error kind Unauthorized, not retried", Unchanged: "no API request was made: only the token endpoint was asked"})

	c = newClient(t, base, func(cfg *csm.Config) { cfg.ClientID = "someone-else" })
	e = wantKind(t, c.Authenticate(ctx(t)), csm.Unauthorized)
	wantContains(t, e.Error(), `client_id "someone-else"`)
}

func TestStatusKinds(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{Components: nodes()}, false)
	c := newClient(t, base, nil)
	cases := []struct {
		status    int
		kind      csm.Kind
		retryable bool
		input     string // for docs/bad-input.md
	}{
		{403, csm.Forbidden, false, "CSM API answers 403"},
		{404, csm.NotFound, false, "CSM API answers 404"},
		{400, csm.BadRequest, false, "CSM API answers 400"},
		{409, csm.BadRequest, false, "CSM API answers 409"},
		{429, csm.Busy, true, "CSM API answers 429"},
		{500, csm.Server, true, "CSM API answers 500"},
		{502, csm.Server, true, "CSM API answers 502"},
		{503, csm.Server, true, "CSM API answers 503"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			emu.Fail("/apis/smd/", tc.status, 1)
			_, err := c.ReadyComputeNodes(ctx(t))
			e := wantKind(t, err, tc.kind)
			if e.Status != tc.status || csm.Retryable(err) != tc.retryable {
				t.Errorf("status %d: got %+v retryable=%v", tc.status, e, csm.Retryable(err))
			}
			if e.Op != "ReadyComputeNodes" || e.Method != "GET" || !strings.HasPrefix(e.URL, base+csm.PathHSMComponents+"?type=Node&role=Compute&state=Ready") {
				t.Errorf("error fields %+v", e)
			}
			if !errors.Is(err, &csm.Error{Kind: tc.kind}) {
				t.Errorf("errors.Is by kind failed for %v", err)
			}
			then := "not retried"
			if tc.retryable {
				then = "retryable: the activity retry policy tries again"
			}
			badinput.Record(t, badinput.Case{Area: badinput.Remote, Input: tc.input, Message: e.Error(),
				Exit: fmt.Sprintf("csm.Error kind %s, %s", e.Kind, then), Unchanged: "the refused call was a GET (read only)"})
		})
	}
	emu.Fail("/apis/smd/", 403, 1)
	_, err := c.ReadyComputeNodes(ctx(t))
	wantContains(t, err.Error(), "Forbidden (HTTP 403)", `client_id "admin-client" is not allowed`)
}

func TestTokenEndpointFailures(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{}, false)
	for _, tc := range []struct {
		status int
		kind   csm.Kind
	}{{500, csm.Server}, {503, csm.Server}, {429, csm.Busy}, {404, csm.NotFound}, {403, csm.Forbidden}, {401, csm.Unauthorized}} {
		c := newClient(t, base, nil)
		emu.Fail(csm.DefaultTokenPath, tc.status, 1)
		_, err := c.Subscriptions(ctx(t))
		e := wantKind(t, err, tc.kind)
		if e.Status != tc.status || e.URL != base+csm.DefaultTokenPath {
			t.Errorf("token %d: %+v", tc.status, e)
		}
		// The next call gets a token.
		if _, err := c.Subscriptions(ctx(t)); err != nil {
			t.Errorf("after token %d: %v", tc.status, err)
		}
	}
	c := newClient(t, base, func(cfg *csm.Config) { cfg.TokenURL = base + "/keycloak/realms/nope/protocol/openid-connect/token" })
	e := wantKind(t, c.Authenticate(ctx(t)), csm.NotFound)
	wantContains(t, e.Message, "check TokenURL")
}

func TestMalformedJSON(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{Components: nodes()}, false)
	c := newClient(t, base, nil)
	emu.MalformedJSON(csm.PathHSMComponents, 1)
	nodes, err := c.ReadyComputeNodes(ctx(t))
	e := wantKind(t, err, csm.BadResponse)
	wantContains(t, e.Message, `expected a JSON object {"Components":[...]}`)
	if csm.Retryable(err) || e.Status != 200 || nodes != nil {
		t.Errorf("malformed: %+v %v", e, nodes)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Remote, Input: "HSM answers 200 with malformed JSON", Message: e.Error(),
		Exit: "csm.Error kind BadResponse, not retried", Unchanged: "no node list returned from the bad body: no node is restarted from it"})

	emu.MalformedJSON(csm.PathCRUSSession, 1)
	sessions, err := c.CRUSSessions(ctx(t))
	e = wantKind(t, err, csm.BadResponse)
	wantContains(t, e.Message, "expected a JSON array of CRUS sessions")
	if sessions != nil {
		t.Errorf("sessions from a malformed body: %v", sessions)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Remote, Input: "CRUS answers 200 with malformed JSON", Message: e.Error(),
		Exit: "csm.Error kind BadResponse, not retried", Unchanged: "no session list returned from the bad body"})

	c2 := newClient(t, base, nil)
	emu.MalformedJSON(csm.DefaultTokenPath, 1)
	e = wantKind(t, c2.Authenticate(ctx(t)), csm.BadResponse)
	wantContains(t, e.Message, "access_token", "expires_in")
	badinput.Record(t, badinput.Case{Area: badinput.Remote, Input: "token endpoint answers 200 with malformed JSON", Message: e.Error(),
		Exit: "csm.Error kind BadResponse", Unchanged: "only the token endpoint was asked (Authenticate), and it was refused"})
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestUnreachable(t *testing.T) {
	c := newClient(t, "http://"+closedPort(t), nil)
	_, err := c.ReadyComputeNodes(ctx(t))
	e := wantKind(t, err, csm.Unreachable)
	if !csm.Retryable(err) || e.Status != 0 {
		t.Errorf("refused: %+v", e)
	}
	wantContains(t, e.Error(), "connection refused")
	badinput.Record(t, badinput.Case{Area: badinput.Remote, Input: "API gateway not listening", Message: e.Error(),
		Exit: "csm.Error kind Unreachable, retryable: the activity retry policy tries again", Unchanged: "no connection was made"})

	// No answer within Timeout is Unreachable too.
	emu, base := startEmu(t, csmemu.Options{Components: nodes()}, false)
	c = newClient(t, base, func(cfg *csm.Config) { cfg.Timeout = 300 * time.Millisecond })
	if err := c.Authenticate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	emu.Delay(csm.PathHSMComponents, 3*time.Second, 1)
	_, err = c.ReadyComputeNodes(ctx(t))
	e = wantKind(t, err, csm.Unreachable)
	if !csm.Retryable(err) {
		t.Error("timeout not retryable")
	}
	wantContains(t, e.Message, "no answer within 300ms")
	badinput.Record(t, badinput.Case{Area: badinput.Remote, Input: "CSM API does not answer within the client timeout", Message: e.Error(),
		Exit: "csm.Error kind Unreachable, retryable: the activity retry policy tries again", Unchanged: "the call given up was a GET (read only)"})

	// The caller giving up is not.
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.ReadyComputeNodes(cctx)
	wantKind(t, err, csm.Canceled)
	if csm.Retryable(err) {
		t.Error("canceled is retryable")
	}
}

func TestHTTPS(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{Components: nodes()}, true)
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("base %s", base)
	}
	ca, err := emu.CAFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, base, func(cfg *csm.Config) { cfg.CABundle = ca })
	if got, err := c.ReadyComputeNodes(ctx(t)); err != nil || len(got) != 4 {
		t.Fatalf("over HTTPS with the CA: %d nodes, %v", len(got), err)
	}

	// localhost is in the certificate too.
	c = newClient(t, strings.Replace(base, "127.0.0.1", "localhost", 1), func(cfg *csm.Config) { cfg.CABundle = ca })
	if err := c.Authenticate(ctx(t)); err != nil {
		t.Errorf("https://localhost: %v", err)
	}

	// System roots do not trust the emulator's CA.
	c = newClient(t, base, nil)
	_, err = c.ReadyComputeNodes(ctx(t))
	e := wantKind(t, err, csm.TLS)
	wantContains(t, e.Message, "certificate", "CABundle")
	if csm.Retryable(err) {
		t.Error("certificate error retryable")
	}

	// Nor does another emulator's CA.
	other, _ := startEmu(t, csmemu.Options{}, true)
	otherCA, err := other.CAFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c = newClient(t, base, func(cfg *csm.Config) { cfg.CABundle = otherCA })
	wantKind(t, c.Authenticate(ctx(t)), csm.TLS)

	// https:// to a plain HTTP server.
	_, plain := startEmu(t, csmemu.Options{}, false)
	c = newClient(t, strings.Replace(plain, "http://", "https://", 1), nil)
	e = wantKind(t, c.Authenticate(ctx(t)), csm.TLS)
	wantContains(t, e.Message, "plain HTTP")
}

func TestNewValidation(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "key.txt")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600)
	sec := csm.SecretValue("x")
	cases := []struct {
		name string
		cfg  csm.Config
		want []string
	}{
		{"no base", csm.Config{Secret: sec}, []string{"BaseURL", "empty", "https://api-gw-service-nmn.local"}},
		{"relative base", csm.Config{BaseURL: "api-gw-service-nmn.local", Secret: sec}, []string{"BaseURL", "https://"}},
		{"ftp base", csm.Config{BaseURL: "ftp://gw", Secret: sec}, []string{"BaseURL", "https://"}},
		{"no host", csm.Config{BaseURL: "https://", Secret: sec}, []string{"BaseURL", "no host"}},
		{"query", csm.Config{BaseURL: "https://gw/?a=b", Secret: sec}, []string{"BaseURL", "query"}},
		{"credentials", csm.Config{BaseURL: "https://u:pw-in-url@gw", Secret: sec}, []string{"BaseURL", "credentials"}},
		{"bad token url", csm.Config{BaseURL: "https://gw", TokenURL: "/token", Secret: sec}, []string{"TokenURL"}},
		{"no secret", csm.Config{BaseURL: "https://gw"}, []string{"Secret", "SecretFromFile"}},
		{"negative timeout", csm.Config{BaseURL: "https://gw", Secret: sec, Timeout: -time.Second}, []string{"Timeout"}},
		{"tenant", csm.Config{BaseURL: "https://gw", Secret: sec, Tenant: "a\nb"}, []string{"Tenant"}},
		{"client id", csm.Config{BaseURL: "https://gw", Secret: sec, ClientID: "a b"}, []string{"ClientID"}},
		{"missing CA", csm.Config{BaseURL: "https://gw", Secret: sec, CABundle: filepath.Join(dir, "nope.pem")}, []string{"CABundle", "nope.pem", "no such file"}},
		{"CA not PEM", csm.Config{BaseURL: "https://gw", Secret: sec, CABundle: notPEM}, []string{"CABundle", "no PEM certificate"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := csm.New(tc.cfg)
			e := wantKind(t, err, csm.BadConfig)
			wantContains(t, e.Error(), tc.want...)
			if strings.Contains(e.Error(), "pw-in-url") {
				t.Errorf("password in error: %v", e)
			}
		})
	}
	c, err := csm.New(csm.Config{BaseURL: "https://gw.example/", Secret: sec})
	if err != nil {
		t.Fatal(err)
	}
	if c.BaseURL() != "https://gw.example" || c.TokenURL() != "https://gw.example"+csm.DefaultTokenPath || c.ClientID() != "admin-client" {
		t.Errorf("defaults: %s %s %s", c.BaseURL(), c.TokenURL(), c.ClientID())
	}
}

func TestSecretSources(t *testing.T) {
	_, base := startEmu(t, csmemu.Options{}, false)
	dir := t.TempDir()
	f := filepath.Join(dir, "client-secret")
	os.WriteFile(f, []byte(testSecret+"\n"), 0o600)
	c := newClient(t, base, func(cfg *csm.Config) { cfg.Secret = csm.SecretFromFile(f) })
	if err := c.Authenticate(ctx(t)); err != nil {
		t.Errorf("SecretFromFile: %v", err)
	}
	t.Setenv("CSM_TEST_SECRET", testSecret)
	c = newClient(t, base, func(cfg *csm.Config) { cfg.Secret = csm.SecretFromEnv("CSM_TEST_SECRET") })
	if err := c.Authenticate(ctx(t)); err != nil {
		t.Errorf("SecretFromEnv: %v", err)
	}

	c = newClient(t, base, func(cfg *csm.Config) { cfg.Secret = csm.SecretFromFile(filepath.Join(dir, "missing")) })
	e := wantKind(t, c.Authenticate(ctx(t)), csm.BadConfig)
	wantContains(t, e.Error(), "missing", "client secret", `client_id "admin-client"`)
	os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600)
	c = newClient(t, base, func(cfg *csm.Config) { cfg.Secret = csm.SecretFromFile(filepath.Join(dir, "empty")) })
	wantContains(t, c.Authenticate(ctx(t)).Error(), "is empty")
	c = newClient(t, base, func(cfg *csm.Config) { cfg.Secret = csm.SecretFromEnv("CSM_TEST_UNSET_VARIABLE") })
	wantContains(t, c.Authenticate(ctx(t)).Error(), "CSM_TEST_UNSET_VARIABLE is not set")

	// A source (e.g. a Kubernetes Secret reader) that fails.
	c = newClient(t, base, func(cfg *csm.Config) {
		cfg.Secret = func(context.Context) (string, error) {
			return "", errors.New("secrets \"admin-client-auth\" is forbidden")
		}
	})
	e = wantKind(t, c.Authenticate(ctx(t)), csm.BadConfig)
	wantContains(t, e.Error(), "admin-client-auth")
}

// TestSecretAndTokenNeverInErrors makes every call fail in every way it can
// and checks neither the client secret nor any token shows up.
func TestSecretAndTokenNeverInErrors(t *testing.T) {
	emu, base := startEmu(t, csmemu.Options{Components: nodes()}, false)
	var errs []error
	collect := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c := newClient(t, base, nil)
	calls := []func() error{
		func() error { _, err := c.ReadyComputeNodes(ctx(t)); return err },
		func() error { _, err := c.Subscriptions(ctx(t)); return err },
		func() error { _, err := c.CRUSSessions(ctx(t)); return err },
		func() error { _, err := c.CRUSSession(ctx(t), "x"); return err },
		func() error { _, err := c.FASLoadNexus(ctx(t)); return err },
		func() error { _, err := c.FASLoaderStatus(ctx(t)); return err },
		func() error { _, err := c.SessionTemplate(ctx(t), "x"); return err },
		func() error { _, err := c.ValidateSessionTemplate(ctx(t), "x"); return err },
		func() error {
			_, err := c.CreateBOSSession(ctx(t), csm.BOSSessionRequest{TemplateName: "x", Operation: "reboot"})
			return err
		},
		func() error { _, err := c.CPSContents(ctx(t)); return err },
	}
	for _, status := range []int{400, 401, 403, 404, 429, 500, 503} {
		emu.Fail("/apis/", status, 2*len(calls))
		for _, call := range calls {
			collect(call())
		}
		emu.ClearFaults()
	}
	emu.MalformedJSON("/apis/", len(calls))
	for _, call := range calls {
		collect(call())
	}
	emu.Fail(csm.DefaultTokenPath, 500, 1)
	emu.ExpireTokens()
	collect(calls[0]())
	emu.MalformedJSON(csm.DefaultTokenPath, 1)
	emu.ExpireTokens()
	collect(calls[1]())
	emu.Delay("/apis/", 2*time.Second, 1)
	fast := newClient(t, base, func(cfg *csm.Config) { cfg.Timeout = 200 * time.Millisecond })
	collect(fast.Authenticate(ctx(t)))
	_, err := fast.ReadyComputeNodes(ctx(t))
	collect(err)
	bad := newClient(t, base, func(cfg *csm.Config) { cfg.Secret = csm.SecretValue(testSecret + "-wrong") })
	collect(bad.Authenticate(ctx(t)))
	collect(newClient(t, "http://"+closedPort(t), nil).Authenticate(ctx(t)))

	tokens := emu.IssuedTokens()
	if len(tokens) < 3 || len(errs) < 80 {
		t.Fatalf("test did not exercise enough: %d tokens, %d errors", len(tokens), len(errs))
	}
	for _, err := range errs {
		for _, s := range append(tokens, testSecret) {
			msg := err.Error()
			if u := errors.Unwrap(err); u != nil {
				msg += " | " + u.Error()
			}
			if strings.Contains(msg, s) {
				t.Errorf("error leaks a secret or token: %v", err)
			}
		}
	}
}

// TestHostileServerEchoesAreScrubbed: a gateway that echoes the request
// (form body, Authorization header) into its error bodies.
func TestHostileServerEchoesAreScrubbed(t *testing.T) {
	var tokenCalls atomic.Int32
	const tok = "tok-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == csm.DefaultTokenPath {
			body, _ := io.ReadAll(r.Body)
			if tokenCalls.Add(1) == 1 {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprintf(w, `{"error":"invalid_client","error_description":"bad request body %s"}`, body)
				return
			}
			fmt.Fprintf(w, `{"access_token":%q,"expires_in":300,"token_type":"Bearer"}`, tok)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"title":"boom","detail":"header was %s"}`, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, nil)
	err := c.Authenticate(ctx(t))
	wantKind(t, err, csm.Unauthorized)
	if strings.Contains(err.Error(), testSecret) || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Errorf("token endpoint echo not scrubbed: %v", err)
	}
	_, err = c.Subscriptions(ctx(t))
	wantKind(t, err, csm.Server)
	if strings.Contains(err.Error(), tok) || !strings.Contains(err.Error(), "Bearer [REDACTED]") {
		t.Errorf("API echo not scrubbed: %v", err)
	}
}

// TestSecretScrubbedAfterManyRefreshes: many tokens later, a token endpoint
// echoing the form body still has the secret scrubbed.
func TestSecretScrubbedAfterManyRefreshes(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != csm.DefaultTokenPath {
			w.Write([]byte(`{"SubscriptionList":[]}`))
			return
		}
		body, _ := io.ReadAll(r.Body)
		n := calls.Add(1)
		if n > 20 {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, `{"detail":"upstream choked on %s"}`, body)
			return
		}
		fmt.Fprintf(w, `{"access_token":"token-number-%04d-xyz","expires_in":60,"token_type":"Bearer"}`, n)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, nil)
	clk := &fakeClock{t: time.Now()}
	csm.SetClock(c, clk.now)
	for i := 0; i < 20; i++ {
		if _, err := c.Subscriptions(ctx(t)); err != nil {
			t.Fatal(err)
		}
		clk.add(time.Hour)
	}
	err := c.Authenticate(ctx(t))
	wantKind(t, err, csm.Server)
	if strings.Contains(err.Error(), testSecret) || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Errorf("secret not scrubbed after 20 refreshes: %v", err)
	}
}

func TestRetryableAndKindOf(t *testing.T) {
	if csm.Retryable(nil) || csm.Retryable(errors.New("x")) || csm.KindOf(errors.New("x")) != "" {
		t.Error("non-csm errors")
	}
	wrapped := fmt.Errorf("activity: %w", &csm.Error{Kind: csm.Server, Status: 503})
	if !csm.Retryable(wrapped) || csm.KindOf(wrapped) != csm.Server {
		t.Error("wrapped Server error")
	}
	for _, k := range []csm.Kind{csm.Unauthorized, csm.Forbidden, csm.NotFound, csm.BadResponse, csm.BadRequest, csm.TLS, csm.BadConfig, csm.Canceled} {
		if csm.Retryable(&csm.Error{Kind: k}) {
			t.Errorf("%s retryable", k)
		}
	}
	e := &csm.Error{Op: "FASLoadNexus", Method: "POST", URL: "https://gw/apis/fas/v1/loader/nexus", Status: 429, Kind: csm.Busy, Message: "busy, try again later"}
	if got, want := e.Error(), "csm FASLoadNexus: POST https://gw/apis/fas/v1/loader/nexus: Busy (HTTP 429): busy, try again later"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
