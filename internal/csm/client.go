// Package csm is a client for the HPE Cray System Management (CSM) API
// gateway: the HSM, HMNFD, CRUS, FAS, BOS, BSS and CPS calls the etcd
// repopulation runbook needs, with the paths and field names of HPE's API
// definitions (../shared/csm-specs, held to them by internal/contract) and
// the project's CSM-APIS.md notes. BOS and HMNFD are spoken in the version
// the release serves (WithAPIs; Probe finds which exist).
//
// Authentication is OAuth2 client credentials against Keycloak. The token is
// cached, refreshed shortly before it expires (one refresh shared by all
// concurrent callers) and, when an API answers 401, dropped and re-fetched
// once before the call is retried.
//
// Every error is a *Error with a Kind; Retryable(err) tells transient
// failures (429, 5xx, unreachable) from the rest. Neither the client secret
// nor any token ever appears in an error, and the package does not log.
package csm

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// maxBody bounds how much of a response is read.
const maxBody = 64 << 20

// Client calls the CSM API gateway. It is safe for concurrent use.
//
// A Client speaks one version of each versioned CSM API (BOS, HMNFD): v2
// unless WithAPIs says otherwise. Clients made by WithAPIs share the
// connection pool and the token cache.
type Client struct {
	*conn
	apis api.APIVersions
}

// conn is what every Client made from one New shares.
type conn struct {
	cfg  Config
	http *http.Client
	now  func() time.Time

	mu        sync.Mutex
	token     string
	refreshAt time.Time
	inflight  *tokenCall
	// Scrubbed from every error: the client secrets read (the last two, in
	// case of rotation) and the last few tokens issued.
	secrets, tokens []string
}

type tokenCall struct {
	done  chan struct{}
	token string
	err   error
}

// New validates cfg and returns a Client. It does not contact the gateway
// (use Authenticate for a preflight check).
func New(cfg Config) (*Client, error) {
	cfg, pool, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	tr.MaxIdleConnsPerHost = 8
	return &Client{conn: &conn{
		cfg:  cfg,
		http: &http.Client{Transport: tr, Timeout: cfg.Timeout},
		now:  time.Now,
	}}, nil
}

// WithAPIs returns a Client that speaks v's API versions (BOS
// v.BOSVersion(), HMNFD v.HMNFDVersion()) and shares c's token cache and
// connections. The zero APIVersions speaks v2 of both.
func (c *Client) WithAPIs(v api.APIVersions) *Client {
	return &Client{conn: c.conn, apis: v}
}

// APIs returns the API versions c speaks.
func (c *Client) APIs() api.APIVersions { return c.apis }

// BaseURL returns the normalized gateway URL.
func (c *Client) BaseURL() string { return c.cfg.BaseURL }

// TokenURL returns the token endpoint in use.
func (c *Client) TokenURL() string { return c.cfg.TokenURL }

// ClientID returns the OAuth2 client id in use.
func (c *Client) ClientID() string { return c.cfg.ClientID }

// Authenticate obtains a token if none is cached: a preflight check that the
// gateway is reachable and the client secret is accepted.
func (c *Client) Authenticate(ctx context.Context) error {
	_, err := c.getToken(ctx, "Authenticate")
	return err
}

// refreshMargin is how long before expiry a token is replaced:
// min(30s, expires_in/5).
func refreshMargin(expiresIn time.Duration) time.Duration {
	return min(30*time.Second, expiresIn/5)
}

// getToken returns a valid cached token or waits for the (single, shared)
// refresh.
func (c *Client) getToken(ctx context.Context, op string) (string, error) {
	c.mu.Lock()
	if c.token != "" && c.now().Before(c.refreshAt) {
		t := c.token
		c.mu.Unlock()
		return t, nil
	}
	call := c.inflight
	if call == nil {
		call = &tokenCall{done: make(chan struct{})}
		c.inflight = call
		// The fetch is not tied to this caller's context: others may be
		// waiting on it. It is bounded by the client's Timeout.
		go c.fetchToken(context.WithoutCancel(ctx), call)
	}
	c.mu.Unlock()
	select {
	case <-call.done:
		if call.err != nil {
			var e *Error
			if errors.As(call.err, &e) && op != "" {
				cp := *e
				cp.Op = op + ": token"
				return "", &cp
			}
		}
		return call.token, call.err
	case <-ctx.Done():
		return "", c.newError(op+": token", http.MethodPost, c.cfg.TokenURL, 0, Canceled, "gave up waiting for a token: "+ctx.Err().Error(), ctx.Err())
	}
}

