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

	for _, v := range []string{"/apis/hmnfd/hmi/v1", "/apis/hmnfd/hmi/v2"} {
		m.HandleFunc("GET "+v+"/subscriptions", e.getSubscriptions)
		m.HandleFunc("GET "+v+"/readiness", e.getReadiness)
		m.HandleFunc("GET "+v+"/health", e.getHMNFDHealth)
	}
	m.HandleFunc("POST /apis/hmnfd/hmi/v1/subscribe", e.postSubscribeV1)
	m.HandleFunc("GET "+csm.PathHMNFDSubscriptions+"/{xname}", e.getSubscriptionsOf)
	m.HandleFunc("GET "+csm.PathHMNFDSubscriptions+"/{xname}/agents", e.getAgentsNotRouted)
	m.HandleFunc("POST "+csm.PathHMNFDSubscriptions+"/{xname}/agents/{agent}", e.postSubscribeV2)

	m.HandleFunc("GET "+csm.PathCRUSSession, e.listCRUS)
	m.HandleFunc("GET "+csm.PathCRUSSession+"/{id}", e.getCRUS)

	m.HandleFunc("GET "+csm.PathFASLoader, e.getLoader)
	m.HandleFunc("POST "+csm.PathFASLoaderNexus, e.postLoaderNexus)
	m.HandleFunc("GET "+csm.PathFASLoader+"/{id}", e.getLoaderRun)
	m.HandleFunc("GET "+csm.PathFASImages, e.getFASImages)
	m.HandleFunc("GET "+csm.PathFASActions, e.getFASActions)

	m.HandleFunc("GET "+csm.PathBOSv1, e.getBOSVersion("v1"))
	m.HandleFunc("GET "+csm.PathBOSv2, e.getBOSVersion("v2"))
	m.HandleFunc("GET "+csm.PathBOSv1SessionTemplate, e.listTemplatesV1)
	m.HandleFunc("GET "+csm.PathBOSv1SessionTemplate+"/{name}", e.getTemplateV1)
	m.HandleFunc("POST "+csm.PathBOSv1SessionTemplate, e.postTemplateV1)
	m.HandleFunc("POST "+csm.PathBOSv1Session, e.postBOSSessionV1)
	m.HandleFunc("GET "+csm.PathBOSv1Session, e.listBOSSessionsV1)
	m.HandleFunc("GET "+csm.PathBOSv1Session+"/{id}", e.getBOSSessionV1)
	m.HandleFunc("GET "+csm.PathBOSv1Session+"/{id}/status", e.getBOSSessionStatusV1)
	m.HandleFunc("GET "+csm.PathBOSSessionTemplates, e.listTemplates)
	m.HandleFunc("GET "+csm.PathBOSSessionTemplates+"/{name}", e.getTemplate)
	m.HandleFunc("PUT "+csm.PathBOSSessionTemplates+"/{name}", e.putTemplate)
	m.HandleFunc("DELETE "+csm.PathBOSSessionTemplates+"/{name}", e.deleteTemplate)
	m.HandleFunc("GET "+csm.PathBOSSessionTemplatesV+"/{name}", e.validTemplate)
	m.HandleFunc("POST "+csm.PathBOSSessions, e.postBOSSession)
	m.HandleFunc("GET "+csm.PathBOSSessions, e.listBOSSessions)
	m.HandleFunc("GET "+csm.PathBOSSessions+"/{name}", e.getBOSSession)

	m.HandleFunc("GET "+csm.PathBSSBootParameters, e.getBootParameters)
	m.HandleFunc("PUT "+csm.PathBSSBootParameters, e.putBootParameters)
	m.HandleFunc("POST "+csm.PathBSSBootParameters, e.postBootParameters)
	m.HandleFunc("PATCH "+csm.PathBSSBootParameters, e.patchBootParameters)
	m.HandleFunc("DELETE "+csm.PathBSSBootParameters, e.deleteBootParameters)

	m.HandleFunc("GET "+csm.PathCPSContents, e.getCPSContents)
	m.HandleFunc("GET "+csm.PathCPSTransports, e.getCPSTransports)

	m.HandleFunc("POST /_csmemu/subscribe/{xname}", e.ctlSubscribe)
	m.HandleFunc("POST /_csmemu/unsubscribe/{xname}", e.ctlUnsubscribe)
	m.HandleFunc("POST /_csmemu/subscribe-ready-compute", e.ctlSubscribeReady)
	m.HandleFunc("POST /_csmemu/clear-subscriptions", e.ctlClearSubscriptions)
	m.HandleFunc("POST /_csmemu/orca-restarted/{host}", e.ctlOrcaRestarted)
	m.HandleFunc("POST /_csmemu/clear-templates", e.ctlClearTemplates)
	m.HandleFunc("POST /_csmemu/hmnfd-wipe", e.ctlWipeHMNFD)
	m.HandleFunc("POST /_csmemu/hmnfd-restart", e.ctlRestartHMNFD)
	m.HandleFunc("POST /_csmemu/bss-wipe", e.ctlWipeBSS)
	m.HandleFunc("POST /_csmemu/fail", e.ctlFail)
	m.HandleFunc("POST /_csmemu/fas-busy", e.ctlFASBusy)
	m.HandleFunc("POST /_csmemu/bos-timing", e.ctlBOSTiming)
	m.HandleFunc("POST /_csmemu/bos-stuck", e.ctlBOSStuck)
	m.HandleFunc("POST /_csmemu/crus-restart-clock", e.ctlRestartCRUSClock)
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
	// step paces the script (Options.CRUSStepDelay); due is when its next
	// step is due, zero until the session is first read: the clock starts
	// when someone first looks, so that a session added when the emulator
	// starts is still in progress when a run reaches it.
	step time.Duration
	due  time.Time
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
// (list or describe) applies the next step of script (with
// Options.CRUSStepDelay: every step due by then, the first one step after
// the session's first GET); with no script the session is stuck and never
// changes. An empty UpgradeID gets a random one;
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
	e.crus[s.UpgradeID] = &crusEntry{s: s, script: slices.Clone(script), step: max(e.opts.CRUSStepDelay, 0)}
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
		c.due = time.Time{}
	}
	return ok
}

