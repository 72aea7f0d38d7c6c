// Package config reads the worker's YAML configuration: every name,
// namespace, selector and timeout the runbook's steps use. The defaults are
// the runbook's; what drifted between CSM releases follows the release the
// run acts for (releases.go); a file only needs the values that differ.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/settings"
)

// Config is the worker's configuration file.
type Config struct {
	// Release is the CSM release the system runs (csm-1.0, csm-1.2,
	// csm-1.3, csm-1.5, csm-1.6; csm-1.4 is csm-1.3), or auto (the
	// default): read it from the product catalog and confirm it with API
	// probes at the start of each run. See docs/csm-releases.md.
	Release api.Release `json:"release"`
	// Profile is the old name of Release (csm-1.0, csm-1.2, csm-1.5); a
	// file that still uses it gets the same release and a warning.
	Profile  string   `json:"profile,omitempty"`
	Services Services `json:"services"`
	CSM      CSM      `json:"csm"`
	SSH      SSH      `json:"ssh"`
	// DeleteTimeout bounds waiting for a deleted object to disappear.
	DeleteTimeout Duration `json:"deleteTimeout"`
	// PollInterval is how often waits look at the cluster again.
	PollInterval Duration `json:"pollInterval"`
	// HeartbeatTimeout is how long a waiting step may go silent before its
	// worker is taken for lost and the step is retried elsewhere.
	HeartbeatTimeout Duration `json:"heartbeatTimeout"`
	// ActivityAttempts caps the tries of one step on transient errors
	// (API server unreachable, conflicts, throttling).
	ActivityAttempts int32 `json:"activityAttempts"`
	// Gates bounds how long approval gates wait for a person.
	Gates Gates `json:"gates"`
	// Warnings are what the worker logs at start about the file (old keys).
	Warnings []string `json:"-"`
}

// Gates bounds the approval gates (cps-unmount, cps-reboot, bos-templates).
type Gates struct {
	// Deadline is how long a gate waits; 0 (the default) waits until
	// someone approves or rejects, however long that takes.
	Deadline Duration `json:"deadline"`
	// OnDeadline is what a gate does when its deadline passes: fail (the
	// default) fails the service, skip ends it as skipped.
	OnDeadline string `json:"onDeadline"`
}

// Services holds each service's settings, keyed by service: the catalog
// (internal/catalog) says which keys each service has and their defaults.
// The settings are pointers: a Config copied by value shares them (tests
// that change a copy use workerconfig.Clone).
type Services map[api.Service]settings.Settings

// UnmarshalJSON reads services.<service> over the defaults, refusing a
// service the catalog does not list and keys its settings do not have.
func (s *Services) UnmarshalJSON(data []byte) error {
	if *s == nil {
		*s = defaultServices()
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("services: must be a map of service names to their settings: %v", err)
	}
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		settings, ok := (*s)[api.Service(name)]
		if !ok {
			return fmt.Errorf("unknown key \"services.%s\": the services are %s", name, catalog.Names())
		}
		dec := json.NewDecoder(bytes.NewReader(raw[name]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(settings); err != nil {
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				field := strings.TrimSuffix("services."+name+"."+typeErr.Field, ".")
				return fmt.Errorf("%s: must be %s, got a %s", field, kindOf(typeErr.Type), typeErr.Value)
			}
			return fmt.Errorf("services.%s: %s", name, strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	return nil
}

// kindOf names what a key takes, in the file's terms.
func kindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a map of keys"
	}
	return "a string"
}

func defaultServices() Services {
	s := Services{}
	for _, e := range catalog.Entries() {
		s[e.Service] = e.Settings()
	}
	return s
}

// CSM is how the worker reaches the CSM API gateway.
type CSM struct {
	// BaseURL of the API gateway; empty disables the services that need it.
	BaseURL string `json:"baseURL"`
	// TokenURL defaults to BaseURL + /keycloak/realms/shasta/protocol/openid-connect/token.
	TokenURL string `json:"tokenURL"`
	ClientID string `json:"clientID"`
	// ClientSecret says where the Keycloak client secret is; it is read by
	// the worker when a token is needed and never enters workflow history.
	ClientSecret SecretRef `json:"clientSecret"`
	// CABundle is a PEM file of the CAs the gateway's certificate chains to.
	CABundle string   `json:"caBundle"`
	Timeout  Duration `json:"timeout"`
}

// SecretRef names one place a secret is read from; exactly one is set.
type SecretRef struct {
	Kubernetes *KubeSecret `json:"kubernetes,omitempty"`
	File       string      `json:"file,omitempty"`
	Env        string      `json:"env,omitempty"`
}

// KubeSecret is one key of a Kubernetes Secret.
type KubeSecret struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Key       string `json:"key"`
}