// invalidate drops tok if it is still the cached token (a concurrent refresh
// may already have replaced it).
func (c *Client) invalidate(tok string) {
	c.mu.Lock()
	if c.token == tok {
		c.token = ""
	}
	c.mu.Unlock()
}

// remember adds s to list (most recent last, at most n, no duplicates).
func remember(list []string, s string, n int) []string {
	if s == "" {
		return list
	}
	list = slices.DeleteFunc(list, func(x string) bool { return x == s })
	list = append(list, s)
	if len(list) > n {
		list = list[len(list)-n:]
	}
	return list
}

func (c *Client) scrubList() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Concat(c.secrets, c.tokens)
}

// newError builds a *Error with secrets and tokens scrubbed from the message
// and the cause.
func (c *Client) newError(op, method, u string, status int, kind Kind, msg string, cause error) *Error {
	s := c.scrubList()
	return &Error{Op: op, Method: method, URL: u, Status: status, Kind: kind, Message: redact(msg, s), err: scrub(cause, s)}
}

type tokenResponse struct {
	AccessToken      string          `json:"access_token"`
	ExpiresIn        json.RawMessage `json:"expires_in"`
	TokenType        string          `json:"token_type"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
}

func (c *Client) fetchToken(ctx context.Context, call *tokenCall) {
	// Reading the secret and the POST together get twice the request timeout.
	ctx, cancel := context.WithTimeout(ctx, 2*c.cfg.Timeout)
	defer cancel()
	tok, ttl, err := c.requestToken(ctx)
	c.mu.Lock()
	if err == nil {
		c.token = tok
		c.refreshAt = c.now().Add(ttl - refreshMargin(ttl))
		c.tokens = remember(c.tokens, tok, 4)
	}
	call.token, call.err = tok, err
	c.inflight = nil
	c.mu.Unlock()
	close(call.done)
}

func (c *Client) requestToken(ctx context.Context) (string, time.Duration, error) {
	const op = "token"
	tu := c.cfg.TokenURL
	secret, err := c.cfg.Secret(ctx)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return "", 0, err
		}
		return "", 0, c.newError(op, "", "", 0, BadConfig, fmt.Sprintf("cannot read the client secret for client_id %q: %v", c.cfg.ClientID, err), err)
	}
	c.mu.Lock()
	c.secrets = remember(c.secrets, secret, 2)
	c.mu.Unlock()

	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {c.cfg.ClientID},
		"client_secret": {secret},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tu, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, c.newError(op, http.MethodPost, tu, 0, BadConfig, err.Error(), err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		// No caller owns this context: its deadline is a timeout, not a cancel.
		return "", 0, c.transportError(context.Background(), op, http.MethodPost, tu, err)
	}
	body, rerr := readBody(resp)
	if rerr != nil {
		return "", 0, c.transportError(context.Background(), op, http.MethodPost, tu, rerr)
	}
	var tr tokenResponse
	jerr := json.Unmarshal(body, &tr)
	if resp.StatusCode/100 != 2 {
		code := tr.Error
		if jerr != nil {
			code = ""
		}
		detail := strings.TrimSpace(strings.Trim(code+": "+tr.ErrorDescription, ": "))
		if detail == "" {
			detail = snippet(body)
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized,
			resp.StatusCode == http.StatusBadRequest && (code == "invalid_client" || code == "unauthorized_client"):
			return "", 0, c.newError(op, http.MethodPost, tu, resp.StatusCode, Unauthorized,
				fmt.Sprintf("the token endpoint %s rejected the client secret for client_id %q (%s); check the secret source (Kubernetes secret admin-client-auth, key client-secret) and ClientID", tu, c.cfg.ClientID, orDefault(detail, "no detail")), nil)
		case resp.StatusCode == http.StatusNotFound:
			return "", 0, c.newError(op, http.MethodPost, tu, resp.StatusCode, NotFound,
				fmt.Sprintf("no token endpoint at %s (%s); check TokenURL (default BaseURL+%s)", tu, orDefault(detail, "no detail"), DefaultTokenPath), nil)
		}
		kind := statusKind(resp.StatusCode)
		return "", 0, c.newError(op, http.MethodPost, tu, resp.StatusCode, kind,
			fmt.Sprintf("token request for client_id %q failed: %s", c.cfg.ClientID, orDefault(detail, http.StatusText(resp.StatusCode))), nil)
	}
	if jerr != nil {
		return "", 0, c.newError(op, http.MethodPost, tu, resp.StatusCode, BadResponse,
			fmt.Sprintf("expected a JSON object with access_token and expires_in from the token endpoint: %v; body starts %s", jerr, snippet(body)), jerr)
	}
	if tr.AccessToken == "" {
		return "", 0, c.newError(op, http.MethodPost, tu, resp.StatusCode, BadResponse,
			"expected a JSON object with access_token and expires_in from the token endpoint: access_token is missing or empty", nil)
	}
	c.mu.Lock()
	c.tokens = remember(c.tokens, tr.AccessToken, 4)
	c.mu.Unlock()
	if tt := strings.ToLower(tr.TokenType); tt != "" && tt != "bearer" {
		return "", 0, c.newError(op, http.MethodPost, tu, resp.StatusCode, BadResponse,
			fmt.Sprintf("expected token_type Bearer from the token endpoint, got %q", tr.TokenType), nil)
	}
	ttl := 60 * time.Second // when expires_in is absent
	if len(tr.ExpiresIn) > 0 && string(tr.ExpiresIn) != "null" {
		n, err := strconv.ParseFloat(strings.Trim(string(tr.ExpiresIn), `"`), 64)
		if err != nil || n <= 0 {
			return "", 0, c.newError(op, http.MethodPost, tu, resp.StatusCode, BadResponse,
				fmt.Sprintf("expected expires_in to be a positive number of seconds from the token endpoint, got %s", snippet(tr.ExpiresIn)), nil)
		}
		ttl = time.Duration(n * float64(time.Second))
	}
	return tr.AccessToken, ttl, nil
}

