// Package api is the contract between the CLI, the worker and the workflows:
// task queue, workflow and query names, workflow-ID helpers and the typed
// request, status and report. It depends on nothing but the standard library
// so that every side can import it.
package api

import (
	"encoding/json"
	"time"
)

// TaskQueue is where the worker polls and the CLI starts runs, unless overridden.
const TaskQueue = "etcd-repopulate"

// Workflow type names, fixed so that histories survive refactors of Go names.
const (
	RepopulateWorkflow = "Repopulate"
	ServiceWorkflow    = "RepopulateService"
)

// Query and signal names.
const (
	// StatusQuery returns a RunStatus from the parent and a ServiceStatus from a child.
	StatusQuery = "status"
	// StepProgressSignal carries a child's ServiceStatus to its parent.
	StepProgressSignal = "step-progress"
	// DecideGateUpdate is the parent's Update that approves or rejects a
	// gate; its validator refuses a gate that is not waiting, so a wrong
	// approval changes nothing and the caller gets the reason.
	DecideGateUpdate = "decide-gate"
	// GateDecisionSignal carries a GateDecision. Sent to the parent (from the
	// Web UI or `temporal workflow signal`) it is routed to the child that
	// owns the gate; the parent also uses it to deliver an accepted Update.
	GateDecisionSignal = "gate-decision"
	// GateDecisionAckSignal carries a GateDecisionAck from the child that
	// owns a gate back to the parent: whether it took the decision.
	GateDecisionAckSignal = "gate-decision-ack"
)

// Descriptions of the signals, the Update and the query, shown by the Web
// UI and `temporal workflow metadata`.
const (
	StatusQueryDescription        = "Where the run (parent) or the service (child) stands: every service, step and gate, with times and messages."
	StepProgressSignalDescription = "Internal: a child's ServiceStatus, sent to its parent on every change."
	DecideGateUpdateDescription   = `Approve or reject a waiting gate; answers the gate as decided, or why not (what repopulate approve/reject send). Input: {"gate":"cps-unmount","decision":"approve","by":"NAME","note":"TEXT"}.`
	GateDecisionSignalDescription = `Approve or reject a waiting gate from the Web UI: send to the run (parent) workflow with input {"gate":"GATE","decision":"approve","by":"NAME","note":"TEXT"} (decision "reject" needs a note). A refused decision shows in the run's details and in repopulate status.`
	GateDecisionAckDescription    = "Internal: the child that owns a gate tells the parent whether it took a decision."
)

// Memo keys of a run, shown in the Web UI and read by `repopulate list`.
const (
	MemoServices = "services"
	MemoDryRun   = "dryRun"
	// MemoRelease is the worker's release setting when the run started
	// (the release the run acts for is in its status and report).
	MemoRelease = "release"
	// MemoProfile is what runs started before releases were modelled
	// carry instead of MemoRelease.
	MemoProfile = "profile"
)

// Service is a service whose etcd data the runbook repopulates; the
// catalog (internal/catalog) lists them.
type Service string

// The services the workflows name: their procedures have a step of their
// own (cps waits for bos and hmnfd; fas's follow-ups). Others need no
// constant: internal/catalog lists every service.
const (
	BOS         Service = "bos"
	BSS         Service = "bss"
	CPS         Service = "cps"
	CRUS        Service = "crus"
	ExternalDNS Service = "externaldns"
	FAS         Service = "fas"
	HMNFD       Service = "hmnfd"
	MEDS        Service = "meds"
	REDS        Service = "reds"
)

// ServiceWorkflowID is the deterministic ID of a service's child workflow.
func ServiceWorkflowID(runID string, s Service) string { return runID + "/" + string(s) }

// Request starts a run.
type Request struct {
	// Services to repopulate; empty means all nine.
	Services []string `json:"services,omitempty"`
	// DryRun reads everything and reports each action it would take; it changes nothing.
	DryRun bool `json:"dryRun,omitempty"`
	// Snapshot is what `repopulate snapshot` saved before the rebuild, when
	// the run was started with --snapshot.
	Snapshot *SnapshotInput `json:"snapshot,omitempty"`
	// Plan is what repopulate plan decided when the run was started with
	// --services auto: Services are the ones it found lost data.
	Plan *PlanVerdicts `json:"plan,omitempty"`
}

