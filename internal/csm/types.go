package csm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"sync"
)

// ---- HSM ---------------------------------------------------------------

// Component is an HSM component (GET /apis/smd/hsm/v2/State/Components).
type Component struct {
	ID      string `json:"ID"`
	Type    string `json:"Type"`
	State   string `json:"State"`
	Flag    string `json:"Flag,omitempty"`
	Enabled bool   `json:"Enabled"`
	Role    string `json:"Role,omitempty"`
	SubRole string `json:"SubRole,omitempty"`
	NID     int    `json:"NID,omitempty"`
	NetType string `json:"NetType,omitempty"`
	Arch    string `json:"Arch,omitempty"`
	Class   string `json:"Class,omitempty"`
}

// Hostname is the node's name on the node management network, as the
// runbook's awk printf("nid%06d-nmn") builds it.
func (c Component) Hostname() string { return fmt.Sprintf("nid%06d-nmn", c.NID) }

// ComponentArray is HSM's list envelope.
type ComponentArray struct {
	Components []Component `json:"Components"`
}

// ---- HMNFD -------------------------------------------------------------

// Subscription is an HMNFD state-change-notification subscription, as both
// /hmi/v1 and /hmi/v2 list it.
type Subscription struct {
	Subscriber          string   `json:"Subscriber"`
	SubscriberComponent string   `json:"SubscriberComponent,omitempty"`
	SubscriberAgent     string   `json:"SubscriberAgent,omitempty"`
	Components          []string `json:"Components,omitempty"`
	Roles               []string `json:"Roles,omitempty"`
	SubRoles            []string `json:"SubRoles,omitempty"`
	States              []string `json:"States,omitempty"`
	SoftwareStatus      []string `json:"SoftwareStatus,omitempty"`
	Enabled             bool     `json:"Enabled,omitempty"`
	// URL is the JSON field "Url": where HMNFD posts notifications.
	URL string `json:"Url,omitempty"`
}

// Xname is the subscribing node: SubscriberComponent (HMNFD 1.12+, only
// when the subscription has an agent), else the part of Subscriber after
// "@" (agent@xname), else Subscriber itself (a bare xname; HMNFD 1.8.5,
// CSM 1.0, has no SubscriberComponent). HMNFD returns it lower-case:
// compare with strings.EqualFold.
func (s Subscription) Xname() string {
	if s.SubscriberComponent != "" {
		return s.SubscriberComponent
	}
	if _, x, ok := strings.Cut(s.Subscriber, "@"); ok {
		return x
	}
	return s.Subscriber
}

// SubscriptionList is HMNFD's list envelope.
type SubscriptionList struct {
	SubscriptionList []Subscription `json:"SubscriptionList"`
}

// ---- CRUS --------------------------------------------------------------

// CRUS session states.
const (
	CRUSCreated  = "CREATED"
	CRUSReady    = "READY"
	CRUSDeleting = "DELETING"
	CRUSUpdating = "UPDATING"
)

// CRUSSession is a Compute Rolling Upgrade Service session
// (GET /apis/crus/session[/{upgrade_id}]).
type CRUSSession struct {
	APIVersion          string   `json:"api_version,omitempty"`
	Completed           bool     `json:"completed"`
	FailedLabel         string   `json:"failed_label,omitempty"`
	Kind                string   `json:"kind,omitempty"`
	Messages            []string `json:"messages"`
	StartingLabel       string   `json:"starting_label,omitempty"`
	State               string   `json:"state,omitempty"`
	UpgradeID           string   `json:"upgrade_id"`
	UpgradeStepSize     int      `json:"upgrade_step_size,omitempty"`
	UpgradeTemplateID   string   `json:"upgrade_template_id,omitempty"`
	UpgradingLabel      string   `json:"upgrading_label,omitempty"`
	WorkloadManagerType string   `json:"workload_manager_type,omitempty"`
}

// LastMessage returns the newest progress message, or "".
func (s CRUSSession) LastMessage() string {
	if len(s.Messages) == 0 {
		return ""
	}
	return s.Messages[len(s.Messages)-1]
}

// ---- FAS ---------------------------------------------------------------

// LoaderStatus is GET /apis/fas/v1/loader.
type LoaderStatus struct {
	LoaderStatus  string        `json:"loaderStatus"` // "busy" | "ready"
	LoaderRunList LoaderRunList `json:"loaderRunList"`
}

// Busy reports whether the loader is running.
func (s LoaderStatus) Busy() bool { return strings.EqualFold(s.LoaderStatus, "busy") }

// LoaderRunList holds loader run IDs. FAS's code answers
// [{"loaderRunID": "..."}] on every release (its swagger says plain strings,
// which also decode).
type LoaderRunList []string

