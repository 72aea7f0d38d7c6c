// Package cps is the runbook's CPS section: the compute nodes that mount
// CPS content as their root file system are shut down through BOS before
// CPS's etcd is rebuilt and booted again after, each behind a gate.
package cps

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math/big"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Steps of cps-remount; its gates are steps too.
const (
	StepFindCPSNodes      = "find-cps-nodes"
	StepShutdownCPSNodes  = "shutdown-cps-nodes"
	StepWaitCPSNodesOff   = "wait-cps-nodes-off"
	StepBootCPSNodes      = "boot-cps-nodes"
	StepWaitCPSNodesReady = "wait-cps-nodes-ready"
)

// Procedure remounts CPS on the nodes that use it.
var Procedure = procedure.Procedure{
	Defaults:       defaults,
	Name:           api.RemountCPS,
	RestoringGates: []string{api.GateCPSReboot},
	Steps:          procedure.FixedSteps(StepFindCPSNodes, api.GateCPSUnmount, StepShutdownCPSNodes, StepWaitCPSNodesOff, api.GateCPSReboot, StepBootCPSNodes, StepWaitCPSNodesReady),
	Gates:          func(procedure.Input) []string { return []string{api.GateCPSUnmount, api.GateCPSReboot} },
	Run:            Run,
	Needs: procedure.Needs{CSMAPI: true,
		Note: func(v api.APIVersions) string { return fmt.Sprintf("BOS %s sessions", v.BOSVersion()) }},
	Activities: named,
	Proof: func(procedure.Input) (string, string) {
		return StepWaitCPSNodesReady, "the nodes that mount CPS Ready again (HSM)"
	},
}

// Run is the runbook's CPS section: compute nodes that have CPS
// content mounted as their root file system are shut down (unmount) and
// booted again (re-mount from the rebuilt etcd). Both power steps wait for
// a person at a gate; each wait on HSM heartbeats and resumes after a
// worker restart.
func Run(w *procedure.Run, ctx workflow.Context) error {
	plan := w.In.Plan
	var found CPSNodes
	err := w.Step(ctx, StepFindCPSNodes, procedure.ReadOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, api.ActivityFindCPSNodes, CPSNodesRequest{Nodes: plan.CPS.Nodes, Template: plan.CPS.Template, APIs: plan.APIs}).Get(ctx, &found)
		return found.Outcome, err
	})
	if err != nil {
		return err
	}
	var xnames []string
	for _, g := range found.Groups {
		xnames = append(xnames, g.Xnames...)
	}
	if !found.InUse || len(xnames) == 0 {
		why := found.Reason
		if why == "" {
			why = "no compute node uses CPS for its root file system"
		}
		skipRest(w, ctx, api.GateCPSUnmount, why)
		w.Result = "nothing to remount: " + why
		return nil
	}
	nodes := fmt.Sprintf("%d compute nodes (%s)", len(xnames), procedure.Sample(xnames, 8))
	if w.In.DryRun {
		w.SkipGate(ctx, api.GateCPSUnmount, "dry-run: would wait for approval to shut down "+nodes)
		w.Finish(ctx, StepShutdownCPSNodes, api.Skipped, "dry-run: would create BOS sessions (operation shutdown) for "+groupList(found.Groups), 0)
		w.Finish(ctx, StepWaitCPSNodesOff, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for HSM to report them Off", plan.CPS.ShutdownTimeout), 0)
		w.SkipGate(ctx, api.GateCPSReboot, "dry-run: would wait for approval to boot them again")
		w.Finish(ctx, StepBootCPSNodes, api.Skipped, "dry-run: would create BOS sessions (operation boot) with the same templates", 0)
		w.Finish(ctx, StepWaitCPSNodesReady, api.Skipped, fmt.Sprintf("dry-run: would wait up to %s for HSM to report them Ready", plan.CPS.BootTimeout), 0)
		return nil
	}

	if err := w.Gate(ctx, api.GateCPSUnmount,
		fmt.Sprintf("shut down %s through BOS (operation shutdown) so that they unmount the CPS content of their root file system", nodes),
		"Shutting down interrupts any job on these nodes: drain them in the workload manager first. Groups (BOS template: nodes): "+groupList(found.Groups)); err != nil {
		return err
	}
	if err := powerStep(w, ctx, StepShutdownCPSNodes, StepWaitCPSNodesOff, "shutdown", "Off", found.Groups, xnames, plan.CPS.ShutdownTimeout); err != nil {
		nodesLeftDown(w, found.Groups)
		return err
	}
	if err := w.Gate(ctx, api.GateCPSReboot,
		fmt.Sprintf("boot %s again through BOS (operation boot) so that they mount CPS content from the rebuilt etcd", nodes),
		"The nodes are Off now. Approve once CPS and its etcd cluster are healthy again (kubectl -n services get etcdclusters cray-cps-etcd)."); err != nil {
		nodesLeftDown(w, found.Groups)
		return err
	}
	if err := powerStep(w, ctx, StepBootCPSNodes, StepWaitCPSNodesReady, "boot", "Ready", found.Groups, xnames, plan.CPS.BootTimeout); err != nil {
		nodesLeftDown(w, found.Groups)
		return err
	}
	return nil
}

