// Package csmemu emulates the parts of the CSM API gateway that package csm
// calls: the Keycloak token endpoint and the HSM, HMNFD, CRUS, FAS, BOS,
// BSS and CPS paths, as one CSM release serves them (Options.Release): the API
// versions of that release (absent ones answer 404), the refusals of its
// request validators and the shapes its services really answer, from HPE's
// definitions in ../shared/csm-specs and the observations of the real
// HMNFD (where they differ, the service wins). Its state is scriptable from
// Go (all methods are goroutine-safe), failures can be injected per path,
// and it counts requests, so tests and the demo can exercise a real
// HTTP(S) client against it.
package csmemu

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
)

// Defaults.
const (
	// TokenPath is the Keycloak token endpoint the emulator serves.
	TokenPath = csm.DefaultTokenPath
	// DefaultClientSecret is the secret accepted when Options.ClientSecret
	// is empty.
	DefaultClientSecret = "csmemu-client-secret"
	// DefaultTokenTTL is Keycloak's documented expires_in (300 s).
	DefaultTokenTTL = 300 * time.Second
)

// Options configures an Emulator.
type Options struct {
	// Release is the CSM release whose APIs are served (default
	// DefaultRelease, CSM 1.3's set). ReleaseAuto is not a release.
	Release api.Release
	// ClientID accepted by the token endpoint (default "admin-client").
	ClientID string
	// ClientSecret accepted by the token endpoint (default
	// DefaultClientSecret).
	ClientSecret string
	// TokenTTL is the expires_in of issued tokens, rounded up to whole
	// seconds (default 300s). SetTokenTTL changes it later.
	TokenTTL time.Duration
	// Components is the initial HSM state. BSS starts with their boot
	// parameters (DefaultBootParams), as on a running system.
	Components []csm.Component
	// CRUSDisabled answers 404 on /apis/crus/* (as CSM 1.5 and later do
	// whatever this says).
	CRUSDisabled bool
	// BOSStepDelay paces BOS v2 sessions and the HSM States they set (see
	// SetBOSTiming); 0 makes them complete on the next read.
	BOSStepDelay time.Duration
	// CRUSStepDelay paces CRUS sessions: the next step of a session's
	// script is due this long after the previous one (the first, this long
	// after the session's first read since it was added or its script
	// set), and a read applies every step due by then. 0: one step per
	// read, whenever it comes.
	CRUSStepDelay time.Duration
	// ControlAPI serves unauthenticated /_csmemu/... endpoints that let a
	// script drive the emulator from outside the process (the demo).
	ControlAPI bool
}

// Emulator is an http.Handler emulating the CSM API gateway.
type Emulator struct {
	opts    Options
	surface surface
	mux     *http.ServeMux

	mu            sync.Mutex
	tokenTTL      time.Duration
	tokens        map[string]time.Time // token -> expiry
	tokenRequests int
	tokensIssued  int
	issued        []string
	requests      map[string]int
	faults        []*fault

	components         []csm.Component
	subs               []subscription
	hmnfdNotReady      bool
	crus               map[string]*crusEntry
	crusOrder          []string
	crusDisabled       bool
	fasBusy            int
	fasLoadFailure     string
	fasRuns            map[string][]string
	fasRunOrder        []string
	fasImages          []csm.FASImage
	fasImagesAfterLoad []csm.FASImage
	fasActions         []csm.FASAction
	templates          map[tmplKey]map[string]any
	bosSessions        []*bosEntry
	bosStep            time.Duration
	bosStuck           map[string]bool
	bssHosts           map[string]bssHost
	bssImages          map[string]bssImage
	cpsContents        []csm.CPSContent
	cpsTransports      []csm.CPSTransport
	templateVerdicts   map[string]string

	srv    *http.Server
	url    string
	pki    *pki
	closed bool
}

type fault struct {
	prefix    string
	method    string // "" matches every method
	status    int
	malformed bool
	// dropResponse: the request is handled, then the connection is closed
	// without an answer (a lost response).
	dropResponse bool
	delay        time.Duration
	remaining    int // < 0: until ClearFaults
}