// UnmarshalJSON accepts ["id", ...] and [{"loaderRunID":"id"}, ...].
func (l *LoaderRunList) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make(LoaderRunList, 0, len(raw))
	for _, r := range raw {
		var s string
		if err := json.Unmarshal(r, &s); err == nil {
			out = append(out, s)
			continue
		}
		var o struct {
			LoaderRunID string `json:"loaderRunID"`
		}
		if err := json.Unmarshal(r, &o); err != nil {
			return fmt.Errorf("loaderRunList entry %s: want a string or {\"loaderRunID\":...}", r)
		}
		out = append(out, o.LoaderRunID)
	}
	*l = out
	return nil
}

// LoaderRun is GET /apis/fas/v1/loader/{loaderRunID}.
type LoaderRun struct {
	LoaderRunOutput []string `json:"loaderRunOutput"`
}

// FASImage is one entry of GET /apis/fas/v1/images.
type FASImage struct {
	ImageID                           string   `json:"imageID"`
	CreateTime                        string   `json:"createTime,omitempty"`
	DeviceType                        string   `json:"deviceType,omitempty"`
	Manufacturer                      string   `json:"manufacturer,omitempty"`
	Models                            []string `json:"models,omitempty"`
	SoftwareIDs                       []string `json:"softwareIds,omitempty"`
	Target                            string   `json:"target,omitempty"`
	Tags                              []string `json:"tags,omitempty"`
	FirmwareVersion                   string   `json:"firmwareVersion,omitempty"`
	SemanticFirmwareVersion           string   `json:"semanticFirmwareVersion,omitempty"`
	UpdateURI                         string   `json:"updateURI,omitempty"`
	NeedManualReboot                  bool     `json:"needManualReboot,omitempty"`
	WaitTimeBeforeManualRebootSeconds int      `json:"waitTimeBeforeManualRebootSeconds,omitempty"`
	WaitTimeAfterRebootSeconds        int      `json:"waitTimeAfterRebootSeconds,omitempty"`
	PollingSpeedSeconds               int      `json:"pollingSpeedSeconds,omitempty"`
	ForceResetType                    string   `json:"forceResetType,omitempty"`
	S3URL                             string   `json:"s3URL,omitempty"`
	AllowableDeviceStates             []string `json:"allowableDeviceStates,omitempty"`
}

// FASCommand is an action's command block.
type FASCommand struct {
	Version                    string `json:"version,omitempty"`
	Tag                        string `json:"tag,omitempty"`
	OverrideDryrun             bool   `json:"overrideDryrun"`
	RestoreNotPossibleOverride bool   `json:"restoreNotPossibleOverride,omitempty"`
	TimeLimit                  int    `json:"timeLimit,omitempty"`
	Description                string `json:"description,omitempty"`
}

// FASOperationCounts counts an action's operations by state.
type FASOperationCounts struct {
	Total         int `json:"total"`
	Initial       int `json:"initial"`
	Configured    int `json:"configured"`
	Blocked       int `json:"blocked"`
	NeedsVerified int `json:"needsVerified"`
	Verifying     int `json:"verifying"`
	InProgress    int `json:"inProgress"`
	Failed        int `json:"failed"`
	Succeeded     int `json:"succeeded"`
	NoOperation   int `json:"noOperation"`
	NoSolution    int `json:"noSolution"`
	Aborted       int `json:"aborted"`
	Unknown       int `json:"unknown"`
}

// FASAction is one entry of GET /apis/fas/v1/actions.
type FASAction struct {
	ActionID        string             `json:"actionID"`
	SnapshotID      string             `json:"snapshotID,omitempty"`
	Command         FASCommand         `json:"command"`
	StartTime       string             `json:"startTime,omitempty"`
	EndTime         string             `json:"endTime,omitempty"`
	State           string             `json:"state"`
	OperationCounts FASOperationCounts `json:"operationCounts"`
	BlockedBy       []string           `json:"blockedBy,omitempty"`
	Errors          []string           `json:"errors,omitempty"`
	Description     string             `json:"description,omitempty"`
}

// ---- BOS v2 ------------------------------------------------------------

// SessionTemplate is a BOS v2 session template. Members the struct does not
// model, and modelled members that arrived empty, are kept in Extra so that
// a template read, edited and PUT back loses nothing.
type SessionTemplate struct {
	Name        string             `json:"name,omitempty"`
	Tenant      string             `json:"tenant,omitempty"`
	Description string             `json:"description,omitempty"`
	EnableCFS   *bool              `json:"enable_cfs,omitempty"`
	CFS         *CFSParameters     `json:"cfs,omitempty"`
	BootSets    map[string]BootSet `json:"boot_sets,omitempty"`
	Links       []Link             `json:"links,omitempty"`

	Extra map[string]json.RawMessage `json:"-"`
}

// CFSParameters is a template's or boot set's "cfs" block.
type CFSParameters struct {
	Configuration string `json:"configuration,omitempty"`

	Extra map[string]json.RawMessage `json:"-"`
}

