package csm

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies a failed call so callers (and Temporal retry policies) can
// decide what to do without parsing messages.
type Kind string

const (
	// Unauthorized: the token endpoint rejected the client secret, or the API
	// rejected a freshly issued token (HTTP 401 after one refresh).
	Unauthorized Kind = "Unauthorized"
	// Forbidden: HTTP 403, the token is valid but not allowed to do this.
	Forbidden Kind = "Forbidden"
	// NotFound: HTTP 404 (for CRUS: the service is not installed).
	NotFound Kind = "NotFound"
	// Busy: HTTP 429 (for FAS: the loader is already running).
	Busy Kind = "Busy"
	// Server: HTTP 5xx, including the gateway's 503 when a service is down.
	Server Kind = "Server"
	// Unreachable: connection refused, reset, timed out, or DNS failure.
	Unreachable Kind = "Unreachable"
	// BadResponse: a 2xx answer that is not the JSON the API documents.
	BadResponse Kind = "BadResponse"
	// BadRequest: any other 4xx; the request itself is wrong and retrying
	// it unchanged will not help.
	BadRequest Kind = "BadRequest"
	// TLS: the gateway's certificate is not trusted (or the TLS handshake
	// failed); a configuration problem, not retried.
	TLS Kind = "TLS"
	// BadConfig: a local setting is wrong or the client secret could not be
	// read.
	BadConfig Kind = "BadConfig"
	// Canceled: the caller's context was canceled or its deadline passed.
	Canceled Kind = "Canceled"
)

// Error is the error every Client method returns. It never contains the
// client secret or an access token: both are scrubbed from Message before the
// Error is built.
type Error struct {
	// Op is the Client method, e.g. "ReadyComputeNodes" or "token".
	Op string
	// Method and URL are the HTTP request's (empty when none was sent).
	Method, URL string
	// Status is the HTTP status code, 0 when no response was received.
	Status int
	Kind   Kind
	// Message says what went wrong and, where it is known, what to change.
	Message string

	err error // the underlying cause, for errors.Is/As; already scrubbed
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("csm ")
	b.WriteString(e.Op)
	if e.Method != "" || e.URL != "" {
		b.WriteString(": ")
		b.WriteString(strings.TrimSpace(e.Method + " " + e.URL))
	}
	b.WriteString(": ")
	b.WriteString(string(e.Kind))
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap returns the underlying cause (a *url.Error, a JSON syntax error, the
// SecretSource's error, ...), if any.
func (e *Error) Unwrap() error { return e.err }

// Is lets errors.Is(err, &csm.Error{Kind: csm.Busy}) match on Kind alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Kind == e.Kind && (t.Op == "" || t.Op == e.Op) && (t.Status == 0 || t.Status == e.Status)
}

// KindOf returns the Kind of a *Error anywhere in err's chain, or "" when
// err is nil or not from this package.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// Retryable reports whether retrying the same call later may succeed: true
// for Busy (429), Server (5xx) and Unreachable errors.
func Retryable(err error) bool {
	switch KindOf(err) {
	case Busy, Server, Unreachable:
		return true
	}
	return false
}

// redacted replaces every occurrence of each secret in s.
const redactedMark = "[REDACTED]"

func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) < 4 { // too short to scrub without mangling the text
			continue
		}
		s = strings.ReplaceAll(s, sec, redactedMark)
	}
	return s
}

// scrub returns err with secrets removed from its text. When nothing had to
// be removed the original is returned, so errors.Is/As keep working; when
// something was, the original is dropped so Unwrap cannot leak it.
func scrub(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if r := redact(msg, secrets); r != msg {
		return errors.New(r)
	}
	return err
}
