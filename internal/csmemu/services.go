package csmemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/csmops/etcd-repopulate/internal/csm"
)

func (e *Emulator) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET "+csm.PathHSMComponents, e.getComponents)

	m.HandleFunc("GET "+csm.PathHMNFDSubscriptions, e.getSubscriptions)
	m.HandleFunc("GET "+csm.PathHMNFDSubscriptions+"/{xname}/agents", e.getSubscriptions)

	m.HandleFunc("GET "+csm.PathCRUSSession, e.listCRUS)
	m.HandleFunc("GET "+csm.PathCRUSSession+"/{id}", e.getCRUS)

	m.HandleFunc("GET "+csm.PathFASLoader, e.getLoader)
	m.HandleFunc("POST "+csm.PathFASLoaderNexus, e.postLoaderNexus)
	m.HandleFunc("GET "+csm.PathFASLoader+"/{id}", e.getLoaderRun)
	m.HandleFunc("GET "+csm.PathFASImages, e.getFASImages)
	m.HandleFunc("GET "+csm.PathFASActions, e.getFASActions)

	m.HandleFunc("GET "+csm.PathBOSSessionTemplates, e.listTemplates)
	m.HandleFunc("GET "+csm.PathBOSSessionTemplates+"/{name}", e.getTemplate)
	m.HandleFunc("PUT "+csm.PathBOSSessionTemplates+"/{name}", e.putTemplate)
	m.HandleFunc("DELETE "+csm.PathBOSSessionTemplates+"/{name}", e.deleteTemplate)
	m.HandleFunc("GET "+csm.PathBOSSessionTemplatesV+"/{name}", e.validTemplate)
	m.HandleFunc("POST "+csm.PathBOSSessions, e.postBOSSession)
	m.HandleFunc("GET "+csm.PathBOSSessions, e.listBOSSessions)
	m.HandleFunc("GET "+csm.PathBOSSessions+"/{name}", e.getBOSSession)

	m.HandleFunc("GET "+csm.PathCPSContents, e.getCPSContents)
	m.HandleFunc("GET "+csm.PathCPSTransports, e.getCPSTransports)

	m.HandleFunc("POST /_csmemu/subscribe/{xname}", e.ctlSubscribe)
	m.HandleFunc("POST /_csmemu/unsubscribe/{xname}", e.ctlUnsubscribe)
	m.HandleFunc("POST /_csmemu/subscribe-ready-compute", e.ctlSubscribeReady)
	m.HandleFunc("POST /_csmemu/clear-subscriptions", e.ctlClearSubscriptions)
	m.HandleFunc("POST /_csmemu/orca-restarted/{host}", e.ctlOrcaRestarted)
	m.HandleFunc("POST /_csmemu/clear-templates", e.ctlClearTemplates)
	m.HandleFunc("POST /_csmemu/fail", e.ctlFail)
	m.HandleFunc("POST /_csmemu/fas-busy", e.ctlFASBusy)
	m.HandleFunc("POST /_csmemu/bos-timing", e.ctlBOSTiming)
	m.HandleFunc("POST /_csmemu/bos-stuck", e.ctlBOSStuck)
	m.HandleFunc("GET /_csmemu/stats", e.ctlStats)
	return m
}

// ---- HSM -----------------------------------------------------------------

// SetComponents replaces the HSM component list.
func (e *Emulator) SetComponents(cs []csm.Component) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.components = slices.Clone(cs)
}

// Components returns a copy of the HSM component list, with the changes
// of BOS sessions due by now.
func (e *Emulator) Components() []csm.Component {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceBOSLocked(time.Now())
	return slices.Clone(e.components)
}

// ComputeNodes builds n Ready compute nodes x1000c0s{i}b0n0 with NIDs 1..n
// (slot i = NID-1), Role Compute, Enabled, Flag OK.
func ComputeNodes(n int) []csm.Component {
	out := make([]csm.Component, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, csm.Component{
			ID: fmt.Sprintf("x1000c0s%db0n0", i), Type: "Node", State: "Ready", Flag: "OK", Enabled: true,
			Role: "Compute", NID: i + 1, NetType: "Sling", Arch: "X86", Class: "Mountain",
		})
	}
	return out
}

// matchAny reports whether v equals (case-insensitively) one of want, or
// want is empty.
func matchAny(v string, want []string) bool {
	if len(want) == 0 {
		return true
	}
	for _, w := range want {
		if strings.EqualFold(v, w) {
			return true
		}
	}
	return false
}