// BootSet is one entry of a template's boot_sets.
type BootSet struct {
	Name                      string         `json:"name,omitempty"`
	Path                      string         `json:"path,omitempty"`
	Type                      string         `json:"type,omitempty"`
	Etag                      string         `json:"etag,omitempty"`
	KernelParameters          string         `json:"kernel_parameters,omitempty"`
	NodeList                  []string       `json:"node_list,omitempty"`
	NodeRolesGroups           []string       `json:"node_roles_groups,omitempty"`
	NodeGroups                []string       `json:"node_groups,omitempty"`
	RootfsProvider            string         `json:"rootfs_provider,omitempty"`
	RootfsProviderPassthrough string         `json:"rootfs_provider_passthrough,omitempty"`
	Arch                      string         `json:"arch,omitempty"`
	CFS                       *CFSParameters `json:"cfs,omitempty"`

	Extra map[string]json.RawMessage `json:"-"`
}

// Link is a HATEOAS link.
type Link struct {
	Href string `json:"href,omitempty"`
	Rel  string `json:"rel,omitempty"`
}

type sessionTemplateFields SessionTemplate
type cfsFields CFSParameters
type bootSetFields BootSet

// UnmarshalJSON keeps unmodelled members in Extra.
func (t *SessionTemplate) UnmarshalJSON(b []byte) error {
	var f sessionTemplateFields
	extra, err := unmarshalKeeping(b, &f)
	if err != nil {
		return err
	}
	f.Extra = extra
	*t = SessionTemplate(f)
	return nil
}

// MarshalJSON writes the modelled fields and Extra.
func (t SessionTemplate) MarshalJSON() ([]byte, error) {
	return marshalKeeping(sessionTemplateFields(t), t.Extra)
}

// UnmarshalJSON keeps unmodelled members in Extra.
func (p *CFSParameters) UnmarshalJSON(b []byte) error {
	var f cfsFields
	extra, err := unmarshalKeeping(b, &f)
	if err != nil {
		return err
	}
	f.Extra = extra
	*p = CFSParameters(f)
	return nil
}

// MarshalJSON writes the modelled fields and Extra.
func (p CFSParameters) MarshalJSON() ([]byte, error) {
	return marshalKeeping(cfsFields(p), p.Extra)
}

// UnmarshalJSON keeps unmodelled members in Extra.
func (s *BootSet) UnmarshalJSON(b []byte) error {
	var f bootSetFields
	extra, err := unmarshalKeeping(b, &f)
	if err != nil {
		return err
	}
	f.Extra = extra
	*s = BootSet(f)
	return nil
}

// MarshalJSON writes the modelled fields and Extra.
func (s BootSet) MarshalJSON() ([]byte, error) {
	return marshalKeeping(bootSetFields(s), s.Extra)
}

// HasNodes reports whether the boot set names its nodes in one of the ways
// BOS requires (node_list, node_roles_groups or node_groups).
func (s BootSet) HasNodes() bool {
	return len(s.NodeList) > 0 || len(s.NodeRolesGroups) > 0 || len(s.NodeGroups) > 0
}

// BOSSessionRequest is the body of POST /apis/bos/v2/sessions.
type BOSSessionRequest struct {
	// Name is optional; BOS generates one when it is empty and answers 409
	// when a session of that name exists.
	Name         string `json:"name,omitempty"`
	TemplateName string `json:"template_name"`
	// Operation is "boot", "reboot" or "shutdown".
	Operation string `json:"operation"`
	// Limit is a comma-separated list of xnames (or groups/roles).
	Limit           string `json:"limit,omitempty"`
	Stage           bool   `json:"stage,omitempty"`
	IncludeDisabled bool   `json:"include_disabled,omitempty"`
}

// BOSSessionStatus is a BOS v2 session's status block.
type BOSSessionStatus struct {
	Status    string `json:"status,omitempty"` // pending | running | complete
	StartTime string `json:"start_time,omitempty"`
	EndTime   string `json:"end_time,omitempty"`
	Error     string `json:"error,omitempty"`
}

// BOSSession is a BOS v2 session as returned by POST /apis/bos/v2/sessions.
type BOSSession struct {
	Name            string           `json:"name"`
	Tenant          string           `json:"tenant,omitempty"`
	TemplateName    string           `json:"template_name"`
	Operation       string           `json:"operation"`
	Limit           string           `json:"limit,omitempty"`
	Stage           bool             `json:"stage,omitempty"`
	Components      string           `json:"components,omitempty"`
	IncludeDisabled bool             `json:"include_disabled,omitempty"`
	Status          BOSSessionStatus `json:"status"`
}

// ---- CPS ---------------------------------------------------------------