// statusKind maps an HTTP error status to a Kind.
func statusKind(status int) Kind {
	switch {
	case status == http.StatusUnauthorized:
		return Unauthorized
	case status == http.StatusForbidden:
		return Forbidden
	case status == http.StatusNotFound:
		return NotFound
	case status == http.StatusTooManyRequests:
		return Busy
	case status >= 500:
		return Server
	case status >= 400:
		return BadRequest
	}
	return BadResponse
}

// transportError classifies an error from http.Client.Do or reading a body.
// ctx is the caller's: when it is done the error is Canceled.
func (c *Client) transportError(ctx context.Context, op, method, u string, err error) *Error {
	if ctx.Err() != nil {
		return c.newError(op, method, u, 0, Canceled, "canceled by the caller: "+ctx.Err().Error(), err)
	}
	var (
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		verifyErr  *tls.CertificateVerificationError
		recordErr  tls.RecordHeaderError
	)
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidErr), errors.As(err, &verifyErr):
		return c.newError(op, method, u, 0, TLS,
			fmt.Sprintf("the gateway's TLS certificate is not trusted (%v); set CABundle to the PEM file of the CA that signed it (on a CSM node the platform CA), or check the host name in BaseURL", cause), err)
	case errors.As(err, &recordErr), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return c.newError(op, method, u, 0, TLS,
			fmt.Sprintf("TLS handshake failed (%v); is the server speaking plain HTTP? Check the scheme in BaseURL/TokenURL", cause), err)
	}
	var dnsErr *net.DNSError
	msg := cause.Error()
	switch {
	case errors.As(err, &dnsErr):
		msg = fmt.Sprintf("cannot resolve %s (%v); check the host name in BaseURL and the node's DNS", dnsErr.Name, dnsErr.Err)
	case isTimeout(err):
		msg = fmt.Sprintf("no answer within %v (%v)", c.cfg.Timeout, cause)
	}
	return c.newError(op, method, u, 0, Unreachable, msg, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

func readBody(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("response larger than %d bytes", maxBody)
	}
	return b, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// snippet quotes the start of a body for an error message.
func snippet(b []byte) string {
	const n = 120
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(empty body)"
	}
	if len(s) > n {
		return strconv.Quote(s[:n]) + "…"
	}
	return strconv.Quote(s)
}