func (e *Emulator) getComponents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var enabled []string
	for _, v := range q["enabled"] {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeProblem(w, http.StatusBadRequest, "Bad Request", "invalid enabled value "+strconv.Quote(v))
			return
		}
		enabled = append(enabled, strconv.FormatBool(b))
	}
	e.mu.Lock()
	e.advanceBOSLocked(time.Now())
	out := []csm.Component{}
	for _, c := range e.components {
		if matchAny(c.ID, q["id"]) && matchAny(c.Type, q["type"]) && matchAny(c.Role, q["role"]) &&
			matchAny(c.SubRole, q["subrole"]) && matchAny(c.State, q["state"]) && matchAny(c.Flag, q["flag"]) &&
			matchAny(strconv.FormatBool(c.Enabled), enabled) {
			out = append(out, c)
		}
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, csm.ComponentArray{Components: out})
}

// ---- HMNFD ---------------------------------------------------------------

// OrcaAgent is the SubscriberAgent of subscriptions made by Subscribe.
const OrcaAgent = "hmnfd-orca"

// OrcaSubscription is the subscription the orca daemon makes for xname when
// it is (re)started. The Url is made up; HMNFD only stores it here.
func OrcaSubscription(xname string) csm.Subscription {
	return csm.Subscription{
		Subscriber:          OrcaAgent + "@" + xname,
		SubscriberComponent: xname,
		SubscriberAgent:     OrcaAgent,
		Components:          []string{xname},
		Roles:               []string{"Compute"},
		States:              []string{"Ready", "On", "Off", "Standby", "Halt", "Empty"},
		Enabled:             true,
		URL:                 "http://" + xname + ":28600/orca/scn",
	}
}

// SetSubscriptions replaces the HMNFD subscriptions.
func (e *Emulator) SetSubscriptions(subs []csm.Subscription) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs = slices.Clone(subs)
}

// Subscriptions returns a copy of the HMNFD subscriptions.
func (e *Emulator) Subscriptions() []csm.Subscription {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.subs)
}

// Subscribe adds (or replaces) the subscription orca makes for xname when
// restarted: see OrcaSubscription.
func (e *Emulator) Subscribe(xname string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subscribeLocked(xname)
}

func (e *Emulator) subscribeLocked(xname string) {
	s := OrcaSubscription(xname)
	for i := range e.subs {
		if e.subs[i].Subscriber == s.Subscriber {
			e.subs[i] = s
			return
		}
	}
	e.subs = append(e.subs, s)
}

// SubscribeReadyCompute subscribes every Ready compute node, as restarting
// orca on all of them would, and returns how many.
func (e *Emulator) SubscribeReadyCompute() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.components {
		if strings.EqualFold(c.Type, "Node") && strings.EqualFold(c.Role, "Compute") && strings.EqualFold(c.State, "Ready") {
			e.subscribeLocked(c.ID)
			n++
		}
	}
	return n
}

// OrcaRestarted plays orca starting on the compute node whose host name is
// host (nid000042 or nid000042-nmn, as CSM names computes by NID): it
// subscribes that node, found by NID in HSM, and returns its xname. ok is
// false when host names no compute node (an NCN: orca subscribes nothing
// for it here).
func (e *Emulator) OrcaRestarted(host string) (xname string, ok bool) {
	var nid int
	if _, err := fmt.Sscanf(host, "nid%d", &nid); err != nil || nid <= 0 {
		return "", false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.components {
		if c.NID == nid && strings.EqualFold(c.Type, "Node") && strings.EqualFold(c.Role, "Compute") {
			e.subscribeLocked(c.ID)
			return c.ID, true
		}
	}
	return "", false
}

// Unsubscribe removes every subscription whose SubscriberComponent is xname.
func (e *Emulator) Unsubscribe(xname string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs = slices.DeleteFunc(e.subs, func(s csm.Subscription) bool { return s.SubscriberComponent == xname })
}

// ClearSubscriptions removes all subscriptions (what an etcd rebuild does).
func (e *Emulator) ClearSubscriptions() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs = nil
}

func (e *Emulator) getSubscriptions(w http.ResponseWriter, r *http.Request) {
	xname := r.PathValue("xname")
	e.mu.Lock()
	out := []csm.Subscription{}
	for _, s := range e.subs {
		if xname == "" || strings.EqualFold(s.SubscriberComponent, xname) {
			out = append(out, s)
		}
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, csm.SubscriptionList{SubscriptionList: out})
}

// ---- CRUS ----------------------------------------------------------------

// CRUSStep is one change a CRUS session makes when it is read.
type CRUSStep struct {
	// Message is appended to messages (if not empty).
	Message string
	// State replaces state (if not empty).
	State string
	// Completed sets completed=true.
	Completed bool
}

