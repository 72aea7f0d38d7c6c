// Package settings is what every procedure's settings (services.<name>
// in the worker config) are built from: the interface the catalog and the
// config decode them through, durations as written in the file, and the
// checks that name a bad value's key.
package settings

import (
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Settings are one service's keys under services.<service> in the worker
// config. Each procedure has its type, in procedures/<procedure>/settings.go.
type Settings interface {
	// Validate names every bad value; field is where the settings are,
	// e.g. services.meds.
	Validate(field string) []error
	// Plan resolves the settings into the service's plan.
	Plan(c PlanContext) api.ServicePlan
}

// PlanContext is what a plan takes from outside the service's settings.
type PlanContext struct {
	Service   api.Service
	Procedure api.Procedure
	Release   api.Release
	// Timings are the config's shared timings with the service's wait.
	Timings func(wait Duration) api.Timings
	// Gates is the config's gate policy.
	Gates api.GatePolicy
	// SSH bounds a node's connection and each command on it.
	SSH SSHBounds
}

// SSHBounds are the SSH settings a plan's timeouts are derived from.
type SSHBounds struct {
	Concurrency      int
	Connect, Command time.Duration
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

// CheckName refuses an empty or invalid Kubernetes object name.
func CheckName(field, kind, value string) []error {
	if value == "" {
		return []error{fmt.Errorf("%s: %s name is empty", field, kind)}
	}
	var errs []error
	for _, msg := range validation.IsDNS1123Subdomain(value) {
		errs = append(errs, fmt.Errorf("%s: %q is not a valid %s name: %s", field, value, kind, msg))
	}
	return errs
}

// CheckDuration refuses a duration that is not positive.
func CheckDuration(field string, d Duration) []error {
	if d <= 0 {
		return []error{fmt.Errorf("%s: must be a positive duration such as 90s or 10m, got %s", field, time.Duration(d))}
	}
	return nil
}

// CheckSelector refuses what is not a label selector, and the empty one.
func CheckSelector(field, value string) []error {
	sel, err := labels.Parse(value)
	switch {
	case err != nil:
		return []error{fmt.Errorf("%s: %q is not a label selector: %v", field, value, err)}
	case sel.Empty():
		// An empty selector matches every pod in the namespace.
		return []error{fmt.Errorf("%s: empty selector would match every pod in the namespace; name the service's pods, e.g. app.kubernetes.io/name=cray-meds", field)}
	}
	return nil
}