// CPSContent is one entry of GET /apis/v2/cps/contents (an array). Other
// members are kept in Extra.
type CPSContent struct {
	S3Path string `json:"s3path"`
	Etag   string `json:"etag,omitempty"`
	// Transports are the transport types the content is projected over
	// (e.g. ["dvs"]).
	Transports []string `json:"transports,omitempty"`

	Extra map[string]json.RawMessage `json:"-"`
}

// CPSTransports is GET /apis/v2/cps/transports?s3path=&transport=: one
// object per content. Other members are kept in Extra.
type CPSTransports struct {
	ArtifactID string         `json:"artifactID,omitempty"`
	Transports []CPSTransport `json:"transports,omitempty"`

	Extra map[string]json.RawMessage `json:"-"`
}

// ReadyForMount counts the transports ready for clients to mount.
func (t CPSTransports) ReadyForMount() int {
	n := 0
	for _, tr := range t.Transports {
		if tr.ReadyForMount {
			n++
		}
	}
	return n
}

// CPSTransport is one entry of a CPSTransports' transports. Other members
// (ready, total, status, exportPath, servers) are kept in Extra.
type CPSTransport struct {
	Type          string `json:"type,omitempty"`
	ReadyForMount bool   `json:"readyForMount"`

	Extra map[string]json.RawMessage `json:"-"`
}

type cpsContentFields CPSContent
type cpsTransportFields CPSTransport
type cpsTransportsFields CPSTransports

// UnmarshalJSON keeps unmodelled members in Extra.
func (c *CPSTransports) UnmarshalJSON(b []byte) error {
	var f cpsTransportsFields
	extra, err := unmarshalKeeping(b, &f)
	if err != nil {
		return err
	}
	f.Extra = extra
	*c = CPSTransports(f)
	return nil
}

// MarshalJSON writes the modelled fields and Extra.
func (c CPSTransports) MarshalJSON() ([]byte, error) {
	return marshalKeeping(cpsTransportsFields(c), c.Extra)
}

// UnmarshalJSON keeps unmodelled members in Extra.
func (c *CPSContent) UnmarshalJSON(b []byte) error {
	var f cpsContentFields
	extra, err := unmarshalKeeping(b, &f)
	if err != nil {
		return err
	}
	f.Extra = extra
	*c = CPSContent(f)
	return nil
}

// MarshalJSON writes the modelled fields and Extra.
func (c CPSContent) MarshalJSON() ([]byte, error) {
	return marshalKeeping(cpsContentFields(c), c.Extra)
}

// UnmarshalJSON keeps unmodelled members in Extra.
func (c *CPSTransport) UnmarshalJSON(b []byte) error {
	var f cpsTransportFields
	extra, err := unmarshalKeeping(b, &f)
	if err != nil {
		return err
	}
	f.Extra = extra
	*c = CPSTransport(f)
	return nil
}

// MarshalJSON writes the modelled fields and Extra.
func (c CPSTransport) MarshalJSON() ([]byte, error) {
	return marshalKeeping(cpsTransportFields(c), c.Extra)
}

// ---- JSON that keeps what it does not model ------------------------------

var knownKeysCache sync.Map // reflect.Type -> map[string]bool

// knownKeys lists the JSON member names of a struct type's fields.
func knownKeys(t reflect.Type) map[string]bool {
	if v, ok := knownKeysCache.Load(t); ok {
		return v.(map[string]bool)
	}
	keys := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys[name] = true
	}
	knownKeysCache.Store(t, keys)
	return keys
}

// unmarshalKeeping decodes b into the struct pointed to by fields and returns
// the members it does not model plus modelled members whose value is empty
// (null, "", false, 0, [], {}), which omitempty would otherwise drop.
func unmarshalKeeping(b []byte, fields any) (map[string]json.RawMessage, error) {
	if err := json.Unmarshal(b, fields); err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	known := knownKeys(reflect.TypeOf(fields).Elem())
	var extra map[string]json.RawMessage
	for k, v := range all {
		if known[k] && !emptyJSON(v) {
			continue
		}
		if extra == nil {
			extra = map[string]json.RawMessage{}
		}
		extra[k] = v
	}
	return extra, nil
}

// marshalKeeping encodes fields and adds the members of extra it does not
// set itself.
func marshalKeeping(fields any, extra map[string]json.RawMessage) ([]byte, error) {
	b, err := json.Marshal(fields)
	if err != nil || len(extra) == 0 {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	out := maps.Clone(extra)
	maps.Copy(out, m)
	return json.Marshal(out)
}

func emptyJSON(v json.RawMessage) bool {
	switch string(bytes.TrimSpace(v)) {
	case "null", `""`, "false", "0", "[]", "{}":
		return true
	}
	var x any
	if json.Unmarshal(v, &x) != nil {
		return false
	}
	switch t := x.(type) {
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	case float64:
		return t == 0
	}
	return false
}