type crusEntry struct {
	s      csm.CRUSSession
	script []CRUSStep
}

// CRUSScript is what a healthy CRUS session posts for an upgrade of steps
// steps, with the messages of cray-crus's upgrade agent, ending with
// completed=true and state READY.
func CRUSScript(steps int) []CRUSStep {
	var out []CRUSStep
	for n := 0; n < steps; n++ {
		for _, m := range []string{
			"Quiesce requested in step %d: moving to QUIESCING",
			"All nodes quiesced in step %d: moving to QUIESCED",
			"Began the boot session for step %d: moving to BOOTING",
			"The boot session for step %d completed: moving to BOOTED",
			"Step %d boot session succeeded: moving to WLM_WAITING",
		} {
			out = append(out, CRUSStep{Message: fmt.Sprintf(m, n), State: csm.CRUSUpdating})
		}
		out = append(out, CRUSStep{Message: fmt.Sprintf("All WLM returned to ready in step %d: advancing to step %d and moving to STARTING", n, n+1), State: csm.CRUSUpdating})
	}
	out = append(out,
		CRUSStep{Message: fmt.Sprintf("No nodes in step %d: moving to CLEANUP", steps), State: csm.CRUSUpdating},
		CRUSStep{Message: "Upgrade Session Completed", State: csm.CRUSReady, Completed: true},
	)
	return out
}

// ExampleCRUSSession is the runbook's example session: UPDATING, three
// messages, in step 0's BOOTING phase.
func ExampleCRUSSession() csm.CRUSSession {
	return csm.CRUSSession{
		APIVersion: "1.0.0", Completed: false, FailedLabel: "failed-nodes", Kind: "ComputeUpgradeSession",
		Messages: []string{
			"Quiesce requested in step 0: moving to QUIESCING",
			"All nodes quiesced in step 0: moving to QUIESCED",
			"Began the boot session for step 0: moving to BOOTING",
		},
		StartingLabel: "slurm-nodes", State: csm.CRUSUpdating, UpgradeID: "e0131663-dbee-47c2-aa5c-13fe9b110242",
		UpgradeStepSize: 50, UpgradeTemplateID: "boot-template", UpgradingLabel: "upgrading-nodes", WorkloadManagerType: "slurm",
	}
}

// AddCRUSSession adds (or replaces) a session. Each GET that returns it
// (list or describe) applies the next step of script; with no script the
// session is stuck and never changes. An empty UpgradeID gets a random one;
// the ID is returned.
func (e *Emulator) AddCRUSSession(s csm.CRUSSession, script ...CRUSStep) string {
	if s.UpgradeID == "" {
		s.UpgradeID = newUUID()
	}
	if s.Kind == "" {
		s.Kind = "ComputeUpgradeSession"
	}
	if s.APIVersion == "" {
		s.APIVersion = "1.0.0"
	}
	if s.Messages == nil {
		s.Messages = []string{}
	}
	s.Messages = slices.Clone(s.Messages)
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.crus[s.UpgradeID]; !ok {
		e.crusOrder = append(e.crusOrder, s.UpgradeID)
	}
	e.crus[s.UpgradeID] = &crusEntry{s: s, script: slices.Clone(script)}
	return s.UpgradeID
}

// SetCRUSScript replaces the remaining script of a session (e.g. a stuck
// session that resumes once the cray-crus pod is restarted). It reports
// whether the session exists.
func (e *Emulator) SetCRUSScript(upgradeID string, script ...CRUSStep) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.crus[upgradeID]
	if ok {
		c.script = slices.Clone(script)
	}
	return ok
}

// CRUSSessions returns the sessions as they are now (without advancing).
func (e *Emulator) CRUSSessions() []csm.CRUSSession {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]csm.CRUSSession, 0, len(e.crusOrder))
	for _, id := range e.crusOrder {
		out = append(out, cloneCRUS(e.crus[id].s))
	}
	return out
}

// DisableCRUS makes /apis/crus/* answer 404 (CRUS removed, CSM 1.5+).
func (e *Emulator) DisableCRUS() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.crusDisabled = true
}

// EnableCRUS undoes DisableCRUS.
func (e *Emulator) EnableCRUS() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.crusDisabled = false
}

func cloneCRUS(s csm.CRUSSession) csm.CRUSSession {
	s.Messages = slices.Clone(s.Messages)
	return s
}

// advance applies c's next step. Callers hold e.mu.
func (c *crusEntry) advance() {
	if len(c.script) == 0 {
		return
	}
	st := c.script[0]
	c.script = c.script[1:]
	if st.Message != "" {
		c.s.Messages = append(c.s.Messages, st.Message)
	}
	if st.State != "" {
		c.s.State = st.State
	}
	if st.Completed {
		c.s.Completed = true
	}
}