// SSH is how the worker reaches nodes.
type SSH struct {
	// Config is an OpenSSH client config file (Host, HostName, Port, User,
	// IdentityFile), the same one pdsh would use.
	Config string `json:"config"`
	// KnownHosts files; host keys are always checked against them.
	KnownHosts []string `json:"knownHosts"`
	// IdentityFiles are used where the config names none.
	IdentityFiles []string `json:"identityFiles"`
	// UseAgent also offers the keys of the ssh-agent at $SSH_AUTH_SOCK.
	UseAgent bool   `json:"useAgent"`
	User     string `json:"user"`
	// Concurrency is how many nodes are worked on at once (pdsh's fanout is 32).
	Concurrency    int      `json:"concurrency"`
	ConnectTimeout Duration `json:"connectTimeout"`
	CommandTimeout Duration `json:"commandTimeout"`
}

// Default is the runbook's configuration, with the release detected.
func Default() Config {
	cfg := Config{
		Services: defaultServices(),
		Gates:    Gates{OnDeadline: api.OnDeadlineFail},
		Release:  api.ReleaseAuto,
		CSM: CSM{
			ClientID:     "admin-client",
			ClientSecret: SecretRef{Kubernetes: &KubeSecret{Namespace: "default", Name: "admin-client-auth", Key: "client-secret"}},
			Timeout:      Duration(defaultCSMTimeout),
		},
		SSH: SSH{
			KnownHosts: []string{"~/.ssh/known_hosts"}, User: "root", Concurrency: 256,
			ConnectTimeout: Duration(10 * time.Second), CommandTimeout: Duration(2 * time.Minute),
		},
		DeleteTimeout:    Duration(5 * time.Minute),
		PollInterval:     Duration(2 * time.Second),
		HeartbeatTimeout: Duration(30 * time.Second),
		ActivityAttempts: 5,
	}
	return cfg
}

// defaultCSMTimeout bounds one CSM request: below a third of the default
// heartbeatTimeout (see csmCallBound).
const defaultCSMTimeout = 8 * time.Second

// csmCallBound is how many csm.timeout one CSM call can take at worst: a
// token fetch (bounded at twice the timeout: the secret and the POST) and
// then the request itself. Waits heartbeat between calls, so this must stay
// under heartbeatTimeout.
const csmCallBound = 3

// Load reads path over the defaults. An empty path gives the defaults.
func Load(path string) (Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config file: %w", err)
	}
	cfg := Default()
	if err := Parse(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads YAML over cfg, refusing keys it does not know (a typo would
// otherwise silently leave a default in place), then validates the result.
// The old key profile is read as release, with a warning.
func Parse(data []byte, cfg *Config) error {
	if len(bytes.TrimSpace(data)) > 0 {
		var head struct {
			Release *string `json:"release"`
			CSM     struct {
				ClientSecret *SecretRef `json:"clientSecret"`
			} `json:"csm"`
		}
		releaseSet := false
		if err := yaml.Unmarshal(data, &head); err == nil {
			releaseSet = head.Release != nil
			if head.CSM.ClientSecret != nil {
				// A secret named in the file replaces the default source.
				cfg.CSM.ClientSecret = SecretRef{}
			}
		}
		if err := yaml.UnmarshalStrict(data, cfg); err != nil {
			// The YAML is decoded as JSON; say so in the file's own terms.
			msg := err.Error()
			for _, prefix := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
				msg = strings.TrimPrefix(msg, prefix)
			}
			switch {
			case strings.HasPrefix(msg, "error converting YAML to JSON: "):
				return fmt.Errorf("not valid YAML: %s: fix the file's syntax (indentation, brackets, quotes)", strings.TrimPrefix(msg, "error converting YAML to JSON: "))
			case strings.Contains(msg, "unknown field"):
				return fmt.Errorf("%s (docs/configuration.md lists the keys)", strings.Replace(msg, "unknown field", "unknown key", 1))
			}
			return errors.New(msg)
		}
		if cfg.Profile != "" {
			if releaseSet {
				return fmt.Errorf("profile: %q is the old name of release: and the file sets both; remove profile", cfg.Profile)
			}
			cfg.Release = api.Release(cfg.Profile)
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("profile: %s is the old name of release: (docs/csm-releases.md); it is read as release: %s, so the worker acts for that release instead of detecting it; rename the key", cfg.Profile, cfg.Profile))
			cfg.Profile = ""
		}
	}
	if r, err := api.ParseRelease(string(cfg.Release)); err == nil {
		cfg.Release = r // csm-1.4 is csm-1.3
	}
	return cfg.Validate()
}