// RestartCRUSClock makes paced sessions (Options.CRUSStepDelay) take
// their remaining steps from their next read on, as if first read then:
// a benchmark reads them in its snapshot and wants them in progress when
// its run reaches them.
func (e *Emulator) RestartCRUSClock() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.crus {
		c.due = time.Time{}
	}
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

// advance applies c's next step, or with a paced script every step due by
// now. Callers hold e.mu.
func (c *crusEntry) advance(now time.Time) {
	if c.step == 0 {
		c.apply()
		return
	}
	if c.due.IsZero() {
		c.due = now.Add(c.step)
	}
	for len(c.script) > 0 && !now.Before(c.due) {
		c.apply()
		c.due = c.due.Add(c.step)
	}
}

// apply applies c's next step, if any.
func (c *crusEntry) apply() {
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
	now := time.Now()
	for _, id := range e.crusOrder {
		c := e.crus[id]
		c.advance(now)
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
		c.advance(time.Now())
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

// FailFASLoads makes every later Nexus load fail as a loader that cannot
// reach Nexus does: it still starts (200), logs reason as an ERROR line and
// loads nothing; "" lets loads succeed again.
func (e *Emulator) FailFASLoads(reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fasLoadFailure = reason
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
	// FAS's code answers objects (presentation/loader.go LoaderList); its
	// swagger's plain strings are wrong.
	type run struct {
		LoaderRunID string `json:"loaderRunID"`
	}
	e.mu.Lock()
	runs := []run{}
	for _, id := range e.fasRunOrder {
		runs = append(runs, run{id})
	}
	status := "ready"
	if e.fasBusy > 0 {
		status = "busy"
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"loaderStatus": status, "loaderRunList": runs})
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
	if e.fasLoadFailure != "" {
		e.fasRuns[id] = []string{
			now + " INFO: loader run " + id + " started: loading firmware from Nexus",
			now + " ERROR: " + e.fasLoadFailure,
			now + " INFO: finished: 0 images loaded",
		}
		e.fasRunOrder = append(e.fasRunOrder, id)
		e.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]string{"loaderRunID": id})
		return
	}
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

// SetTemplateValidation makes BOS v2's validation answer message for the
// template name (tenant ""), e.g. a warning BOS gives when a boot set's
// initrd cannot be located in S3, which the emulator does not model. ""
// goes back to the emulator's own checks.
func (e *Emulator) SetTemplateValidation(name, message string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if message == "" {
		delete(e.templateVerdicts, name)
		return
	}
	e.templateVerdicts[name] = message
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
	// BOS filters only when a tenant is given.
	e.serveTemplateList(w, func(k tmplKey) bool { return tenant == "" || k.tenant == tenant })
}