func (e *Emulator) listCRUS(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	out := make([]csm.CRUSSession, 0, len(e.crusOrder))
	for _, id := range e.crusOrder {
		c := e.crus[id]
		c.advance()
		out = append(out, cloneCRUS(c.s))
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (e *Emulator) getCRUS(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e.mu.Lock()
	c, ok := e.crus[id]
	var s csm.CRUSSession
	if ok {
		c.advance()
		s = cloneCRUS(c.s)
	}
	e.mu.Unlock()
	if !ok {
		writeProblem(w, http.StatusNotFound, "Not Found", "The requested resource was not found")
		return
	}
	writeJSON(w, http.StatusOK, s)
}

// ---- FAS -----------------------------------------------------------------

// DefaultFASImages are the images a Nexus load "finds" unless
// SetFASImagesAfterLoad says otherwise.
func DefaultFASImages() []csm.FASImage {
	return []csm.FASImage{
		{ImageID: "0f1e5a2c-5b6e-4d4a-9d0f-000000000001", DeviceType: "NodeBMC", Manufacturer: "cray", Models: []string{"WindomNodeCard"},
			Target: "BIOS", Tags: []string{"default"}, FirmwareVersion: "wnc.bios-1.5.0", SemanticFirmwareVersion: "1.5.0",
			UpdateURI: "/redfish/v1/UpdateService/Actions/SimpleUpdate", S3URL: "s3:/fw-update/wnc.bios-1.5.0.bin"},
		{ImageID: "0f1e5a2c-5b6e-4d4a-9d0f-000000000002", DeviceType: "NodeBMC", Manufacturer: "cray", Models: []string{"WindomNodeCard"},
			Target: "BMC", Tags: []string{"default"}, FirmwareVersion: "nc.1.6.2", SemanticFirmwareVersion: "1.6.2",
			UpdateURI: "/redfish/v1/UpdateService/Actions/SimpleUpdate", S3URL: "s3:/fw-update/nc.1.6.2.bin"},
		{ImageID: "0f1e5a2c-5b6e-4d4a-9d0f-000000000003", DeviceType: "ChassisBMC", Manufacturer: "cray", Models: []string{"HPE Cray EX Chassis"},
			Target: "BMC", Tags: []string{"default"}, FirmwareVersion: "cc.1.6.2", SemanticFirmwareVersion: "1.6.2",
			UpdateURI: "/redfish/v1/UpdateService/Actions/SimpleUpdate", S3URL: "s3:/fw-update/cc.1.6.2.bin"},
	}
}

// SetFASLoaderBusy makes the loader busy for the next n POSTs to
// /apis/fas/v1/loader/nexus (each answered 429); GET /apis/fas/v1/loader
// reports "busy" until then.
func (e *Emulator) SetFASLoaderBusy(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fasBusy = max(n, 0)
}

// SetFASImages replaces the image list.
func (e *Emulator) SetFASImages(imgs []csm.FASImage) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fasImages = slices.Clone(imgs)
}

// SetFASImagesAfterLoad sets the images a successful Nexus load installs
// (nil: a load leaves the image list unchanged).
func (e *Emulator) SetFASImagesAfterLoad(imgs []csm.FASImage) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fasImagesAfterLoad = slices.Clone(imgs)
}

// SetFASActions replaces the action list.
func (e *Emulator) SetFASActions(as []csm.FASAction) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fasActions = slices.Clone(as)
}

// FASImages returns the image list.
func (e *Emulator) FASImages() []csm.FASImage {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.fasImages)
}

// FASLoaderRuns returns the loader run IDs, oldest first.
func (e *Emulator) FASLoaderRuns() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.fasRunOrder)
}

func (e *Emulator) getLoader(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	st := csm.LoaderStatus{LoaderStatus: "ready", LoaderRunList: csm.LoaderRunList(slices.Clone(e.fasRunOrder))}
	if e.fasBusy > 0 {
		st.LoaderStatus = "busy"
	}
	if st.LoaderRunList == nil {
		st.LoaderRunList = csm.LoaderRunList{}
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, st)
}

