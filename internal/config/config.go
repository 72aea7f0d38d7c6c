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
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/hostrange"
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

// Services holds each service's targets.
type Services struct {
	BSS         JobService         `json:"bss"`
	FAS         JobService         `json:"fas"`
	MEDS        PodService         `json:"meds"`
	REDS        PodService         `json:"reds"`
	CRUS        CRUSService        `json:"crus"`
	ExternalDNS EtcdClusterService `json:"externaldns"`
	HMNFD       HMNFDService       `json:"hmnfd"`
	CPS         CPSService         `json:"cps"`
}

// CPSService says which compute nodes the CPS procedure shuts down and
// boots again, and how long it waits for each.
type CPSService struct {
	// Nodes are xnames to reboot; empty derives them from the BOS session
	// templates whose boot sets use the CPS root file system (cpss3).
	Nodes []string `json:"nodes"`
	// Template is the BOS session template that boots Nodes (required with Nodes).
	Template string `json:"template"`
	// ShutdownTimeout bounds waiting for HSM to report the nodes Off.
	ShutdownTimeout Duration `json:"shutdownTimeout"`
	// BootTimeout bounds waiting for HSM to report the nodes Ready again.
	BootTimeout Duration `json:"bootTimeout"`
}

// CRUSService follows CRUS sessions and restarts the cray-crus pods.
type CRUSService struct {
	PodService
	// SessionPoll is how often unfinished sessions are looked at again.
	SessionPoll Duration `json:"sessionPoll"`
	// StuckAfter: a session unchanged this long is reported stuck.
	StuckAfter Duration `json:"stuckAfter"`
}