// powerStep starts one BOS session per template group and waits until HSM
// reports every node in state. Session names derive from the run, so a
// retried start finds the session it created instead of starting another.
func powerStep(w *procedure.Run, ctx workflow.Context, startStep, waitStep, operation, state string, groups []CPSNodeGroup, xnames []string, budget time.Duration) error {
	plan := w.In.Plan
	sessionName := func(group int) string { return BOSSessionName(w.In.RunID, operation, group) }
	if workflow.GetVersion(ctx, ChangeBOSSessionPerExecution, workflow.DefaultVersion, 1) == 1 {
		id := workflow.GetInfo(ctx).FirstRunID
		sessionName = func(group int) string { return BOSSessionNameOf(id, w.In.Plan.Service, operation, group) }
	}
	err := w.Step(ctx, startStep, procedure.ReadOptions(plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		var names []string
		for i, g := range groups {
			var started BOSSessionStarted
			req := BOSSessionRequest{Name: sessionName(i), Template: g.Template, Operation: operation, Xnames: g.Xnames, APIs: plan.APIs}
			if err := workflow.ExecuteActivity(ctx, api.ActivityStartBOSSession, req).Get(ctx, &started); err != nil {
				return activities.Outcome{}, err
			}
			names = append(names, started.Name)
		}
		return activities.Outcome{Message: fmt.Sprintf("BOS %s sessions %s started for %d nodes", operation, strings.Join(names, ", "), len(xnames))}, nil
	})
	if err != nil {
		return err
	}
	return w.Step(ctx, waitStep, procedure.WaitOptions(plan.Timings, budget), func(ctx workflow.Context) (activities.Outcome, error) {
		var out activities.Outcome
		err := workflow.ExecuteActivity(ctx, api.ActivityWaitNodesState, WaitNodesRequest{Xnames: xnames, States: []string{state}, Budget: budget, Poll: plan.Timings.Poll}).Get(ctx, &out)
		return out, err
	})
}

// nodesLeftDown tells a person how to boot the nodes by hand when the run
// stopped after they may have been shut down.
func nodesLeftDown(w *procedure.Run, groups []CPSNodeGroup) {
	if w.Find(StepShutdownCPSNodes).State == api.Pending {
		return // nothing was shut down
	}
	var xnames []string
	for _, g := range groups {
		xnames = append(xnames, g.Xnames...)
	}
	w.LeftOff = fmt.Sprintf("%d CPS nodes may still be Off: %s", len(xnames), procedure.Sample(xnames, 20))
	for _, g := range groups {
		w.Status.FollowUps = append(w.Status.FollowUps, fmt.Sprintf(
			"CPS nodes may still be Off: once CPS is healthy, boot them: cray bos v2 sessions create --template-name %s --operation boot --limit %s",
			g.Template, strings.Join(g.Xnames, ",")))
	}
}

// skipRest marks every step and gate from the named one on as skipped.
func skipRest(w *procedure.Run, ctx workflow.Context, from, why string) {
	started := false
	for _, s := range w.Status.Steps {
		started = started || s.Name == from
		if !started {
			continue
		}
		if g := w.FindGate(s.Name); g != nil {
			w.SkipGate(ctx, s.Name, why)
			continue
		}
		w.Finish(ctx, s.Name, api.Skipped, why, 0)
	}
}

// ChangeBOSSessionPerExecution: BOS session names come from the child's
// first Temporal run ID instead of an FNV-32 hash of the run ID, which a
// reused run ID or a collision shared with an older run's session.
const ChangeBOSSessionPerExecution = "bos-session-name-per-execution"

// BOSSessionNameOf is a BOS session name unique to one child execution
// (its first Temporal run ID: kept across resets and retries, never shared
// by two executions), service, operation and group, within BOS v2's name
// rules: at most 45 characters of [a-z0-9-] (V2SessionName).
// "cps-shutdown-" + 25 base-36 digits of the 128-bit ID + "-" + group.
func BOSSessionNameOf(firstRunID string, service api.Service, operation string, group int) string {
	id, err := hex.DecodeString(strings.ReplaceAll(firstRunID, "-", ""))
	if err != nil || len(id) != 16 {
		// Not a UUID (only the test environment): its 128-bit digest.
		sum := sha256.Sum256([]byte(firstRunID))
		id = sum[:16]
	}
	digits := new(big.Int).SetBytes(id).Text(36) // 36^25 > 2^128: at most 25 digits
	return fmt.Sprintf("%s-%s-%s%s-%d", service, operation, strings.Repeat("0", 25-len(digits)), digits, group)
}

// BOSSessionName is the name runs started before
// ChangeBOSSessionPerExecution gave their sessions.
func BOSSessionName(runID, operation string, group int) string {
	h := fnv.New32a()
	h.Write([]byte(runID))
	return fmt.Sprintf("repopulate-cps-%s-%08x-%d", operation, h.Sum32(), group)
}

func groupList(groups []CPSNodeGroup) string {
	parts := make([]string, len(groups))
	for i, g := range groups {
		parts[i] = fmt.Sprintf("%s: %s", g.Template, procedure.Sample(g.Xnames, 8))
	}
	return strings.Join(parts, "; ")
}

// Defaults of budgets an older run's plan may lack.
const (
	DefaultShutdown = 15 * time.Minute
	DefaultBoot     = 45 * time.Minute
)

// defaults fills an older plan's zero shutdown and boot budgets.
func defaults(p *api.ServicePlan) {
	if p.CPS == nil {
		return
	}
	c := *p.CPS
	procedure.OrDefault(&c.ShutdownTimeout, DefaultShutdown)
	procedure.OrDefault(&c.BootTimeout, DefaultBoot)
	p.CPS = &c
}