// PlanVerdicts are repopulate plan's verdicts a run was chosen by (start
// --services auto). Reasons are a sentence each: small enough for history.
type PlanVerdicts struct {
	// Release is the release plan decided for; the run detects its own.
	Release Release `json:"release,omitempty"`
	// Reference is when the data was known good (--since, else the
	// snapshot's time; zero without either), named by ReferenceFrom.
	Reference     time.Time     `json:"reference,omitzero"`
	ReferenceFrom string        `json:"referenceFrom,omitempty"`
	Services      []PlanVerdict `json:"services"`
}

// PlanVerdict is one service's verdict: "lost data", "intact" or "cannot
// tell" (internal/plan), and why.
type PlanVerdict struct {
	Service Service `json:"service"`
	Verdict string  `json:"verdict"`
	Reason  string  `json:"reason"`
}

// SnapshotInput is the part of a pre-rebuild snapshot a run uses. It holds
// no secrets and stays small enough for workflow history: templates are
// kept whole, subscriptions only as the subscribed xnames.
type SnapshotInput struct {
	// Dir is where the snapshot was read from, for the report.
	Dir   string    `json:"dir"`
	Taken time.Time `json:"taken"`
	// SessionTemplates are the BOS session templates, as BOS returned them
	// through APIs.BOSVersion().
	SessionTemplates []json.RawMessage `json:"sessionTemplates,omitempty"`
	// APIs are the API versions the snapshot was read through (zero: v2,
	// all snapshots recorded before releases were modelled).
	APIs APIVersions `json:"apis,omitzero"`
	// SubscribedXnames are the xnames HMNFD had subscriptions for.
	SubscribedXnames []string `json:"subscribedXnames,omitempty"`
	// FASActions are the FAS actions that had not finished.
	FASActions []SavedFASAction `json:"fasActions,omitempty"`
	// BootParameters are the snapshot's BSS boot parameters of named hosts,
	// grouped: one entry (csm.BootParams) per distinct kernel, initrd,
	// params and cloud-init, whose hosts are every host that had them.
	// repopulate start carries them only for a run of bss on a release
	// that restores BSS from the snapshot (restore-bss-from-snapshot).
	BootParameters []json.RawMessage `json:"bootParameters,omitempty"`
	// BootParametersSaved: the snapshot held BSS boot parameters and
	// BootParameters carries them (it may still be empty: BSS was).
	BootParametersSaved bool `json:"bootParametersSaved,omitempty"`
	// FASImages is how many firmware images FAS listed (nil: not known).
	FASImages *int `json:"fasImages,omitempty"`
	// BootParamDigests are BSS's node and tag entries as host → digest
	// (csm.BootParams.Digest), not the entries themselves (~850 B a node):
	// what the bss data check compares BSS against. Nil: not saved.
	BootParamDigests map[string]string `json:"bootParamDigests,omitempty"`
}

// SavedFASAction is a FAS action that was in progress when the snapshot was taken.
type SavedFASAction struct {
	ActionID string `json:"actionID"`
	State    string `json:"state"`
	Command  string `json:"command,omitempty"`
}

// Gate names: the places where a run waits for a person.
const (
	GateCPSUnmount   = "cps-unmount"
	GateCPSReboot    = "cps-reboot"
	GateBOSTemplates = "bos-templates"
	GateBSSRestore   = "bss-restore"
)

// Decision is what a person says at a gate.
type Decision string

const (
	Approve Decision = "approve"
	Reject  Decision = "reject"
)

// GateDecision approves or rejects a gate. It is the payload of both
// DecideGateUpdate and GateDecisionSignal.
type GateDecision struct {
	Gate     string   `json:"gate"`
	Decision Decision `json:"decision"`
	// By is who decided (the CLI sends user@host); Note is the approval's
	// note or the rejection's reason.
	By   string `json:"by,omitempty"`
	Note string `json:"note,omitempty"`
	// RequestID is set by the parent when it hands the decision to the
	// child, which echoes it in its GateDecisionAck.
	RequestID string `json:"requestId,omitempty"`
}