// HMNFDService restarts the orca daemon so nodes re-subscribe to HMNFD.
type HMNFDService struct {
	// Unit replaces the release's list of units with this one unit.
	Unit string `json:"unit"`
	// Units replaces the release's list of units tried in order on each
	// node (default by release: cray-dvs-orca then cray-orca on CSM 1.0,
	// cray-orca after).
	Units []string `json:"units"`
	// NCNGroups are pdsh host ranges of NCNs running orca (default by
	// release); an empty list restarts orca on compute nodes only.
	NCNGroups []string `json:"ncnGroups"`
	// Pods are HMNFD's own pods: restarted, before orca, when HMNFD
	// reports it is not ready (it stays so after an etcd wipe until its
	// process restarts).
	Pods PodService `json:"pods"`
	// BatchSize is the number of nodes one durable step restarts.
	BatchSize int `json:"batchSize"`
	// MaxFailedPercent of nodes may fail or be unreachable before the
	// service is reported failed.
	MaxFailedPercent float64 `json:"maxFailedPercent"`
	// VerifyTimeout bounds waiting for HMNFD to list the subscriptions again.
	VerifyTimeout Duration `json:"verifyTimeout"`
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

// JobService re-runs a Job.
type JobService struct {
	Namespace string `json:"namespace"`
	Job       string `json:"job"`
	// CompleteTimeout bounds waiting for the re-created Job to complete.
	CompleteTimeout Duration `json:"completeTimeout"`
}

// PodService restarts the pods a selector picks.
type PodService struct {
	Namespace string `json:"namespace"`
	Selector  string `json:"selector"`
	// ReadyTimeout bounds waiting for Ready replacements.
	ReadyTimeout Duration `json:"readyTimeout"`
}

// EtcdClusterService re-creates an etcd-operator EtcdCluster.
type EtcdClusterService struct {
	Namespace   string `json:"namespace"`
	EtcdCluster string `json:"etcdCluster"`
	// RunningTimeout bounds waiting for the operator to report it Running.
	RunningTimeout Duration `json:"runningTimeout"`
}

// Default is the runbook's configuration, with the release detected.
func Default() Config {
	cfg := Config{
		Services: Services{
			BSS: JobService{Namespace: "services", Job: "cray-reds-init", CompleteTimeout: Duration(30 * time.Minute)},
			// No FAS Job by default: the loader runs through the API on every
			// release (FAS removed the cray-fas-loader Job before CSM 1.0).
			FAS:  JobService{Namespace: "services", CompleteTimeout: Duration(30 * time.Minute)},
			MEDS: PodService{Namespace: "services", Selector: "app.kubernetes.io/name=cray-meds", ReadyTimeout: Duration(10 * time.Minute)},
			REDS: PodService{Namespace: "services", Selector: "app.kubernetes.io/name=cray-reds", ReadyTimeout: Duration(10 * time.Minute)},
			CRUS: CRUSService{
				PodService:  PodService{Namespace: "services", Selector: "app.kubernetes.io/name=cray-crus", ReadyTimeout: Duration(10 * time.Minute)},
				SessionPoll: Duration(10 * time.Second), StuckAfter: Duration(15 * time.Minute),
			},
			HMNFD: HMNFDService{BatchSize: 1000, MaxFailedPercent: 2, VerifyTimeout: Duration(5 * time.Minute),
				Pods: PodService{Namespace: "services", Selector: "app.kubernetes.io/name=cray-hmnfd", ReadyTimeout: Duration(10 * time.Minute)}},
			ExternalDNS: EtcdClusterService{Namespace: "services", EtcdCluster: "cray-externaldns-etcd", RunningTimeout: Duration(15 * time.Minute)},
			CPS:         CPSService{ShutdownTimeout: Duration(15 * time.Minute), BootTimeout: Duration(45 * time.Minute)},
		},
		Gates:   Gates{OnDeadline: api.OnDeadlineFail},
		Release: api.ReleaseAuto,
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

// maxBatchSize bounds services.hmnfd.batchSize.
const maxBatchSize = 1000

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
	checkName := func(field, kind, value string) {
		if value == "" {
			errs = append(errs, fmt.Errorf("%s: %s name is empty", field, kind))
			return
		}
		for _, msg := range validation.IsDNS1123Subdomain(value) {
			errs = append(errs, fmt.Errorf("%s: %q is not a valid %s name: %s", field, value, kind, msg))
		}
	}
	checkDuration := func(field string, d Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be a positive duration such as 90s or 10m, got %s", field, time.Duration(d)))
		}
	}
	checkSelector := func(field, value string) {
		sel, err := labels.Parse(value)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %q is not a label selector: %v", field, value, err))
		case sel.Empty():
			// An empty selector matches every pod in the namespace.
			errs = append(errs, fmt.Errorf("%s: empty selector would match every pod in the namespace; name the service's pods, e.g. app.kubernetes.io/name=cray-meds", field))
		}
	}
	s := c.Services
	for field, j := range map[string]JobService{"services.bss": s.BSS, "services.fas": s.FAS} {
		checkName(field+".namespace", "namespace", j.Namespace)
		if field != "services.fas" || j.Job != "" { // no FAS Job: the loader API
			checkName(field+".job", "Job", j.Job)
		}
		checkDuration(field+".completeTimeout", j.CompleteTimeout)
	}
	for field, p := range map[string]PodService{"services.meds": s.MEDS, "services.reds": s.REDS, "services.crus": s.CRUS.PodService, "services.hmnfd.pods": s.HMNFD.Pods} {
		checkName(field+".namespace", "namespace", p.Namespace)
		checkSelector(field+".selector", p.Selector)
		checkDuration(field+".readyTimeout", p.ReadyTimeout)
	}
	checkName("services.externaldns.namespace", "namespace", s.ExternalDNS.Namespace)
	checkName("services.externaldns.etcdCluster", "EtcdCluster", s.ExternalDNS.EtcdCluster)
	checkDuration("services.externaldns.runningTimeout", s.ExternalDNS.RunningTimeout)
	checkDuration("services.crus.sessionPoll", s.CRUS.SessionPoll)
	checkDuration("services.crus.stuckAfter", s.CRUS.StuckAfter)
	h := s.HMNFD
	if h.Unit != "" && len(h.Units) > 0 {
		errs = append(errs, fmt.Errorf("services.hmnfd: set unit (one unit) or units (a list tried in order), not both"))
	}
	if h.Unit != "" && !unitName(h.Unit) {
		errs = append(errs, fmt.Errorf("services.hmnfd.unit: %q is not a systemd unit name (e.g. cray-orca)", h.Unit))
	}
	if h.Units != nil && len(h.Units) == 0 {
		errs = append(errs, fmt.Errorf("services.hmnfd.units: empty list: name at least one unit, or leave the key out for the release's units"))
	}
	for i, u := range h.Units {
		if !unitName(u) {
			errs = append(errs, fmt.Errorf("services.hmnfd.units[%d]: %q is not a systemd unit name (e.g. cray-orca)", i, u))
		}
	}
	for i, g := range h.NCNGroups {
		if _, err := hostrange.Expand(g); err != nil {
			errs = append(errs, fmt.Errorf("services.hmnfd.ncnGroups[%d]: %v", i, err))
		}
	}
	// A batch's result lists each failed node with its reason: past 1,000
	// nodes it outgrows what one Temporal payload should carry.
	if h.BatchSize < 1 || h.BatchSize > maxBatchSize {
		errs = append(errs, fmt.Errorf("services.hmnfd.batchSize: must be 1 to %d nodes (one batch's result lists each failed node and must stay a small Temporal payload), got %d", maxBatchSize, h.BatchSize))
	}
	if h.MaxFailedPercent < 0 || h.MaxFailedPercent > 100 {
		errs = append(errs, fmt.Errorf("services.hmnfd.maxFailedPercent: must be 0 to 100, got %g", h.MaxFailedPercent))
	}
	checkDuration("services.hmnfd.verifyTimeout", h.VerifyTimeout)
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
	cps := s.CPS
	for i, x := range cps.Nodes {
		if !xnamePattern.MatchString(x) {
			errs = append(errs, fmt.Errorf("services.cps.nodes[%d]: %q is not a node xname such as x3000c0s19b1n0", i, x))
		}
	}
	if len(cps.Nodes) > 0 && cps.Template == "" {
		errs = append(errs, fmt.Errorf("services.cps.template: name the BOS session template that boots services.cps.nodes (or leave nodes empty to derive both from BOS)"))
	}
	if len(cps.Nodes) == 0 && cps.Template != "" {
		errs = append(errs, fmt.Errorf("services.cps.template: set only together with services.cps.nodes"))
	}
	checkDuration("services.cps.shutdownTimeout", cps.ShutdownTimeout)
	checkDuration("services.cps.bootTimeout", cps.BootTimeout)
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
	facts, ok := Facts(r)
	if !ok {
		panic("config: plan for release " + string(r)) // the caller resolves auto first
	}
	p := c.plan(r, facts, s)
	p.Release = r
	if p.Procedure != api.NotInRelease {
		p.APIs = r.APIs()
	}
	return p
}