// New returns an Emulator with opts' initial state. Serve it with Start or
// Listen, or mount it as an http.Handler.
func New(opts Options) *Emulator {
	if opts.ClientID == "" {
		opts.ClientID = csm.DefaultClientID
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = DefaultClientSecret
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.Release == "" {
		opts.Release = DefaultRelease
	}
	e := &Emulator{
		opts:               opts,
		surface:            surfaceOf(opts.Release),
		templateVerdicts:   map[string]string{},
		tokenTTL:           opts.TokenTTL,
		tokens:             map[string]time.Time{},
		requests:           map[string]int{},
		components:         append([]csm.Component(nil), opts.Components...),
		crus:               map[string]*crusEntry{},
		crusDisabled:       opts.CRUSDisabled,
		fasRuns:            map[string][]string{},
		fasImagesAfterLoad: DefaultFASImages(),
		templates:          map[tmplKey]map[string]any{},
		bosStep:            max(opts.BOSStepDelay, 0),
		bosStuck:           map[string]bool{},
		bssHosts:           map[string]bssHost{},
		bssImages:          map[string]bssImage{},
	}
	// BSS holds the compute nodes' boot parameters, as on a running
	// system; WipeBSS plays its etcd rebuild.
	if err := e.SetBootParams(DefaultBootParams(opts.Components)); err != nil {
		panic(err) // DefaultBootParams names every entry by its host
	}
	e.mux = e.routes()
	return e
}

// ---- serving -------------------------------------------------------------

// Start serves on a free port of 127.0.0.1, over HTTPS with a generated CA
// when useTLS is set, and returns the base URL (e.g. https://127.0.0.1:41234).
func (e *Emulator) Start(useTLS bool) (string, error) {
	return e.Listen("127.0.0.1:0", useTLS)
}

// Listen is Start on a given address (host:port; port 0 picks one).
func (e *Emulator) Listen(addr string, useTLS bool) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil || e.closed {
		return "", errors.New("csmemu: already started (or closed); make a new Emulator")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("csmemu: listen on %s: %w", addr, err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if useTLS {
		reqHost, _, _ := net.SplitHostPort(addr)
		p, err := newPKI(reqHost)
		if err != nil {
			ln.Close()
			return "", fmt.Errorf("csmemu: generate TLS certificates: %w", err)
		}
		e.pki = p
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	e.srv = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		// Handshake failures from clients that (rightly) distrust the CA
		// are expected in tests; keep them off stderr.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	e.url = scheme + "://" + net.JoinHostPort(host, port)
	go e.srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed on Close
	return e.url, nil
}

// URL returns the base URL once started.
func (e *Emulator) URL() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.url
}

// CAPEM returns the PEM of the CA that signed the HTTPS certificate (nil
// when not serving HTTPS).
func (e *Emulator) CAPEM() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pki == nil {
		return nil
	}
	return append([]byte(nil), e.pki.caPEM...)
}

// CAFile writes the CA PEM to dir/csmemu-ca.pem and returns its path.
func (e *Emulator) CAFile(dir string) (string, error) {
	pem := e.CAPEM()
	if pem == nil {
		return "", errors.New("csmemu: CAFile: not serving HTTPS; start with Start(true)")
	}
	p := filepath.Join(dir, "csmemu-ca.pem")
	if err := os.WriteFile(p, pem, 0o644); err != nil {
		return "", fmt.Errorf("csmemu: CAFile: %w", err)
	}
	return p, nil
}

// Close stops serving at once, dropping open connections.
func (e *Emulator) Close() error {
	e.mu.Lock()
	srv := e.srv
	e.closed = true
	e.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Close()
}

// Shutdown stops serving gracefully.
func (e *Emulator) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	srv := e.srv
	e.closed = true
	e.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

// ServeHTTP counts the request, applies injected faults, serves the token
// endpoint, checks the bearer token on /apis/* and routes.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	e.mu.Lock()
	e.requests[path]++
	if path == TokenPath {
		e.tokenRequests++
	}
	f := e.takeFault(r.Method, path)
	crusOff := e.crusDisabled
	e.mu.Unlock()

	if f != nil {
		if f.delay > 0 {
			t := time.NewTimer(f.delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		switch {
		case f.dropResponse:
			e.serveAndDrop(w, r)
			return
		case f.malformed:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"malformed": [1, 2, `) // truncated on purpose
			return
		case f.status != 0:
			if f.status == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "1")
			}
			writeProblem(w, f.status, http.StatusText(f.status), "injected fault for "+f.prefix)
			return
		}
	}
	switch {
	case path == TokenPath:
		e.serveToken(w, r)
		return
	case strings.HasPrefix(path, "/apis/"):
		if !e.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shasta"`)
			writeProblem(w, http.StatusUnauthorized, "Unauthorized", "missing, unknown or expired bearer token")
			return
		}
		if e.absent(w, r, crusOff) {
			return
		}
	case strings.HasPrefix(path, "/_csmemu/") && !e.opts.ControlAPI:
		http.NotFound(w, r)
		return
	}
	e.mux.ServeHTTP(w, r)
}

// takeFault returns the first armed fault for path and disarms one use.
// Callers hold e.mu.
func (e *Emulator) takeFault(method, path string) *fault {
	for i, f := range e.faults {
		if !strings.HasPrefix(path, f.prefix) || f.remaining == 0 || f.method != "" && f.method != method {
			continue
		}
		cp := *f
		if f.remaining > 0 {
			f.remaining--
			if f.remaining == 0 {
				e.faults = append(e.faults[:i:i], e.faults[i+1:]...)
			}
		}
		return &cp
	}
	return nil
}

// ---- token endpoint and auth ---------------------------------------------

func (e *Emulator) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "HTTP method not allowed"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "cannot parse form"})
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"})
		return
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if bid, bsec, ok := r.BasicAuth(); ok {
		id, secret = bid, bsec
	}
	if id != e.opts.ClientID {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "Invalid client or Invalid client credentials"})
		return
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(e.opts.ClientSecret)) != 1 {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized_client", "error_description": "Invalid client secret"})
		return
	}
	tok := "eyJ" + randomHex(24) // looks like a JWT prefix; opaque here
	e.mu.Lock()
	secs := int(math.Ceil(e.tokenTTL.Seconds()))
	if secs < 1 {
		secs = 1
	}
	e.tokens[tok] = time.Now().Add(time.Duration(secs) * time.Second)
	e.tokensIssued++
	e.issued = append(e.issued, tok)
	e.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":       tok,
		"expires_in":         secs,
		"refresh_expires_in": 0,
		"token_type":         "Bearer",
		"not-before-policy":  0,
		"scope":              "profile email",
	})
}

