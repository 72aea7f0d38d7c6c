package cps

import (
	"fmt"
	"regexp"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/settings"
)

// CPSSettings say which compute nodes the CPS procedure shuts down and
// boots again, and how long it waits for each (procedure cps-remount).
type CPSSettings struct {
	// Nodes are xnames to reboot; empty derives them from the BOS session
	// templates whose boot sets use the CPS root file system (cpss3).
	Nodes []string `json:"nodes" doc:"xnames; null or []: those BOS templates boot with rootfs_provider cpss3"`
	// Template is the BOS session template that boots Nodes (required with Nodes).
	Template string `json:"template" doc:"BOS session template for nodes (required with nodes)"`
	// ShutdownTimeout bounds waiting for HSM to report the nodes Off.
	ShutdownTimeout settings.Duration `json:"shutdownTimeout" doc:"wait for HSM to report them Off"`
	// BootTimeout bounds waiting for HSM to report the nodes Ready again.
	BootTimeout settings.Duration `json:"bootTimeout" doc:"wait for HSM to report them Ready again"`
}

// Validate implements settings.Settings.
func (s *CPSSettings) Validate(field string) []error {
	var errs []error
	for i, x := range s.Nodes {
		if !xnamePattern.MatchString(x) {
			errs = append(errs, fmt.Errorf("%s.nodes[%d]: %q is not a node xname such as x3000c0s19b1n0", field, i, x))
		}
	}
	if len(s.Nodes) > 0 && s.Template == "" {
		errs = append(errs, fmt.Errorf("%s.template: name the BOS session template that boots %s.nodes (or leave nodes empty to derive both from BOS)", field, field))
	}
	if len(s.Nodes) == 0 && s.Template != "" {
		errs = append(errs, fmt.Errorf("%s.template: set only together with %s.nodes", field, field))
	}
	errs = append(errs, settings.CheckDuration(field+".shutdownTimeout", s.ShutdownTimeout)...)
	return append(errs, settings.CheckDuration(field+".bootTimeout", s.BootTimeout)...)
}

// Plan implements settings.Settings.
func (s *CPSSettings) Plan(c settings.PlanContext) api.ServicePlan {
	return api.ServicePlan{Service: c.Service, Procedure: api.RemountCPS, Timings: c.Timings(s.BootTimeout), Gates: c.Gates, CPS: &api.CPSPlan{
		Nodes: s.Nodes, Template: s.Template, ShutdownTimeout: time.Duration(s.ShutdownTimeout), BootTimeout: time.Duration(s.BootTimeout),
	}}
}

// xnamePattern matches a node's xname (cabinet, chassis, slot, BMC, node).
var xnamePattern = regexp.MustCompile(`^x\d+c\d+s\d+b\d+n\d+$`)
