// Package config reads the worker's YAML configuration: every name,
// namespace, selector and timeout the runbook's steps use. The defaults are
// the runbook's (CSM 1.0); a file only needs the values that differ.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Config is the worker's configuration file.
type Config struct {
	Services Services `json:"services"`
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
}

// Services holds each service's targets.
type Services struct {
	BSS         JobService         `json:"bss"`
	FAS         JobService         `json:"fas"`
	MEDS        PodService         `json:"meds"`
	REDS        PodService         `json:"reds"`
	CRUS        PodService         `json:"crus"`
	ExternalDNS EtcdClusterService `json:"externaldns"`
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

// Default is the runbook's configuration.
func Default() Config {
	return Config{
		Services: Services{
			BSS:         JobService{Namespace: "services", Job: "cray-reds-init", CompleteTimeout: Duration(30 * time.Minute)},
			FAS:         JobService{Namespace: "services", Job: "cray-fas-loader", CompleteTimeout: Duration(30 * time.Minute)},
			MEDS:        PodService{Namespace: "services", Selector: "app.kubernetes.io/name=cray-meds", ReadyTimeout: Duration(10 * time.Minute)},
			REDS:        PodService{Namespace: "services", Selector: "app.kubernetes.io/name=cray-reds", ReadyTimeout: Duration(10 * time.Minute)},
			CRUS:        PodService{Namespace: "services", Selector: "app.kubernetes.io/name=cray-crus", ReadyTimeout: Duration(10 * time.Minute)},
			ExternalDNS: EtcdClusterService{Namespace: "services", EtcdCluster: "cray-externaldns-etcd", RunningTimeout: Duration(15 * time.Minute)},
		},
		DeleteTimeout:    Duration(5 * time.Minute),
		PollInterval:     Duration(2 * time.Second),
		HeartbeatTimeout: Duration(30 * time.Second),
		ActivityAttempts: 5,
	}
}

// Load reads path over the defaults. An empty path gives the defaults.
func Load(path string) (Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config file: %w", err)
	}
	if err := Parse(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads YAML over cfg, refusing keys it does not know (a typo would
// otherwise silently leave a default in place), then validates the result.
func Parse(data []byte, cfg *Config) error {
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.UnmarshalStrict(data, cfg); err != nil {
			// The YAML is decoded as JSON; say so in the file's own terms.
			msg := err.Error()
			for _, prefix := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
				msg = strings.TrimPrefix(msg, prefix)
			}
			msg = strings.Replace(msg, "unknown field", "unknown key", 1)
			return fmt.Errorf("%s (docs/configuration.md lists the keys)", msg)
		}
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
		checkName(field+".job", "Job", j.Job)
		checkDuration(field+".completeTimeout", j.CompleteTimeout)
	}
	for field, p := range map[string]PodService{"services.meds": s.MEDS, "services.reds": s.REDS, "services.crus": s.CRUS} {
		checkName(field+".namespace", "namespace", p.Namespace)
		checkSelector(field+".selector", p.Selector)
		checkDuration(field+".readyTimeout", p.ReadyTimeout)
	}
	checkName("services.externaldns.namespace", "namespace", s.ExternalDNS.Namespace)
	checkName("services.externaldns.etcdCluster", "EtcdCluster", s.ExternalDNS.EtcdCluster)
	checkDuration("services.externaldns.runningTimeout", s.ExternalDNS.RunningTimeout)
	checkDuration("deleteTimeout", c.DeleteTimeout)
	checkDuration("pollInterval", c.PollInterval)
	checkDuration("heartbeatTimeout", c.HeartbeatTimeout)
	if c.PollInterval > 0 && c.HeartbeatTimeout > 0 && c.PollInterval >= c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("pollInterval (%s) must be shorter than heartbeatTimeout (%s): waits heartbeat once per poll", time.Duration(c.PollInterval), time.Duration(c.HeartbeatTimeout)))
	}
	if c.ActivityAttempts < 1 {
		errs = append(errs, fmt.Errorf("activityAttempts: must be at least 1, got %d", c.ActivityAttempts))
	}
	// Maps above iterate in random order; sort so the message is stable.
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// Plan resolves the configuration into the plan of one service.
func (c Config) Plan(s api.Service) api.ServicePlan {
	timings := func(wait Duration) api.Timings {
		return api.Timings{Wait: time.Duration(wait), Delete: time.Duration(c.DeleteTimeout), Poll: time.Duration(c.PollInterval), Heartbeat: time.Duration(c.HeartbeatTimeout), Attempts: c.ActivityAttempts}
	}
	job := func(j JobService) api.ServicePlan {
		return api.ServicePlan{Service: s, Procedure: api.RerunJob, Object: api.ObjectRef{Namespace: j.Namespace, Name: j.Job}, Timings: timings(j.CompleteTimeout)}
	}
	pods := func(p PodService) api.ServicePlan {
		return api.ServicePlan{Service: s, Procedure: api.RestartPods, Pods: api.PodSet{Namespace: p.Namespace, Selector: p.Selector}, Timings: timings(p.ReadyTimeout)}
	}
	switch s {
	case api.BSS:
		return job(c.Services.BSS)
	case api.FAS:
		return job(c.Services.FAS)
	case api.MEDS:
		return pods(c.Services.MEDS)
	case api.REDS:
		return pods(c.Services.REDS)
	case api.CRUS:
		p := pods(c.Services.CRUS)
		p.PreSteps = []string{"check-crus-sessions"}
		return p
	case api.ExternalDNS:
		e := c.Services.ExternalDNS
		return api.ServicePlan{Service: s, Procedure: api.RecreateEtcdCluster, Object: api.ObjectRef{Namespace: e.Namespace, Name: e.EtcdCluster}, Timings: timings(e.RunningTimeout)}
	default:
		return api.ServicePlan{Service: s, Procedure: api.NotImplemented, Reason: notImplemented[s]}
	}
}

// notImplemented says, honestly, which runbook sections this version leaves to a person.
var notImplemented = map[api.Service]string{
	api.BOS:   "not implemented yet: rebuild BOS session templates by hand (runbook, BOS section)",
	api.CPS:   "not implemented yet: unmount and re-mount CPS content by hand (runbook, CPS section)",
	api.HMNFD: "not implemented yet: restart the orca daemon on compute nodes and NCNs by hand (runbook, HMNFD section)",
}

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