func (e *Emulator) postLoaderNexus(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	if e.fasBusy > 0 {
		e.fasBusy--
		e.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusTooManyRequests, "Loader busy", "FAS loader busy, try again later")
		return
	}
	id := newUUID()
	now := time.Now().UTC().Format(time.RFC3339)
	n := len(e.fasImages)
	if e.fasImagesAfterLoad != nil {
		e.fasImages = slices.Clone(e.fasImagesAfterLoad)
		n = len(e.fasImages)
	}
	e.fasRuns[id] = []string{
		now + " INFO: loader run " + id + " started: loading firmware from Nexus",
		fmt.Sprintf("%s INFO: found %d firmware images", now, n),
		fmt.Sprintf("%s INFO: finished: %d images loaded", now, n),
	}
	e.fasRunOrder = append(e.fasRunOrder, id)
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"loaderRunID": id})
}

func (e *Emulator) getLoaderRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e.mu.Lock()
	out, ok := e.fasRuns[id]
	out = slices.Clone(out)
	e.mu.Unlock()
	if !ok {
		writeProblem(w, http.StatusNotFound, "Not Found", "loader run "+id+" not found")
		return
	}
	writeJSON(w, http.StatusOK, csm.LoaderRun{LoaderRunOutput: out})
}

func (e *Emulator) getFASImages(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	imgs := slices.Clone(e.fasImages)
	e.mu.Unlock()
	if imgs == nil {
		imgs = []csm.FASImage{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"images": imgs})
}

func (e *Emulator) getFASActions(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	as := slices.Clone(e.fasActions)
	e.mu.Unlock()
	if as == nil {
		as = []csm.FASAction{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"actions": as})
}

// ---- BOS v2 --------------------------------------------------------------

type tmplKey struct{ tenant, name string }

// SetSessionTemplateJSON stores a template as raw JSON under name (tenant
// ""), bypassing the PUT checks: use it to plant invalid templates.
func (e *Emulator) SetSessionTemplateJSON(name string, raw []byte) error {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return fmt.Errorf("csmemu: template %s: want a JSON object: %v", name, err)
	}
	m["name"] = name
	e.mu.Lock()
	defer e.mu.Unlock()
	e.templates[tmplKey{name: name}] = m
	return nil
}

// SetSessionTemplate stores t under t.Name (tenant t.Tenant).
func (e *Emulator) SetSessionTemplate(t csm.SessionTemplate) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.templates[tmplKey{tenant: t.Tenant, name: t.Name}] = m
	return nil
}

// SessionTemplateJSON returns a stored template (tenant "") as JSON.
func (e *Emulator) SessionTemplateJSON(name string) ([]byte, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m, ok := e.templates[tmplKey{name: name}]
	if !ok {
		return nil, false
	}
	b, _ := json.Marshal(m)
	return b, true
}

// SessionTemplateNames lists stored template names (all tenants), sorted.
func (e *Emulator) SessionTemplateNames() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for k := range e.templates {
		out = append(out, k.name)
	}
	sort.Strings(out)
	return out
}

// ClearSessionTemplates deletes every template.
func (e *Emulator) ClearSessionTemplates() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.templates)
}

// BOSSessions returns the sessions created through the API, oldest first,
// with their status as of now.
func (e *Emulator) BOSSessions() []csm.BOSSession {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceBOSLocked(time.Now())
	out := make([]csm.BOSSession, 0, len(e.bosSessions))
	for _, b := range e.bosSessions {
		out = append(out, b.s)
	}
	return out
}

func tenantOf(r *http.Request) string { return r.Header.Get(csm.TenantHeader) }

func (e *Emulator) listTemplates(w http.ResponseWriter, r *http.Request) {
	tenant := tenantOf(r)
	e.mu.Lock()
	keys := make([]tmplKey, 0, len(e.templates))
	for k := range e.templates {
		if tenant == "" || k.tenant == tenant { // BOS filters only when a tenant is given
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].name != keys[j].name {
			return keys[i].name < keys[j].name
		}
		return keys[i].tenant < keys[j].tenant
	})
	out := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		out = append(out, e.templates[k])
	}
	b, err := json.Marshal(out)
	e.mu.Unlock()
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, "Internal Server Error", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (e *Emulator) templateNotFound(w http.ResponseWriter, name string) {
	writeProblem(w, http.StatusNotFound, "Sessiontemplate could not found.", "Sessiontemplate "+name+" could not be found")
}