// problemDetail pulls a human message out of an error body: RFC 7807
// problem details (title/detail), {"message":...}, {"error":...}, or text.
func problemDetail(body []byte) string {
	var p struct {
		Title            string `json:"title"`
		Detail           string `json:"detail"`
		Message          string `json:"message"`
		Error            any    `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &p) == nil {
		var parts []string
		for _, s := range []string{p.Title, p.Detail, p.Message, p.ErrorDescription} {
			if s != "" && !containsString(parts, s) {
				parts = append(parts, s)
			}
		}
		if e, ok := p.Error.(string); ok && e != "" && !containsString(parts, e) {
			parts = append(parts, e)
		}
		if len(parts) > 0 {
			return strings.Join(parts, ": ")
		}
	}
	var s string
	if json.Unmarshal(body, &s) == nil && s != "" {
		return s
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return ""
	}
	return snippet(body)
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// request describes one API call.
type request struct {
	op     string
	method string
	path   string // starting with /apis/…, may include a query
	body   any    // marshalled as JSON when non-nil
	out    any    // decoded from a 2xx body when non-nil
	want   string // what the body should be, for BadResponse messages
	// status, when not nil, receives the HTTP status of any answer other
	// than 401, which is then not an error: probes read 404 and 503 as
	// answers. The body is not decoded.
	status *int
}

// do sends r with a bearer token. On 401 it drops the token, fetches a new
// one and retries once.
func (c *Client) do(ctx context.Context, r request) error {
	u := c.cfg.BaseURL + r.path
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return c.newError(r.op, r.method, u, 0, BadRequest, "cannot encode the request body: "+err.Error(), err)
		}
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.getToken(ctx, r.op)
		if err != nil {
			return err
		}
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, r.method, u, rd)
		if err != nil {
			return c.newError(r.op, r.method, u, 0, BadRequest, err.Error(), err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if t := c.tenant(ctx); t != "" {
			req.Header.Set(TenantHeader, t)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return c.transportError(ctx, r.op, r.method, u, err)
		}
		body, err := readBody(resp)
		if err != nil {
			return c.transportError(ctx, r.op, r.method, u, err)
		}
		st := resp.StatusCode
		if st == http.StatusUnauthorized && attempt == 0 {
			c.invalidate(tok)
			continue
		}
		if r.status != nil && st != http.StatusUnauthorized {
			*r.status = st
			return nil
		}
		if st/100 == 2 {
			if r.out == nil {
				return nil
			}
			if err := json.Unmarshal(body, r.out); err != nil {
				return c.newError(r.op, r.method, u, st, BadResponse,
					fmt.Sprintf("expected %s: %v; body starts %s", r.want, err, snippet(body)), err)
			}
			return nil
		}
		if st/100 == 1 || st/100 == 3 {
			return c.newError(r.op, r.method, u, st, BadResponse,
				fmt.Sprintf("expected %s, got HTTP %d %s", r.want, st, http.StatusText(st)), nil)
		}
		detail := orDefault(problemDetail(body), http.StatusText(st))
		var msg string
		kind := statusKind(st)
		switch kind {
		case Unauthorized:
			msg = fmt.Sprintf("the API rejected the access token even after a fresh one was issued for client_id %q (%s); the client secret was accepted at %s, so check that the gateway trusts that Keycloak realm", c.cfg.ClientID, detail, c.cfg.TokenURL)
		case Forbidden:
			msg = fmt.Sprintf("client_id %q is not allowed to do this (%s); the token is valid but lacks the role this API needs", c.cfg.ClientID, detail)
		case NotFound:
			msg = detail
		case Busy:
			msg = "busy, try again later: " + detail
		case Server:
			msg = "server error: " + detail
		default:
			msg = detail
		}
		return c.newError(r.op, r.method, u, st, kind, msg, nil)
	}
}