// serveTemplateList answers a template list of either BOS API version: the
// templates whose key keep accepts, by name, then tenant.
func (e *Emulator) serveTemplateList(w http.ResponseWriter, keep func(tmplKey) bool) {
	e.mu.Lock()
	keys := make([]tmplKey, 0, len(e.templates))
	for k := range e.templates {
		if keep(k) {
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
	e.serveTemplate(w, tmplKey{tenant: tenantOf(r), name: r.PathValue("name")})
}

// serveTemplate answers a template GET of either BOS API version.
func (e *Emulator) serveTemplate(w http.ResponseWriter, key tmplKey) {
	e.mu.Lock()
	m, ok := e.templates[key]
	var b []byte
	if ok {
		b, _ = json.Marshal(m)
	}
	e.mu.Unlock()
	if !ok {
		e.templateNotFound(w, key.name)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// decodeObject reads a JSON object request body, answering 400 as BOS does
// when it is not one.
func decodeObject(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	var m map[string]any
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m == nil {
		writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("Error parsing the data provided: want a JSON object: %v", err))
		return nil, false
	}
	return m, true
}

func (e *Emulator) putTemplate(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	m, ok := decodeObject(w, r)
	if !ok {
		return
	}
	// connexion 2.x validates the body against V2SessionTemplate: readOnly
	// members are refused, and so is any member the schema does not have.
	for _, k := range []string{"name", "tenant", "links"} {
		if _, ok := m[k]; ok {
			writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("Property is read-only - '%s'", k))
			return
		}
	}
	if p := v2SchemaProblem(m, e.surface.release); p != "" {
		writeProblem(w, http.StatusBadRequest, "Bad Request", p)
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
		if v, set := e.templateVerdicts[name]; set {
			msg = v
		}
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
	// v1: made through /v1/session; s.Name is its id, templateField says
	// which field named the template ("templateUuid" or "templateName").
	v1            bool
	templateField string
}

// bosStates are the HSM States an operation takes a node through, as the
// BOS v2 operators drive power and HSM reports it.
func bosStates(operation string) []string {
	switch operation {
	case "shutdown":
		return []string{"Off"}
	case "boot":
		return []string{"On", "Ready"}
	case "configure": // v1 only: CFS runs on the nodes, their state stays
		return nil
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
		if !b.v1 && b.s.Tenant == tenant && b.s.Name == name {
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
		if !b.v1 && (tenant == "" || b.s.Tenant == tenant) {
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

// SetCPSTransports sets the transports every content reports on GET
// /transports?s3path=&transport= (the entries of that transport type; an
// entry without Type counts as any). With none set, each content reports
// one transport per type it lists, ready for mount.
func (e *Emulator) SetCPSTransports(ts []csm.CPSTransport) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cpsTransports = slices.Clone(ts)
}

// getCPSContents: GET /contents[?s3path=&etag=] answers an array.
func (e *Emulator) getCPSContents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	e.mu.Lock()
	out := []csm.CPSContent{}
	for _, c := range e.cpsContents {
		if (q.Get("s3path") == "" || c.S3Path == q.Get("s3path")) && (q.Get("etag") == "" || c.Etag == q.Get("etag")) {
			out = append(out, c)
		}
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// getCPSTransports: GET /transports?s3path=&transport=[&etag=] answers one
// object for that content; s3path and transport are required.
func (e *Emulator) getCPSTransports(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var missing []string
	for _, p := range []string{"s3path", "transport"} {
		if q.Get(p) == "" {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "Missing query parameter(s): "+strings.Join(missing, ", "))
		return
	}
	s3path, transport, etag := q.Get("s3path"), q.Get("transport"), q.Get("etag")
	e.mu.Lock()
	defer e.mu.Unlock()
	i := slices.IndexFunc(e.cpsContents, func(c csm.CPSContent) bool {
		return c.S3Path == s3path && (etag == "" || c.Etag == etag)
	})
	if i < 0 {
		// The CPS server's source is not public: the shape of this
		// refusal is not known, its status is the natural one.
		writeProblem(w, http.StatusNotFound, "Not Found", "no content "+s3path+" in CPS")
		return
	}
	c := e.cpsContents[i]
	out := csm.CPSTransports{ArtifactID: cpsArtifactID(c), Transports: []csm.CPSTransport{}}
	if e.cpsTransports != nil {
		for _, t := range e.cpsTransports {
			if t.Type == "" || strings.EqualFold(t.Type, transport) {
				t.Type = transport
				out.Transports = append(out.Transports, t)
			}
		}
	} else if slices.ContainsFunc(cpsTypes(c), func(t string) bool { return strings.EqualFold(t, transport) }) {
		out.Transports = append(out.Transports, csm.CPSTransport{Type: transport, ReadyForMount: true})
	}
	writeJSON(w, http.StatusOK, out)
}

// cpsTypes are the transport types a content lists ("dvs" when it lists none).
func cpsTypes(c csm.CPSContent) []string {
	if len(c.Transports) == 0 {
		return []string{"dvs"}
	}
	return c.Transports
}

// cpsArtifactID is the content's artifactID, or one derived from its path.
func cpsArtifactID(c csm.CPSContent) string {
	if raw, ok := c.Extra["artifactID"]; ok {
		var id string
		if json.Unmarshal(raw, &id) == nil {
			return id
		}
	}
	return strings.TrimPrefix(c.S3Path, "s3://")
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

// ctlRestartCRUSClock: POST /_csmemu/crus-restart-clock
func (e *Emulator) ctlRestartCRUSClock(w http.ResponseWriter, r *http.Request) {
	e.RestartCRUSClock()
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
		"bootParams":    len(e.BootParams()),
	})
}
