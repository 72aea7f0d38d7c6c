package csm

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults from CSM-APIS.md ("API gateway and auth").
const (
	DefaultBaseURL   = "https://api-gw-service-nmn.local"
	DefaultTokenPath = "/keycloak/realms/shasta/protocol/openid-connect/token"
	DefaultClientID  = "admin-client"
	DefaultTimeout   = 30 * time.Second
	// TenantHeader is the optional BOS v2 tenant header.
	TenantHeader = "Cray-Tenant-Name"
)

// SecretSource returns the OAuth2 client secret. It is called each time a
// token is requested, so a rotated secret is picked up without a restart.
// Implementations must not put the secret in their errors.
type SecretSource func(ctx context.Context) (string, error)

// SecretFromFile reads the secret from a file (trailing whitespace and
// newlines are dropped), e.g. a mounted Kubernetes Secret key.
func SecretFromFile(path string) SecretSource {
	return func(context.Context) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				return "", fmt.Errorf("client secret file %s: %v: set Secret to a readable file holding the client secret", path, pe.Err)
			}
			return "", fmt.Errorf("client secret file %s: %v", path, err)
		}
		s := strings.TrimRight(string(b), " \t\r\n")
		if s == "" {
			return "", fmt.Errorf("client secret file %s is empty: it must hold the client secret (Kubernetes secret admin-client-auth, key client-secret)", path)
		}
		return s, nil
	}
}

// SecretFromEnv reads the secret from an environment variable.
func SecretFromEnv(name string) SecretSource {
	return func(context.Context) (string, error) {
		v, ok := os.LookupEnv(name)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set: export it with the client secret (Kubernetes secret admin-client-auth, key client-secret)", name)
		}
		v = strings.TrimRight(v, " \t\r\n")
		if v == "" {
			return "", fmt.Errorf("environment variable %s is empty: it must hold the client secret", name)
		}
		return v, nil
	}
}

// SecretValue returns a fixed secret (tests, or a secret the caller already
// holds).
func SecretValue(secret string) SecretSource {
	return func(context.Context) (string, error) {
		if secret == "" {
			return "", errors.New("client secret is empty")
		}
		return secret, nil
	}
}

// Config configures a Client. Only BaseURL and Secret are required.
type Config struct {
	// BaseURL is the API gateway, e.g. https://api-gw-service-nmn.local
	// (absolute http or https URL; a trailing slash is ignored).
	BaseURL string
	// TokenURL defaults to BaseURL + DefaultTokenPath.
	TokenURL string
	// ClientID defaults to "admin-client".
	ClientID string
	// Secret yields the client secret; see SecretFromFile, SecretFromEnv.
	Secret SecretSource
	// CABundle is a PEM file of the CA(s) that signed the gateway's
	// certificate. Empty uses the system roots.
	CABundle string
	// Timeout bounds each HTTP request (default 30s).
	Timeout time.Duration
	// Tenant, when set, is sent as the Cray-Tenant-Name header.
	Tenant string
}

// configError names the setting and what to do about it.
func configError(setting, format string, args ...any) error {
	return &Error{Op: "New", Kind: BadConfig, Message: setting + ": " + fmt.Sprintf(format, args...)}
}

// normalize validates cfg and fills its defaults; it also returns the CA pool
// (nil for system roots).
func (cfg Config) normalize() (Config, *x509.CertPool, error) {
	base, err := checkURL("BaseURL", cfg.BaseURL, "e.g. "+DefaultBaseURL)
	if err != nil {
		return cfg, nil, err
	}
	cfg.BaseURL = strings.TrimRight(base.String(), "/")
	if cfg.TokenURL == "" {
		cfg.TokenURL = cfg.BaseURL + DefaultTokenPath
	} else {
		tu, err := checkURL("TokenURL", cfg.TokenURL, "or leave it empty for BaseURL+"+DefaultTokenPath)
		if err != nil {
			return cfg, nil, err
		}
		cfg.TokenURL = tu.String()
	}
	if cfg.ClientID == "" {
		cfg.ClientID = DefaultClientID
	}
	if strings.ContainsAny(cfg.ClientID, " \t\r\n") {
		return cfg, nil, configError("ClientID", "%q contains whitespace; use the Keycloak client id (default %q)", cfg.ClientID, DefaultClientID)
	}
	if cfg.Secret == nil {
		return cfg, nil, configError("Secret", "no client secret source; set it to csm.SecretFromFile(path), csm.SecretFromEnv(name) or a function reading Kubernetes secret admin-client-auth (key client-secret)")
	}
	switch {
	case cfg.Timeout == 0:
		cfg.Timeout = DefaultTimeout
	case cfg.Timeout < 0:
		return cfg, nil, configError("Timeout", "%v is negative; use a positive duration such as 30s, or 0 for the default", cfg.Timeout)
	}
	if strings.ContainsAny(cfg.Tenant, "\r\n\t") || strings.TrimSpace(cfg.Tenant) != cfg.Tenant {
		return cfg, nil, configError("Tenant", "%q is not a valid header value; use the tenant name without spaces, or leave it empty", cfg.Tenant)
	}
	var pool *x509.CertPool
	if cfg.CABundle != "" {
		pem, err := os.ReadFile(cfg.CABundle)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return cfg, nil, configError("CABundle", "cannot read %s: %v; set it to the PEM file of the CA that signed the gateway certificate, or leave it empty to use the system roots", cfg.CABundle, err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return cfg, nil, configError("CABundle", "%s contains no PEM certificate (expected \"-----BEGIN CERTIFICATE-----\" blocks); set it to the CA certificate file, not a key or a DER file", cfg.CABundle)
		}
	}
	return cfg, pool, nil
}

func checkURL(setting, raw, hint string) (*url.URL, error) {
	if raw == "" {
		return nil, configError(setting, "empty; set an absolute https URL (%s)", hint)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The parse error and raw may carry credentials: say only what is wrong.
		return nil, configError(setting, "not a valid URL (%v); %s", errors.Unwrap(err), hint)
	}
	if u.User != nil {
		return nil, configError(setting, "%q must not carry credentials; use Secret for the client secret", u.Redacted())
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, configError(setting, "%q must be absolute and start with https:// or http:// (%s)", raw, hint)
	}
	if u.Host == "" {
		return nil, configError(setting, "%q has no host (%s)", raw, hint)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, configError(setting, "%q must not have a query or fragment (%s)", raw, hint)
	}
	return u, nil
}