// GateDecisionAck is a child's answer to a GateDecision: taken, or refused
// with the reason (the gate expired first, was decided already, ...).
type GateDecisionAck struct {
	RequestID string   `json:"requestId,omitempty"`
	Gate      string   `json:"gate"`
	Decision  Decision `json:"decision"`
	By        string   `json:"by,omitempty"`
	Accepted  bool     `json:"accepted"`
	Reason    string   `json:"reason,omitempty"`
}

// RefusedDecision is a gate decision the run did not take, kept in status
// so that whoever sent it (a Web UI signal cannot answer) sees why.
type RefusedDecision struct {
	Gate     string    `json:"gate"`
	Decision Decision  `json:"decision"`
	By       string    `json:"by,omitempty"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// RefusedDecisionsKept bounds RunStatus.RefusedDecisions to the latest ones.
const RefusedDecisionsKept = 10

// GateState is where a gate stands.
type GateState string

const (
	GatePending  GateState = "pending"  // not reached yet
	GateWaiting  GateState = "waiting"  // waiting for approval now
	GateApproved GateState = "approved" // a person approved it
	GateRejected GateState = "rejected" // a person rejected it: the service stops
	GateExpired  GateState = "expired"  // its deadline passed first
	GateSkipped  GateState = "skipped"  // not needed (dry-run, nothing to do)
)

// GateStatus is one gate of a service.
type GateStatus struct {
	Name  string    `json:"name"`
	State GateState `json:"state"`
	// Action is what happens once the gate is approved; Details carries
	// longer instructions (the product-stream procedure for bos-templates).
	Action  string `json:"action"`
	Details string `json:"details,omitempty"`
	// ApproveCommand and RejectCommand are the exact CLI commands.
	ApproveCommand string    `json:"approveCommand,omitempty"`
	RejectCommand  string    `json:"rejectCommand,omitempty"`
	Opened         time.Time `json:"opened,omitzero"`
	Deadline       time.Time `json:"deadline,omitzero"`
	Decided        time.Time `json:"decided,omitzero"`
	By             string    `json:"by,omitempty"`
	Note           string    `json:"note,omitempty"`
}

// State is where a service or a step stands.
type State string

// States shown in status and reports.
const (
	Pending            State = "pending"
	Running            State = "running"
	Done               State = "done"
	Failed             State = "failed"
	Skipped            State = "skipped"
	WaitingForApproval State = "waiting-for-approval"
	Canceled           State = "canceled"
)

// Finished reports whether nothing more will happen in this state.
func (s State) Finished() bool { return s == Done || s == Failed || s == Skipped || s == Canceled }

// StepStatus is one step of a service's plan.
type StepStatus struct {
	Name    string    `json:"name"`
	State   State     `json:"state"`
	Started time.Time `json:"started,omitzero"`
	Ended   time.Time `json:"ended,omitzero"`
	// Attempt is the activity attempt that finished the step (1 = first try).
	Attempt int32  `json:"attempt,omitempty"`
	Message string `json:"message,omitempty"`
}

// ServiceStatus is one service's progress; a child reports it to its parent.
type ServiceStatus struct {
	Service    Service      `json:"service"`
	WorkflowID string       `json:"workflowId,omitempty"`
	State      State        `json:"state"`
	Message    string       `json:"message,omitempty"`
	Steps      []StepStatus `json:"steps"`
	// Gates are the service's approval gates, in the order they are reached.
	Gates []GateStatus `json:"gates,omitempty"`
	// FollowUps are what a person must still do for this service.
	FollowUps []string `json:"followUps,omitempty"`
	// Nodes and NodeProblems report a fan-out over nodes (HMNFD). Status
	// carries the first NodeProblemsInStatus problems only, so that it stays
	// small at any node count; `repopulate report --nodes` reads every one
	// from the hmnfd child's history (its RestartOrca results).
	Nodes        *NodeCounts   `json:"nodes,omitempty"`
	NodeProblems []NodeProblem `json:"nodeProblems,omitempty"`
	// OrcaUnits says which unit the nodes restarted: unit → the first
	// NodeProblemsInStatus hosts, and OrcaUnitCounts unit → how many. The
	// hmnfd child's RestartOrca results in history hold every host.
	OrcaUnits      map[string][]string `json:"orcaUnits,omitempty"`
	OrcaUnitCounts map[string]int      `json:"orcaUnitCounts,omitempty"`
	// SavedManifest is the saved copy of an object that was deleted and may
	// not have been created again; empty when nothing is missing.
	SavedManifest json.RawMessage `json:"savedManifest,omitempty"`
	// Evidence is what the service's last check looked at and found.
	Evidence *Evidence `json:"evidence,omitempty"`
	// Report numbers a child's progress reports (since change
	// publish-without-waiting), so that the parent can drop one that
	// arrives after a later one; 0 in reports of children before it.
	Report int `json:"report,omitempty"`
}

// Evidence is what the check closing a service looked at and what it
// found, a line each, for the report's evidence table.
type Evidence struct {
	Checked string `json:"checked"`
	Found   string `json:"found"`
	// OK: the check passed.
	OK bool `json:"ok"`
}

// DataCheck names a check that closes a service whose procedure alone
// does not show that its data is back (the catalog entry names it).
type DataCheck string

// The data checks.
const (
	// CheckBootParameters: BSS holds boot parameters for every node HSM
	// lists, equal to the snapshot's where one was given.
	CheckBootParameters DataCheck = "bss-boot-parameters"
	// CheckFASImages: FAS lists at least the snapshot's number of images
	// (some, without one) and the loader run logged no error.
	CheckFASImages DataCheck = "fas-images"
)

// RunStatus is the parent's answer to StatusQuery.
type RunStatus struct {
	RunID  string `json:"runId"`
	DryRun bool   `json:"dryRun,omitempty"`
	// Release is the CSM release the run acts for; Detection says how it
	// was found.
	Release   Release           `json:"release,omitempty"`
	Detection *ReleaseDetection `json:"detection,omitempty"`
	// Profile is what runs before releases were modelled reported instead.
	Profile string `json:"profile,omitempty"`
	// Notes are what preflight decided that the plans alone do not say
	// (which FAS procedure, and why).
	Notes    []string        `json:"notes,omitempty"`
	Snapshot string          `json:"snapshot,omitempty"` // directory of the snapshot used, if any
	State    State           `json:"state"`
	Message  string          `json:"message,omitempty"`
	Started  time.Time       `json:"started"`
	Ended    time.Time       `json:"ended,omitzero"`
	Services []ServiceStatus `json:"services"`
	// RefusedDecisions are the latest gate decisions the run refused, with
	// the reason, newest last (at most RefusedDecisionsKept).
	RefusedDecisions []RefusedDecision `json:"refusedDecisions,omitempty"`

	// ChosenByPlan is the request's Plan: why these services (start --services auto).
	ChosenByPlan *PlanVerdicts `json:"chosenByPlan,omitempty"`
}

// Report is the parent's result: the final RunStatus. When any service failed
// the parent fails with error type ServicesFailedError and the Report as the
// error's details, so that the Web UI shows the run as failed and the report
// is still there to read.
type Report = RunStatus

// Error types of non-retryable failures, for `errors.As` and the report.
const (
	InvalidRequestError  = "InvalidRequest"
	PreflightFailedError = "PreflightFailed"
	ServicesFailedError  = "ServicesFailed"
	ServiceFailedError   = "ServiceFailed"
)

// ObjectRef names one Kubernetes object.
type ObjectRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (r ObjectRef) String() string { return r.Namespace + "/" + r.Name }

// PodSet names the pods a label selector picks in a namespace.
type PodSet struct {
	Namespace string `json:"namespace"`
	Selector  string `json:"selector"`
}

func (p PodSet) String() string { return p.Namespace + " pods " + p.Selector }

// Procedure is how a service's data is repopulated.
type Procedure string

// Procedures of the runbook.
const (
	// RerunJob saves a Job, deletes it and creates it again from the copy.
	RerunJob Procedure = "rerun-job"
	// RestartPods deletes the selected pods and waits for Ready replacements.
	RestartPods Procedure = "restart-pods"
	// RecreateEtcdCluster saves an EtcdCluster, deletes it and creates it from the copy.
	RecreateEtcdCluster Procedure = "recreate-etcdcluster"
	// RestartCRUS follows unfinished CRUS sessions, restarts the cray-crus
	// pods and checks that the sessions are visible again.
	RestartCRUS Procedure = "restart-crus"
	// RestartOrca restarts the orca daemon on Ready compute nodes and NCNs
	// over SSH and checks that HMNFD has their subscriptions again.
	RestartOrca Procedure = "restart-orca"
	// RunFASLoaderAPI runs the FAS loader through the API (CSM 1.2 and later).
	RunFASLoaderAPI Procedure = "fas-loader-api"
	// RemountCPS finds the compute nodes that boot their root file system
	// from CPS and, behind gates cps-unmount and cps-reboot, shuts them
	// down and boots them again through BOS.
	RemountCPS Procedure = "cps-remount"
	// RestoreBOSTemplates puts the snapshot's BOS session templates back,
	// or waits at gate bos-templates for a person to rebuild them.
	RestoreBOSTemplates Procedure = "restore-bos-templates"
	// CheckBOSTemplates lists the BOS session templates and validates each:
	// from CSM 1.3 they live in Redis, not etcd, so there is nothing to restore.
	CheckBOSTemplates Procedure = "check-bos-templates"
	// RestoreBSSFromSnapshot compares BSS's boot parameters with the
	// snapshot's and, behind gate bss-restore, writes the entries that are
	// missing or differ (CSM 1.5+, where the runbook restores BSS from its
	// etcd backup instead of re-running cray-reds-init).
	RestoreBSSFromSnapshot Procedure = "restore-bss-from-snapshot"
	// NotInRelease marks a service the CSM release does not have (or, with
	// FollowUps, one whose procedure is left to a person).
	NotInRelease Procedure = "not-in-release"
)

// ServicePlan is what a child workflow does for one service. The worker's
// configuration is resolved into plans once, at the start of a run, so that
// the targets are in history and a worker restarted with another config file
// cannot change a run half-way.
type ServicePlan struct {
	Service   Service   `json:"service"`
	Procedure Procedure `json:"procedure"`
	// Object is the Job or EtcdCluster (RerunJob, RecreateEtcdCluster).
	Object ObjectRef `json:"object,omitzero"`
	// Pods are the pods to restart (RestartPods).
	Pods PodSet `json:"pods,omitzero"`
	// CRUS and HMNFD carry those procedures' settings.
	CRUS  *CRUSPlan  `json:"crus,omitempty"`
	HMNFD *HMNFDPlan `json:"hmnfd,omitempty"`
	CPS   *CPSPlan   `json:"cps,omitempty"`
	// EtcdBackup is the CronJob whose last successful run is the newest
	// periodic backup of the service's etcd cluster
	// (restore-bss-from-snapshot shows its age at its gate).
	EtcdBackup ObjectRef `json:"etcdBackup,omitzero"`
	// Gates bounds the service's approval gates, if it has any.
	Gates GatePolicy `json:"gates,omitzero"`
	// Reason explains a NotInRelease procedure.
	Reason string `json:"reason,omitempty"`
	// FollowUps are what a person must do for a NotInRelease service.
	FollowUps []string `json:"followUps,omitempty"`
	Timings   Timings  `json:"timings"`
	// Release is the CSM release the plan was made for, and APIs the API
	// versions its activities speak (zero: BOS v2, HMNFD v2, what plans
	// recorded before releases were modelled spoke).
	Release Release     `json:"release,omitempty"`
	APIs    APIVersions `json:"apis,omitzero"`
	// DataCheck is the check run as the service's last step; empty in
	// plans recorded before data checks existed, which never run one.
	DataCheck DataCheck `json:"dataCheck,omitempty"`
}

// Timings bound a service's activities.
type Timings struct {
	// Wait bounds waiting for the service to be healthy again (job complete,
	// pods ready, cluster running), across activity retries.
	Wait time.Duration `json:"wait"`
	// Delete bounds waiting for a deleted object to be gone.
	Delete time.Duration `json:"delete"`
	// Poll is how often waits look again.
	Poll time.Duration `json:"poll"`
	// Heartbeat is how long a waiting step may go silent before Temporal
	// treats its worker as lost and retries it elsewhere.
	Heartbeat time.Duration `json:"heartbeat"`
	// Attempts caps the tries of one activity on transient errors.
	Attempts int32 `json:"attempts"`
}

// CRUSPlan bounds following CRUS sessions.
type CRUSPlan struct {
	// Poll is how often an unfinished session is looked at again.
	Poll time.Duration `json:"poll"`
	// StuckAfter: a session whose state and messages have not changed for
	// this long is reported stuck instead of being waited for.
	StuckAfter time.Duration `json:"stuckAfter"`
}

// HMNFDPlan is who gets the orca restart and how.
type HMNFDPlan struct {
	// Unit is the single unit of plans recorded before Units existed.
	Unit string `json:"unit,omitempty"`
	// Units are the systemd units tried in order on each node: a unit the
	// node does not have (systemctl exit 5) moves on to the next.
	Units []string `json:"units,omitempty"`
	// Pods are HMNFD's own pods, restarted when HMNFD is not ready before
	// orca is restarted; empty in plans recorded before that step existed.
	Pods PodSet `json:"pods,omitzero"`
	// PodsReadyTimeout bounds waiting for the restarted HMNFD to be ready.
	PodsReadyTimeout time.Duration `json:"podsReadyTimeout,omitempty"`
	// NCNGroups are pdsh host ranges of the NCNs that run orca.
	NCNGroups []string `json:"ncnGroups"`
	// BatchSize is the number of nodes one activity restarts.
	BatchSize int `json:"batchSize"`
	// BatchesInFlight is how many batch activities run at once; plans
	// made before batches overlapped lack it (the procedure's defaults
	// fill it).
	BatchesInFlight int `json:"batchesInFlight,omitempty"`
	// MaxFailedPercent: the service fails only when more nodes than this
	// share failed or were unreachable.
	MaxFailedPercent float64 `json:"maxFailedPercent"`
	// VerifyTimeout bounds waiting for HMNFD to list every restarted compute
	// node's subscription again.
	VerifyTimeout time.Duration `json:"verifyTimeout"`
	// BatchTimeout bounds one batch: enough waves of the SSH fan-out, each
	// bounded by the connect and command timeouts.
	BatchTimeout time.Duration `json:"batchTimeout"`
}

// OrcaUnits are the units to try on each node, oldest plans included.
func (h HMNFDPlan) OrcaUnits() []string {
	if len(h.Units) > 0 {
		return h.Units
	}
	return []string{h.Unit}
}

// CPSPlan says which nodes the CPS procedure reboots and how long it waits.
type CPSPlan struct {
	// Nodes are xnames from the configuration; empty means derive them from
	// BOS templates whose boot sets use the CPS root file system provider,
	// intersected with the nodes HSM reports up.
	Nodes []string `json:"nodes,omitempty"`
	// Template is the BOS session template used for Nodes.
	Template string `json:"template,omitempty"`
	// ShutdownTimeout and BootTimeout bound waiting for HSM to report the
	// nodes Off, then Ready.
	ShutdownTimeout time.Duration `json:"shutdownTimeout"`
	BootTimeout     time.Duration `json:"bootTimeout"`
}

// What a gate does when its deadline passes.
const (
	OnDeadlineFail = "fail"
	OnDeadlineSkip = "skip"
)

// GatePolicy bounds waiting at a gate.
type GatePolicy struct {
	// Deadline is how long a gate waits; 0 waits until someone decides.
	Deadline time.Duration `json:"deadline,omitempty"`
	// OnDeadline is OnDeadlineFail or OnDeadlineSkip.
	OnDeadline string `json:"onDeadline,omitempty"`
}

// NodeProblemsInStatus is how many node problems a status carries.
const NodeProblemsInStatus = 20

// NodeCounts summarises a fan-out.
type NodeCounts struct {
	Total       int `json:"total"`
	OK          int `json:"ok"`
	Failed      int `json:"failed"`
	Unreachable int `json:"unreachable"`
}

// NodeProblem is one node that did not restart.
type NodeProblem struct {
	Host   string `json:"host"`
	Status string `json:"status"` // failed | unreachable
	Reason string `json:"reason"`
}
