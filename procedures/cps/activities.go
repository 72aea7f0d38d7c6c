package cps

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
)

// Non-retryable error types of the CPS steps.
const (
	ErrCPSConfig          = "CPSConfig"
	ErrCPSAmbiguous       = "CPSNodeInSeveralTemplates"
	ErrBOSSessionConflict = "BOSSessionConflict"
)

// cpsRootfsProvider marks a boot set whose root file system CPS projects.
const cpsRootfsProvider = "cpss3"

// hsmIDBatch bounds the id= parameters of one HSM query so the URL stays
// well under the gateway's limit (about 17 bytes each).
const hsmIDBatch = 100

// upStates are the HSM States of a node that is running and so may have CPS
// content mounted.
var upStates = []string{"Ready", "On"}

// Activities find the CPS nodes and power them through BOS, watching HSM.
type Activities struct{ CSM *activities.CSM }

// named maps each contract name (internal/api) to its implementation.
func named(_ *activities.Kube, c *activities.CSM) map[string]any {
	a := &Activities{CSM: c}
	return map[string]any{
		api.ActivityFindCPSNodes:    a.FindCPSNodes,
		api.ActivityStartBOSSession: a.StartBOSSession,
		api.ActivityWaitNodesState:  a.WaitNodesState,
	}
}

// CPSNodesRequest names the nodes whose root file system CPS projects, as
// configured (services.cps.nodes and services.cps.template); empty Nodes
// means derive them from BOS and HSM.
type CPSNodesRequest struct {
	Nodes    []string `json:"nodes,omitempty"`
	Template string   `json:"template,omitempty"`
	// APIs: the BOS version to read the templates through.
	APIs api.APIVersions `json:"apis,omitzero"`
}

// CPSNodeGroup is the up nodes one BOS session template boots.
type CPSNodeGroup struct {
	Template string   `json:"template"`
	Xnames   []string `json:"xnames"`
}

// CPSNodes is whether CPS is in use and which nodes must be shut down before
// the rebuild and booted after it, grouped by the template that boots them.
type CPSNodes struct {
	activities.Outcome
	InUse  bool           `json:"inUse"`
	Reason string         `json:"reason,omitempty"`
	Groups []CPSNodeGroup `json:"groups,omitempty"`
}

// FindCPSNodes decides whether the runbook's CPS section applies: CPS with
// no content and no transport has no client, so nothing is done. Otherwise
// it lists the up nodes that use CPS for their root file system.
func (a *Activities) FindCPSNodes(ctx context.Context, req CPSNodesRequest) (CPSNodes, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return CPSNodes{}, err
	}
	cl = cl.WithAPIs(req.APIs)
	if len(req.Nodes) > 0 && strings.TrimSpace(req.Template) == "" {
		return CPSNodes{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"services.cps.nodes lists %d nodes but services.cps.template is empty: set it to the BOS session template that boots them", len(req.Nodes)),
			ErrCPSConfig, nil)
	}
	contents, err := cl.CPSContents(ctx)
	if csm.KindOf(err) == csm.NotFound {
		reason := "CPS is not installed (the API answered 404), so no client uses it"
		return CPSNodes{Reason: reason, Outcome: activities.NewOutcome(ctx, "%s", reason)}, nil
	}
	if err != nil {
		return CPSNodes{}, activities.CSMError(err)
	}
	if len(contents) == 0 {
		reason := "no client uses CPS: /apis/v2/cps/contents is empty, so nothing is projected"
		return CPSNodes{Reason: reason, Outcome: activities.NewOutcome(ctx, "%s", reason)}, nil
	}
	// CPS answers /transports for one content and one transport type.
	transports, ready := 0, 0
	for _, ct := range contents {
		types := ct.Transports
		if len(types) == 0 {
			types = []string{"dvs"} // the only transport CPS has
		}
		for _, typ := range types {
			ts, err := cl.CPSTransports(ctx, ct.S3Path, typ, ct.Etag)
			if err != nil {
				return CPSNodes{}, activities.CSMError(err)
			}
			transports += len(ts.Transports)
			ready += ts.ReadyForMount()
		}
	}
	inUse := fmt.Sprintf("CPS projects %d contents over %d transports (%d ready for mount)", len(contents), transports, ready)
	if len(req.Nodes) > 0 {
		return configuredCPSNodes(ctx, cl, req, inUse)
	}
	return derivedCPSNodes(ctx, cl, inUse)
}