func (e *Emulator) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	exp, ok := e.tokens[tok]
	if !ok {
		return false
	}
	if time.Now().After(exp) {
		delete(e.tokens, tok)
		return false
	}
	return true
}

// SetTokenTTL changes expires_in for tokens issued from now on.
func (e *Emulator) SetTokenTTL(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokenTTL = d
}

// IssuedTokens returns every token issued so far (valid or not), so tests
// can check that none leaks into an error message.
func (e *Emulator) IssuedTokens() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.issued)
}

// ExpireTokens invalidates every issued token (as if they had all expired or
// Keycloak had restarted); API calls with them get 401.
func (e *Emulator) ExpireTokens() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.tokens)
}

// ---- fault injection -----------------------------------------------------

// Fail answers status (e.g. 401, 403, 404, 429, 500, 503) to the next times
// requests whose path starts with pathPrefix, before any other handling
// (the token path included). times < 0 means until ClearFaults.
func (e *Emulator) Fail(pathPrefix string, status, times int) {
	e.addFault(&fault{prefix: pathPrefix, status: status, remaining: times})
}

// MalformedJSON answers 200 with truncated JSON to the next times matching
// requests. times < 0 means until ClearFaults.
func (e *Emulator) MalformedJSON(pathPrefix string, times int) {
	e.addFault(&fault{prefix: pathPrefix, malformed: true, remaining: times})
}

// Delay holds the next times matching requests for d before handling them
// normally (to exercise client timeouts). times < 0 means until ClearFaults.
func (e *Emulator) Delay(pathPrefix string, d time.Duration, times int) {
	e.addFault(&fault{prefix: pathPrefix, delay: d, remaining: times})
}

// DropResponse handles the next times requests of method (e.g. "POST"; ""
// for any) whose path starts with pathPrefix as usual, then closes the
// connection without sending the answer: the change is made, the caller
// never learns it (a gateway timeout or a reset after the service acted).
// times < 0 means until ClearFaults.
func (e *Emulator) DropResponse(method, pathPrefix string, times int) {
	e.addFault(&fault{prefix: pathPrefix, method: method, dropResponse: true, remaining: times})
}

// serveAndDrop handles r with the answer discarded, then closes the client's
// connection.
func (e *Emulator) serveAndDrop(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == TokenPath || !strings.HasPrefix(r.URL.Path, "/apis/") || e.authorized(r) {
		e.mux.ServeHTTP(discardWriter{h: http.Header{}}, r)
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // HTTP/2: abort the stream instead
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		conn.Close()
	}
}

type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}

func (e *Emulator) addFault(f *fault) {
	if f.remaining == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = append(e.faults, f)
}

// ClearFaults disarms every injected fault.
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = nil
}

// ---- counters ------------------------------------------------------------

// TokenRequests counts requests to the token endpoint (accepted or not).
func (e *Emulator) TokenRequests() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tokenRequests
}

// TokensIssued counts tokens issued.
func (e *Emulator) TokensIssued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tokensIssued
}

// Requests counts requests to exactly path (no query), whatever the answer.
func (e *Emulator) Requests(path string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.requests[path]
}

// RequestCounts returns a copy of the per-path request counts.
func (e *Emulator) RequestCounts() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.requests)
}

// ResetCounters zeroes all counters.
func (e *Emulator) ResetCounters() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.requests)
	e.tokenRequests, e.tokensIssued = 0, 0
}

// ---- helpers -------------------------------------------------------------

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeProblem answers an RFC 7807 problem, as the CSM services do.
func writeProblem(w http.ResponseWriter, status int, title, detail string) {
	b, _ := json.Marshal(map[string]any{"type": "about:blank", "title": title, "detail": detail, "status": status})
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newUUID returns a random (version 4) UUID string.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