// Validate names every bad value at once.
func (c Config) Validate() error {
	var errs []error
	checkDuration := func(field string, d Duration) { errs = append(errs, settings.CheckDuration(field, d)...) }
	for _, e := range catalog.Entries() {
		errs = append(errs, c.Services[e.Service].Validate("services."+string(e.Service))...)
	}
	if _, err := api.ParseRelease(string(c.Release)); err != nil {
		errs = append(errs, fmt.Errorf("release: %v", err))
	}
	if c.CSM.BaseURL != "" {
		if u, err := url.Parse(c.CSM.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("csm.baseURL: %q must be an absolute https:// URL such as https://api-gw-service-nmn.local", c.CSM.BaseURL))
		}
	}
	sr := c.CSM.ClientSecret
	set := 0
	for _, ok := range []bool{sr.Kubernetes != nil, sr.File != "", sr.Env != ""} {
		if ok {
			set++
		}
	}
	if set != 1 {
		errs = append(errs, fmt.Errorf("csm.clientSecret: set exactly one of kubernetes, file or env (got %d)", set))
	}
	checkDuration("csm.timeout", c.CSM.Timeout)
	if c.SSH.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("ssh.concurrency: must be at least 1, got %d", c.SSH.Concurrency))
	}
	checkDuration("ssh.connectTimeout", c.SSH.ConnectTimeout)
	checkDuration("ssh.commandTimeout", c.SSH.CommandTimeout)
	checkDuration("deleteTimeout", c.DeleteTimeout)
	checkDuration("pollInterval", c.PollInterval)
	checkDuration("heartbeatTimeout", c.HeartbeatTimeout)
	if c.CSM.Timeout > 0 && c.HeartbeatTimeout > 0 && csmCallBound*time.Duration(c.CSM.Timeout) >= time.Duration(c.HeartbeatTimeout) {
		most := (time.Duration(c.HeartbeatTimeout) - time.Millisecond) / csmCallBound
		errs = append(errs, fmt.Errorf("csm.timeout (%s) must be under a third of heartbeatTimeout (%s): between two heartbeats one CSM call may wait for a token (up to twice csm.timeout) and then for its answer, and a longer silence fails the step as a lost worker; set csm.timeout to %s or less, or heartbeatTimeout above %s",
			time.Duration(c.CSM.Timeout), time.Duration(c.HeartbeatTimeout), most.Truncate(time.Millisecond), csmCallBound*time.Duration(c.CSM.Timeout)))
	}
	if c.PollInterval > 0 && c.HeartbeatTimeout > 0 && c.PollInterval >= c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("pollInterval (%s) must be shorter than heartbeatTimeout (%s): waits heartbeat once per poll", time.Duration(c.PollInterval), time.Duration(c.HeartbeatTimeout)))
	}
	if c.Gates.Deadline < 0 {
		errs = append(errs, fmt.Errorf("gates.deadline: must be 0 (wait until someone decides) or a positive duration such as 8h, got %s", time.Duration(c.Gates.Deadline)))
	}
	if c.Gates.OnDeadline != api.OnDeadlineFail && c.Gates.OnDeadline != api.OnDeadlineSkip {
		errs = append(errs, fmt.Errorf("gates.onDeadline: %q must be %s or %s", c.Gates.OnDeadline, api.OnDeadlineFail, api.OnDeadlineSkip))
	}
	if c.ActivityAttempts < 1 {
		errs = append(errs, fmt.Errorf("activityAttempts: must be at least 1, got %d", c.ActivityAttempts))
	}
	// Maps above iterate in random order; sort so the message is stable.
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// Plan resolves the configuration into the plan of one service on release
// r (not auto: the run detects the release first).
func (c Config) Plan(r api.Release, s api.Service) api.ServicePlan {
	e, ok := catalog.Lookup(s)
	if !ok || !catalog.KnownRelease(r) {
		panic(fmt.Sprintf("config: plan for service %q on release %q", s, r)) // callers parse services and resolve auto first
	}
	v := e.Variant(r)
	if v.Procedure == api.NotInRelease {
		return api.ServicePlan{Service: s, Procedure: api.NotInRelease, Reason: v.Reason, FollowUps: v.FollowUps, Release: r}
	}
	p := c.Services[s].Plan(settings.PlanContext{
		Service: s, Procedure: v.Procedure, Release: r,
		Timings: func(wait Duration) api.Timings {
			return api.Timings{Wait: time.Duration(wait), Delete: time.Duration(c.DeleteTimeout), Poll: time.Duration(c.PollInterval), Heartbeat: time.Duration(c.HeartbeatTimeout), Attempts: c.ActivityAttempts}
		},
		Gates: api.GatePolicy{Deadline: time.Duration(c.Gates.Deadline), OnDeadline: c.Gates.OnDeadline},
		SSH:   settings.SSHBounds{Concurrency: c.SSH.Concurrency, Connect: time.Duration(c.SSH.ConnectTimeout), Command: time.Duration(c.SSH.CommandTimeout)},
	})
	p.Release, p.APIs = r, r.APIs()
	p.DataCheck = e.DataCheck
	return p
}

// Duration is a time.Duration written as "90s" or "10m" in the file.
type Duration = settings.Duration

// SettingsOf returns the settings of s as their type, e.g.
// SettingsOf[*orca.HMNFDSettings](cfg, api.HMNFD); it panics when the
// catalog gives s settings of another type (a programming error).
func SettingsOf[T settings.Settings](c Config, s api.Service) T {
	return c.Services[s].(T)
}