func configuredCPSNodes(ctx context.Context, cl *csm.Client, req CPSNodesRequest, inUse string) (CPSNodes, error) {
	wanted := sortedXnames(req.Nodes)
	comps, err := componentsByID(ctx, cl, wanted)
	if err != nil {
		return CPSNodes{}, activities.CSMError(err)
	}
	var unknown, up, down []string
	for _, x := range wanted {
		comp, ok := comps[x]
		switch {
		case !ok:
			unknown = append(unknown, x)
		case hsmUp(comp.State):
			up = append(up, x)
		default:
			down = append(down, fmt.Sprintf("%s (%s)", x, comp.State))
		}
	}
	if len(unknown) > 0 {
		return CPSNodes{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"services.cps.nodes: HSM has no component %s: correct the xnames", xnameSample(unknown, 20)), ErrCPSConfig, nil)
	}
	res := CPSNodes{InUse: true}
	// A node that is not up has nothing mounted, and booting it afterwards
	// would turn on a node someone left off.
	skipped := ""
	if len(down) > 0 {
		skipped = fmt.Sprintf("; left out %d not up in HSM: %s", len(down), xnameSample(down, 20))
	}
	if len(up) == 0 {
		res.Reason = fmt.Sprintf("none of the %d configured CPS nodes is up (Ready or On) in HSM, so none has CPS content mounted", len(wanted))
		res.Outcome = activities.NewOutcome(ctx, "%s; %s%s", inUse, res.Reason, skipped)
		return res, nil
	}
	res.Groups = []CPSNodeGroup{{Template: req.Template, Xnames: up}}
	res.Outcome = activities.NewOutcome(ctx, "%s; %d configured nodes up, booted with template %s%s", inUse, len(up), req.Template, skipped)
	return res, nil
}

func derivedCPSNodes(ctx context.Context, cl *csm.Client, inUse string) (CPSNodes, error) {
	templates, err := cl.SessionTemplates(ctx)
	if err != nil {
		return CPSNodes{}, activities.CSMError(err)
	}
	up, err := cl.Components(ctx, csm.ComponentQuery{Types: []string{"Node"}, States: upStates})
	if err != nil {
		return CPSNodes{}, activities.CSMError(err)
	}
	owners := map[string][]string{} // up xname -> cpss3 templates that boot it
	var cpsTemplates []string
	for _, t := range templates {
		var names []string
		roles := map[string]bool{}
		uses := false
		for _, bsName := range slices.Sorted(maps.Keys(t.BootSets)) {
			bs := t.BootSets[bsName]
			if !strings.EqualFold(bs.RootfsProvider, cpsRootfsProvider) {
				continue
			}
			if len(bs.NodeGroups) > 0 {
				// HSM groups are not resolved here; guessing would leave CPS
				// clients mounted through the rebuild.
				return CPSNodes{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
					"BOS session template %s boot set %s uses CPS (rootfs_provider %s) for node_groups %s, which this tool does not resolve: set services.cps.nodes to their xnames and services.cps.template to %s",
					t.Name, bsName, bs.RootfsProvider, strings.Join(bs.NodeGroups, ","), t.Name), ErrCPSConfig, nil)
			}
			uses = true
			names = append(names, bs.NodeList...)
			for _, r := range bs.NodeRolesGroups {
				roles[strings.ToLower(r)] = true
			}
		}
		if !uses {
			continue
		}
		cpsTemplates = append(cpsTemplates, t.Name)
		listed := map[string]bool{}
		for _, x := range names {
			listed[x] = true
		}
		for _, comp := range up {
			if listed[comp.ID] || roles[strings.ToLower(comp.Role)] {
				if !slices.Contains(owners[comp.ID], t.Name) {
					owners[comp.ID] = append(owners[comp.ID], t.Name)
				}
			}
		}
	}
	res := CPSNodes{InUse: true}
	if len(cpsTemplates) == 0 {
		res.Reason = "no BOS session template has a boot set with rootfs_provider cpss3, so no node boots its root file system from CPS; if some do, set services.cps.nodes and services.cps.template"
		res.Outcome = activities.NewOutcome(ctx, "%s; %s", inUse, res.Reason)
		return res, nil
	}
	if len(owners) == 0 {
		res.Reason = fmt.Sprintf("no node of the CPS templates %s is up (Ready or On) in HSM", strings.Join(cpsTemplates, ", "))
		res.Outcome = activities.NewOutcome(ctx, "%s; %s", inUse, res.Reason)
		return res, nil
	}
	byTemplate := map[string][]string{}
	var ambiguous []string
	for x, ts := range owners {
		if len(ts) > 1 {
			ambiguous = append(ambiguous, fmt.Sprintf("%s (%s)", x, strings.Join(ts, ", ")))
			continue
		}
		byTemplate[ts[0]] = append(byTemplate[ts[0]], x)
	}
	if len(ambiguous) > 0 {
		slices.Sort(ambiguous)
		return CPSNodes{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"%d up nodes are booted by more than one CPS session template, so the one to boot them with again is unknown: %s; set services.cps.nodes and services.cps.template",
			len(ambiguous), xnameSample(ambiguous, 20)), ErrCPSAmbiguous, nil)
	}
	total := 0
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(byTemplate)) {
		xs := byTemplate[name]
		slices.Sort(xs)
		res.Groups = append(res.Groups, CPSNodeGroup{Template: name, Xnames: xs})
		total += len(xs)
		parts = append(parts, fmt.Sprintf("%s: %d", name, len(xs)))
	}
	res.Outcome = activities.NewOutcome(ctx, "%s; %d up nodes boot their root file system from CPS (%s)", inUse, total, strings.Join(parts, ", "))
	return res, nil
}

// BOSSessionRequest starts one BOS session on xnames.
type BOSSessionRequest struct {
	// Name names the session on BOS v2 (idempotency); BOS v1 names its
	// sessions itself.
	Name      string   `json:"name"`
	Template  string   `json:"template"`
	Operation string   `json:"operation"`
	Xnames    []string `json:"xnames"`
	// APIs: the BOS version to start the session through.
	APIs api.APIVersions `json:"apis,omitzero"`
}

// BOSSessionStarted names the session BOS has (its id on BOS v1).
type BOSSessionStarted struct {
	activities.Outcome
	Name string `json:"name"`
}

// bosV1Start is StartBOSSession's heartbeat detail on BOS v1: the session
// ids BOS had before this step's POST, recorded before the POST is sent.
type bosV1Start struct {
	Before []string `json:"before"`
}

// StartBOSSession creates a BOS session (shutdown or boot of xnames),
// idempotently.
//
// BOS v2: the session is named, so after a retry BOS answers 409 and the
// existing session is accepted if it is the same request.
//
// BOS v1 names sessions itself (the id is only in the POST's answer). The
// ids BOS lists before the POST are kept in the heartbeat details; a retry
// (whose earlier attempt may have started a session and lost the answer)
// looks at the sessions BOS has that are not among them and adopts one
// with this template, operation and limit instead of starting a second.
func (a *Activities) StartBOSSession(ctx context.Context, req BOSSessionRequest) (BOSSessionStarted, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return BOSSessionStarted{}, err
	}
	cl = cl.WithAPIs(req.APIs)
	v1 := req.APIs.BOSVersion() == api.APIv1
	var bad []string
	if strings.TrimSpace(req.Name) == "" && !v1 {
		bad = append(bad, "name is empty")
	}
	if strings.TrimSpace(req.Template) == "" {
		bad = append(bad, "template is empty")
	}
	if req.Operation != "shutdown" && req.Operation != "boot" {
		bad = append(bad, fmt.Sprintf("operation %q is not shutdown or boot", req.Operation))
	}
	if len(req.Xnames) == 0 {
		// An empty limit would act on every node of the template.
		bad = append(bad, "no xnames")
	}
	if len(bad) > 0 {
		return BOSSessionStarted{}, temporal.NewNonRetryableApplicationError(
			"BOS session request: "+strings.Join(bad, "; "), api.InvalidRequestError, nil)
	}
	if v1 {
		return startBOSv1Session(ctx, cl, req)
	}
	limit := strings.Join(req.Xnames, ",")
	s, err := cl.CreateBOSSession(ctx, csm.BOSSessionRequest{Name: req.Name, TemplateName: req.Template, Operation: req.Operation, Limit: limit})
	if err == nil {
		return BOSSessionStarted{Name: s.Name, Outcome: activities.NewOutcome(ctx, "started BOS session %s: %s of %d nodes with template %s", s.Name, req.Operation, len(req.Xnames), req.Template)}, nil
	}
	var ce *csm.Error
	if !errors.As(err, &ce) || ce.Status != 409 {
		return BOSSessionStarted{}, activities.CSMError(err)
	}
	have, err := cl.BOSSession(ctx, req.Name)
	if err != nil {
		return BOSSessionStarted{}, activities.CSMError(err)
	}
	if !sameSession(have, req) {
		return BOSSessionStarted{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"BOS session %s already exists with template %s, operation %s and %d nodes in its limit, not this step's template %s, operation %s and %d nodes: delete it (cray bos v2 sessions delete %s) or start a new run",
			req.Name, have.TemplateName, have.Operation, len(splitLimit(have.Limit)), req.Template, req.Operation, len(req.Xnames), req.Name), ErrBOSSessionConflict, nil)
	}
	return BOSSessionStarted{Name: have.Name, Outcome: activities.NewOutcome(ctx, "BOS session %s (%s of %d nodes with template %s) was already started, by an earlier attempt; status %s",
		have.Name, req.Operation, len(req.Xnames), req.Template, have.Status.Status)}, nil
}

// sameSession reports whether a session BOS has is the one req asks for.
func sameSession(have csm.BOSSession, req BOSSessionRequest) bool {
	return have.TemplateName == req.Template && strings.EqualFold(have.Operation, req.Operation) &&
		slices.Equal(sortedXnames(splitLimit(have.Limit)), sortedXnames(req.Xnames))
}

func startBOSv1Session(ctx context.Context, cl *csm.Client, req BOSSessionRequest) (BOSSessionStarted, error) {
	var prev bosV1Start
	if activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &prev) == nil && prev.Before != nil {
		ids, err := cl.BOSSessionIDs(ctx)
		if err != nil {
			return BOSSessionStarted{}, activities.CSMError(err)
		}
		for _, id := range ids {
			if slices.Contains(prev.Before, id) {
				continue
			}
			have, err := cl.BOSSession(ctx, id)
			if csm.KindOf(err) == csm.NotFound {
				continue // deleted meanwhile
			}
			if err != nil {
				return BOSSessionStarted{}, activities.CSMError(err)
			}
			if sameSession(have, req) {
				return BOSSessionStarted{Name: id, Outcome: activities.NewOutcome(ctx, "BOS v1 session %s (%s of %d nodes with template %s) was started by an earlier attempt whose answer was lost; status %s",
					id, req.Operation, len(req.Xnames), req.Template, have.Status.Status)}, nil
			}
		}
	}
	// Keep the first attempt's list: a session that appeared since is one
	// an earlier attempt may have started.
	before := prev.Before
	if before == nil {
		ids, err := cl.BOSSessionIDs(ctx)
		if err != nil {
			return BOSSessionStarted{}, activities.CSMError(err)
		}
		before = append([]string{}, ids...)
	}
	activities.RecordHeartbeat(ctx, bosV1Start{Before: before})
	limit := strings.Join(req.Xnames, ",")
	s, err := cl.CreateBOSSession(ctx, csm.BOSSessionRequest{TemplateName: req.Template, Operation: req.Operation, Limit: limit})
	if err != nil {
		return BOSSessionStarted{}, activities.CSMError(err)
	}
	return BOSSessionStarted{Name: s.Name, Outcome: activities.NewOutcome(ctx, "started BOS v1 session %s: %s of %d nodes with template %s", s.Name, req.Operation, len(req.Xnames), req.Template)}, nil
}

// WaitNodesRequest waits for xnames to reach one of States in HSM.
type WaitNodesRequest struct {
	Xnames []string      `json:"xnames"`
	States []string      `json:"states"`
	Budget time.Duration `json:"budget"`
	Poll   time.Duration `json:"poll"`
}

// WaitNodesState polls HSM until every node is in one of the states. The
// budget counts from the first attempt: the start is kept in the heartbeat
// details, so a retried wait does not start over.
func (a *Activities) WaitNodesState(ctx context.Context, req WaitNodesRequest) (activities.Outcome, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return activities.Outcome{}, err
	}
	if len(req.Xnames) == 0 || len(req.States) == 0 {
		return activities.Outcome{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"wait for node states: got %d xnames and %d states, need at least one of each", len(req.Xnames), len(req.States)), api.InvalidRequestError, nil)
	}
	xnames := sortedXnames(req.Xnames)
	want := strings.Join(req.States, " or ")
	what := fmt.Sprintf("%d nodes to be %s in HSM", len(xnames), want)
	msg, err := activities.Poll(ctx, api.Timings{Poll: req.Poll}, req.Budget, what, func(ctx context.Context) (string, bool, error) {
		comps, err := componentsByID(ctx, cl, xnames)
		if err != nil {
			if csm.Retryable(err) {
				return fmt.Sprintf("HSM not answering: %v", err), false, nil
			}
			return "", false, activities.CSMError(err)
		}
		var notYet []string
		for _, x := range xnames {
			comp, ok := comps[x]
			switch {
			case !ok:
				notYet = append(notYet, x+" (not in HSM)")
			case !slices.ContainsFunc(req.States, func(s string) bool { return strings.EqualFold(s, comp.State) }):
				notYet = append(notYet, fmt.Sprintf("%s (%s)", x, comp.State))
			}
		}
		progress := fmt.Sprintf("%d/%d nodes %s", len(xnames)-len(notYet), len(xnames), want)
		if len(notYet) == 0 {
			return progress, true, nil
		}
		return progress + "; not yet: " + xnameSample(notYet, 20), false, nil
	})
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == activities.ErrWaitTimedOut {
		return activities.Outcome{}, temporal.NewNonRetryableApplicationError(
			appErr.Message()+"; check those nodes' BOS session and consoles, then retry the step", activities.ErrWaitTimedOut, nil)
	}
	if err != nil {
		return activities.Outcome{}, err
	}
	return activities.NewOutcome(ctx, "%s", msg), nil
}

// componentsByID reads the HSM components of xnames, hsmIDBatch at a time.
func componentsByID(ctx context.Context, cl *csm.Client, xnames []string) (map[string]csm.Component, error) {
	out := make(map[string]csm.Component, len(xnames))
	read := 0
	for batch := range slices.Chunk(xnames, hsmIDBatch) {
		if read > 0 {
			activities.HeartbeatBetweenCalls(ctx, fmt.Sprintf("reading HSM: %d of %d nodes", read, len(xnames)))
		}
		comps, err := cl.Components(ctx, csm.ComponentQuery{IDs: batch})
		if err != nil {
			return nil, err
		}
		read += len(batch)
		for _, comp := range comps {
			out[comp.ID] = comp
		}
	}
	return out, nil
}

func hsmUp(state string) bool {
	return slices.ContainsFunc(upStates, func(s string) bool { return strings.EqualFold(s, state) })
}

func sortedXnames(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return slices.Compact(out)
}

// splitLimit splits a BOS limit (comma list) into its trimmed entries.
func splitLimit(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// xnameSample lists up to n entries and how many more there are.
func xnameSample(xs []string, n int) string {
	if len(xs) <= n {
		return strings.Join(xs, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(xs[:n], ", "), len(xs)-n)
}