func (e *Emulator) getTemplate(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	e.mu.Lock()
	m, ok := e.templates[tmplKey{tenant: tenantOf(r), name: name}]
	var b []byte
	if ok {
		b, _ = json.Marshal(m)
	}
	e.mu.Unlock()
	if !ok {
		e.templateNotFound(w, name)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (e *Emulator) putTemplate(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var m map[string]any
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m == nil {
		writeProblem(w, http.StatusBadRequest, "Error parsing the data provided.", fmt.Sprintf("want a JSON object: %v", err))
		return
	}
	if bs, ok := m["boot_sets"].(map[string]any); !ok || len(bs) == 0 {
		writeProblem(w, http.StatusBadRequest, "The session template could not be created.", "'boot_sets' is a required property and must hold at least one boot set")
		return
	}
	m["name"] = name
	tenant := tenantOf(r)
	if tenant != "" {
		m["tenant"] = tenant
	}
	e.mu.Lock()
	e.templates[tmplKey{tenant: tenant, name: name}] = m
	b, _ := json.Marshal(m)
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (e *Emulator) deleteTemplate(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	k := tmplKey{tenant: tenantOf(r), name: name}
	e.mu.Lock()
	_, ok := e.templates[k]
	delete(e.templates, k)
	e.mu.Unlock()
	if !ok {
		e.templateNotFound(w, name)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// templateProblem mirrors BOS's validate_boot_sets: "Valid" or what is wrong.
func templateProblem(name string, m map[string]any) string {
	bs, _ := m["boot_sets"].(map[string]any)
	if len(bs) == 0 {
		return fmt.Sprintf("Session template '%s' requires at least 1 boot set.", name)
	}
	names := make([]string, 0, len(bs))
	for n := range bs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		set, _ := bs[n].(map[string]any)
		ok := false
		for _, f := range []string{"node_list", "node_roles_groups", "node_groups"} {
			if l, _ := set[f].([]any); len(l) > 0 {
				ok = true
			}
		}
		if !ok {
			return fmt.Sprintf("Session template: '%s' boot set: '%s' must have at least one hardware specifier field provided (node_groups, node_list, node_roles_groups); None were provided.", name, n)
		}
	}
	return "Valid"
}

func (e *Emulator) validTemplate(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	e.mu.Lock()
	m, ok := e.templates[tmplKey{tenant: tenantOf(r), name: name}]
	var msg string
	if ok {
		msg = templateProblem(name, m)
	}
	e.mu.Unlock()
	if !ok {
		e.templateNotFound(w, name)
		return
	}
	writeJSON(w, http.StatusOK, msg) // 200 even when invalid, as BOS does
}

// bosEntry is a session and the HSM changes it makes. The changes are due
// at fixed offsets from its creation and are applied when HSM or BOS is next
// read, so the emulator needs no goroutine per session.
type bosEntry struct {
	s       csm.BOSSession
	created time.Time
	step    time.Duration
	nodes   []string
	states  []string // HSM States the nodes go through, in order
	applied int      // how many of states were applied
	stuck   bool     // a stuck node missed a change: the session never completes
}

// bosStates are the HSM States an operation takes a node through, as the
// BOS v2 operators drive power and HSM reports it.
func bosStates(operation string) []string {
	switch operation {
	case "shutdown":
		return []string{"Off"}
	case "boot":
		return []string{"On", "Ready"}
	default: // reboot
		return []string{"Off", "On", "Ready"}
	}
}

// SetBOSTiming sets the step delay of sessions created from now on: a
// session is pending for one step, then running; its node changes come one
// step apart (shutdown: Off after 2 steps; boot: On after 2, Ready after 3;
// reboot: Off, On, Ready after 2, 3, 4) and it is complete with the last
// change. 0 makes every change due at once.
func (e *Emulator) SetBOSTiming(step time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bosStep = max(step, 0)
}

// SetBOSStuck makes BOS sessions leave xnames as they are (stuck is true),
// as when a node does not power off or never boots; sessions acting on
// them stay running. stuck false undoes it for changes not yet due.
func (e *Emulator) SetBOSStuck(stuck bool, xnames ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, x := range xnames {
		if stuck {
			e.bosStuck[x] = true
		} else {
			delete(e.bosStuck, x)
		}
	}
}

// advanceBOSLocked applies the node changes due by now, oldest first across
// sessions, and updates each session's status. Callers hold e.mu.
func (e *Emulator) advanceBOSLocked(now time.Time) {
	type due struct {
		at time.Time
		b  *bosEntry
	}
	var changes []due
	for _, b := range e.bosSessions {
		for i := b.applied; i < len(b.states); i++ {
			at := b.created.Add(time.Duration(i+2) * b.step)
			if at.After(now) {
				break
			}
			changes = append(changes, due{at, b})
		}
	}
	sort.SliceStable(changes, func(i, j int) bool { return changes[i].at.Before(changes[j].at) })
	for _, c := range changes {
		b := c.b
		state := b.states[b.applied]
		b.applied++
		for _, x := range b.nodes {
			if e.bosStuck[x] {
				b.stuck = true
				continue
			}
			for i := range e.components {
				if e.components[i].ID == x {
					e.components[i].State = state
				}
			}
		}
	}
	for _, b := range e.bosSessions {
		switch {
		case b.applied == len(b.states) && !b.stuck:
			if b.s.Status.Status != "complete" {
				b.s.Status.Status = "complete"
				b.s.Status.EndTime = b.created.Add(time.Duration(len(b.states)+1) * b.step).UTC().Format(time.RFC3339)
			}
		case !now.Before(b.created.Add(b.step)):
			b.s.Status.Status = "running"
		}
	}
}

// templateNodes resolves a template's boot sets to HSM node xnames: every
// node_list entry and every node whose Role is in node_roles_groups.
// node_groups are not resolved: the emulator has no HSM groups. Callers
// hold e.mu.
func (e *Emulator) templateNodesLocked(m map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	add := func(x string) {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	bs, _ := m["boot_sets"].(map[string]any)
	for _, v := range bs {
		set, _ := v.(map[string]any)
		nl, _ := set["node_list"].([]any)
		for _, x := range nl {
			if s, ok := x.(string); ok {
				add(s)
			}
		}
		roles, _ := set["node_roles_groups"].([]any)
		for _, r := range roles {
			role, _ := r.(string)
			for _, c := range e.components {
				if strings.EqualFold(c.Type, "Node") && role != "" && strings.EqualFold(c.Role, role) {
					add(c.ID)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// limitNodes is what BOS acts on: the template's nodes, narrowed to the
// xnames in limit when limit is set.
func limitNodes(template []string, limit string) []string {
	if strings.TrimSpace(limit) == "" {
		return template
	}
	want := map[string]bool{}
	for _, x := range strings.Split(limit, ",") {
		want[strings.TrimSpace(x)] = true
	}
	var out []string
	for _, x := range template {
		if want[x] {
			out = append(out, x)
		}
	}
	return out
}

func (e *Emulator) findBOSLocked(tenant, name string) *bosEntry {
	for _, b := range e.bosSessions {
		if b.s.Tenant == tenant && b.s.Name == name {
			return b
		}
	}
	return nil
}

func (e *Emulator) postBOSSession(w http.ResponseWriter, r *http.Request) {
	var req csm.BOSSessionRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("Error parsing the data provided: %v", err))
		return
	}
	switch req.Operation {
	case "boot", "reboot", "shutdown":
	default:
		writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("'%s' is not one of ['boot', 'reboot', 'shutdown'] - 'operation'", req.Operation))
		return
	}
	tenant := tenantOf(r)
	e.mu.Lock()
	m, ok := e.templates[tmplKey{tenant: tenant, name: req.TemplateName}]
	if !ok {
		e.mu.Unlock()
		writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("Session template '%s' does not exist", req.TemplateName))
		return
	}
	if p := templateProblem(req.TemplateName, m); p != "Valid" {
		e.mu.Unlock()
		writeProblem(w, http.StatusBadRequest, "Bad Request", p)
		return
	}
	if req.Name == "" {
		req.Name = newUUID()
	} else if e.findBOSLocked(tenant, req.Name) != nil {
		e.mu.Unlock()
		writeProblem(w, http.StatusConflict, "Conflict", fmt.Sprintf("A session with the name %s already exists", req.Name))
		return
	}
	now := time.Now()
	nodes := limitNodes(e.templateNodesLocked(m), req.Limit)
	b := &bosEntry{
		s: csm.BOSSession{
			Name: req.Name, Tenant: tenant, TemplateName: req.TemplateName, Operation: req.Operation, Limit: req.Limit,
			Stage: req.Stage, Components: strings.Join(nodes, ","), IncludeDisabled: req.IncludeDisabled,
			Status: csm.BOSSessionStatus{Status: "pending", StartTime: now.UTC().Format(time.RFC3339)},
		},
		created: now, step: e.bosStep, nodes: nodes, states: bosStates(req.Operation),
	}
	e.bosSessions = append(e.bosSessions, b)
	s := b.s // as created: pending, whatever the step
	e.mu.Unlock()
	writeJSON(w, http.StatusCreated, s)
}

func (e *Emulator) listBOSSessions(w http.ResponseWriter, r *http.Request) {
	tenant := tenantOf(r)
	e.mu.Lock()
	e.advanceBOSLocked(time.Now())
	out := []csm.BOSSession{}
	for _, b := range e.bosSessions {
		if tenant == "" || b.s.Tenant == tenant {
			out = append(out, b.s)
		}
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (e *Emulator) getBOSSession(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	e.mu.Lock()
	e.advanceBOSLocked(time.Now())
	b := e.findBOSLocked(tenantOf(r), name)
	var s csm.BOSSession
	if b != nil {
		s = b.s
	}
	e.mu.Unlock()
	if b == nil {
		writeProblem(w, http.StatusNotFound, "Session could not be found.", "Session "+name+" could not be found")
		return
	}
	writeJSON(w, http.StatusOK, s)
}

// ---- CPS -----------------------------------------------------------------

// SetCPSContents replaces GET /apis/v2/cps/contents.
func (e *Emulator) SetCPSContents(cs []csm.CPSContent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cpsContents = slices.Clone(cs)
}

// SetCPSTransports replaces GET /apis/v2/cps/transports.
func (e *Emulator) SetCPSTransports(ts []csm.CPSTransport) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cpsTransports = slices.Clone(ts)
}

func (e *Emulator) getCPSContents(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	out := slices.Clone(e.cpsContents)
	e.mu.Unlock()
	if out == nil {
		out = []csm.CPSContent{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (e *Emulator) getCPSTransports(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	out := slices.Clone(e.cpsTransports)
	e.mu.Unlock()
	if out == nil {
		out = []csm.CPSTransport{}
	}
	writeJSON(w, http.StatusOK, out)
}

// ---- control API (Options.ControlAPI) ------------------------------------

func (e *Emulator) ctlSubscribe(w http.ResponseWriter, r *http.Request) {
	e.Subscribe(r.PathValue("xname"))
	w.WriteHeader(http.StatusNoContent)
}

func (e *Emulator) ctlUnsubscribe(w http.ResponseWriter, r *http.Request) {
	e.Unsubscribe(r.PathValue("xname"))
	w.WriteHeader(http.StatusNoContent)
}

func (e *Emulator) ctlSubscribeReady(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]int{"subscribed": e.SubscribeReadyCompute()})
}

func (e *Emulator) ctlClearSubscriptions(w http.ResponseWriter, r *http.Request) {
	e.ClearSubscriptions()
	w.WriteHeader(http.StatusNoContent)
}

// ctlOrcaRestarted: POST /_csmemu/orca-restarted/nid000001-nmn
func (e *Emulator) ctlOrcaRestarted(w http.ResponseWriter, r *http.Request) {
	host := r.PathValue("host")
	x, ok := e.OrcaRestarted(host)
	if !ok {
		writeProblem(w, http.StatusNotFound, "Not Found", "no compute node has host name "+host+" (want nidNNNNNN[-nmn] of a compute NID)")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"subscribed": x})
}

func (e *Emulator) ctlClearTemplates(w http.ResponseWriter, r *http.Request) {
	e.ClearSessionTemplates()
	w.WriteHeader(http.StatusNoContent)
}

// ctlFail: POST /_csmemu/fail?prefix=/apis/smd&status=503&times=2
func (e *Emulator) ctlFail(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status, err1 := strconv.Atoi(q.Get("status"))
	times, err2 := strconv.Atoi(q.Get("times"))
	if q.Get("prefix") == "" || err1 != nil || err2 != nil || status < 100 || status > 599 {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "want ?prefix=/apis/...&status=503&times=N")
		return
	}
	e.Fail(q.Get("prefix"), status, times)
	w.WriteHeader(http.StatusNoContent)
}

// ctlFASBusy: POST /_csmemu/fas-busy?n=3
func (e *Emulator) ctlFASBusy(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "want ?n=N")
		return
	}
	e.SetFASLoaderBusy(n)
	w.WriteHeader(http.StatusNoContent)
}

// ctlBOSTiming: POST /_csmemu/bos-timing?step=2s
func (e *Emulator) ctlBOSTiming(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("step"))
	if err != nil || d < 0 {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "want ?step=DURATION (e.g. 2s)")
		return
	}
	e.SetBOSTiming(d)
	w.WriteHeader(http.StatusNoContent)
}

// ctlBOSStuck: POST /_csmemu/bos-stuck?xname=x1,x2&stuck=true
func (e *Emulator) ctlBOSStuck(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	stuck, err := strconv.ParseBool(q.Get("stuck"))
	if q.Get("xname") == "" || err != nil {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "want ?xname=x1,x2&stuck=true|false")
		return
	}
	e.SetBOSStuck(stuck, strings.Split(q.Get("xname"), ",")...)
	w.WriteHeader(http.StatusNoContent)
}

func (e *Emulator) ctlStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"tokenRequests": e.TokenRequests(),
		"tokensIssued":  e.TokensIssued(),
		"requests":      e.RequestCounts(),
		"subscriptions": len(e.Subscriptions()),
		"bosSessions":   len(e.BOSSessions()),
		"fasLoaderRuns": e.FASLoaderRuns(),
	})
}