func (c Config) plan(r api.Release, facts ReleaseFacts, s api.Service) api.ServicePlan {
	timings := func(wait Duration) api.Timings {
		return api.Timings{Wait: time.Duration(wait), Delete: time.Duration(c.DeleteTimeout), Poll: time.Duration(c.PollInterval), Heartbeat: time.Duration(c.HeartbeatTimeout), Attempts: c.ActivityAttempts}
	}
	job := func(j JobService) api.ServicePlan {
		return api.ServicePlan{Service: s, Procedure: api.RerunJob, Object: api.ObjectRef{Namespace: j.Namespace, Name: j.Job}, Timings: timings(j.CompleteTimeout)}
	}
	pods := func(p PodService) api.ServicePlan {
		return api.ServicePlan{Service: s, Procedure: api.RestartPods, Pods: api.PodSet{Namespace: p.Namespace, Selector: p.Selector}, Timings: timings(p.ReadyTimeout)}
	}
	gates := api.GatePolicy{Deadline: time.Duration(c.Gates.Deadline), OnDeadline: c.Gates.OnDeadline}
	if reason, absent := facts.Absent[s]; absent {
		return api.ServicePlan{Service: s, Procedure: api.NotInRelease, Reason: reason}
	}
	if h, byHand := facts.ByHand[s]; byHand {
		return api.ServicePlan{Service: s, Procedure: api.NotInRelease, Reason: h.Reason, FollowUps: h.FollowUps}
	}
	switch s {
	case api.BSS:
		return job(c.Services.BSS)
	case api.FAS:
		// The loader API on every release; a Job only where the file names
		// one and preflight finds it (PreferJob).
		p := api.ServicePlan{Service: s, Procedure: api.RunFASLoaderAPI, Timings: timings(c.Services.FAS.CompleteTimeout)}
		if c.Services.FAS.Job != "" {
			p.Object = api.ObjectRef{Namespace: c.Services.FAS.Namespace, Name: c.Services.FAS.Job}
		}
		return p
	case api.MEDS:
		return pods(c.Services.MEDS)
	case api.REDS:
		return pods(c.Services.REDS)
	case api.CRUS:
		p := pods(c.Services.CRUS.PodService)
		p.Procedure = api.RestartCRUS
		p.CRUS = &api.CRUSPlan{Poll: time.Duration(c.Services.CRUS.SessionPoll), StuckAfter: time.Duration(c.Services.CRUS.StuckAfter)}
		return p
	case api.HMNFD:
		h := c.Services.HMNFD
		units, ncns := facts.OrcaUnits, facts.NCNGroups
		switch {
		case h.Unit != "":
			units = []string{h.Unit}
		case len(h.Units) > 0:
			units = h.Units
		}
		if h.NCNGroups != nil {
			ncns = h.NCNGroups
		}
		return api.ServicePlan{Service: s, Procedure: api.RestartOrca, Timings: timings(h.VerifyTimeout), HMNFD: &api.HMNFDPlan{
			Units: slices.Clone(units), NCNGroups: slices.Clone(ncns), BatchSize: h.BatchSize, MaxFailedPercent: h.MaxFailedPercent, VerifyTimeout: time.Duration(h.VerifyTimeout),
			// Each unit tried is one more command per node.
			BatchTimeout:     time.Duration((h.BatchSize+c.SSH.Concurrency-1)/c.SSH.Concurrency)*(time.Duration(c.SSH.ConnectTimeout)+time.Duration(len(units))*time.Duration(c.SSH.CommandTimeout)) + time.Minute,
			Pods:             api.PodSet{Namespace: h.Pods.Namespace, Selector: h.Pods.Selector},
			PodsReadyTimeout: time.Duration(h.Pods.ReadyTimeout),
		}}
	case api.CPS:
		p := c.Services.CPS
		return api.ServicePlan{Service: s, Procedure: api.RemountCPS, Timings: timings(p.BootTimeout), Gates: gates, CPS: &api.CPSPlan{
			Nodes: p.Nodes, Template: p.Template, ShutdownTimeout: time.Duration(p.ShutdownTimeout), BootTimeout: time.Duration(p.BootTimeout),
		}}
	case api.BOS:
		// A few dozen templates, each a GET, maybe a PUT and a validation:
		// ten minutes bounds the restore across retries with room to spare.
		return api.ServicePlan{Service: s, Procedure: facts.BOS, Timings: timings(Duration(bosRestoreTimeout)), Gates: gates}
	case api.ExternalDNS:
		e := c.Services.ExternalDNS
		return api.ServicePlan{Service: s, Procedure: api.RecreateEtcdCluster, Object: api.ObjectRef{Namespace: e.Namespace, Name: e.EtcdCluster}, Timings: timings(e.RunningTimeout)}
	}
	panic("config: no plan for service " + string(s)) // api.AllServices and this switch disagree
}

const bosRestoreTimeout = 10 * time.Minute

// xnamePattern matches a node's xname (cabinet, chassis, slot, BMC, node).
var xnamePattern = regexp.MustCompile(`^x\d+c\d+s\d+b\d+n\d+$`)

// unitName rejects what is not a plain systemd unit name: the unit is put
// into a shell command on each node.
func unitName(u string) bool {
	return unitPattern.MatchString(u)
}

var unitPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9:_.@-]*$`)

// Duration is a time.Duration written as "90s" or "10m" in the file.
type Duration time.Duration

// UnmarshalJSON accepts a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"90s\" or \"10m\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v", s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }
