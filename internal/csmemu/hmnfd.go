package csmemu

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/csmops/etcd-repopulate/internal/csm"
)

// HMNFD as observed (../shared/csm-specs/observed/README.md): a
// subscription is stored under an etcd key built from its lower-cased
// attributes, so every value comes back lower-case; the list is sorted by
// that key; no subscription lists as {"SubscriptionList":null}; HMNFD 1.8.5
// (CSM 1.0) has no SubscriberComponent/SubscriberAgent, later versions
// fill them only when the subscription has an agent. After its etcd is
// wiped HMNFD's readiness answers 503 until the process restarts.

// OrcaAgent is the agent of the subscriptions Subscribe makes. The real orca
// agent name is unknown (its source is not public).
const OrcaAgent = "hmnfd-orca"

// subscription is one stored subscription: what HMNFD keeps in its key and
// value, lower-case.
type subscription struct {
	xname, agent   string
	components     []string
	states, roles  []string
	subRoles       []string
	softwareStatus []string
	enabled        bool // the request set Enabled at all (even false)
	url            string
}

func (s subscription) key() string {
	k := "sub#" + s.xname
	add := func(tag string, vals []string) {
		if len(vals) > 0 {
			k += "#" + tag + "." + strings.Join(vals, ".")
		}
	}
	add("hs", s.states)
	add("ss", s.softwareStatus)
	if s.enabled {
		k += "#enbl.enbl"
	}
	add("roles", s.roles)
	add("subroles", s.subRoles)
	if s.agent != "" {
		k += "#svc." + s.agent
	}
	return k
}

// render is the subscription as GET …/subscriptions lists it on this release.
func (s subscription) render(v2 bool) csm.Subscription {
	out := csm.Subscription{
		Subscriber: s.xname, Components: slices.Clone(s.components), Roles: slices.Clone(s.roles), SubRoles: slices.Clone(s.subRoles),
		States: slices.Clone(s.states), SoftwareStatus: slices.Clone(s.softwareStatus), Enabled: s.enabled, URL: s.url,
	}
	if s.agent != "" {
		out.Subscriber = s.agent + "@" + s.xname
		if v2 {
			out.SubscriberComponent, out.SubscriberAgent = s.xname, s.agent
		}
	}
	return out
}

func lower(vs []string) []string {
	var out []string
	for _, v := range vs {
		out = append(out, strings.ToLower(v))
	}
	return out
}

// fromSubscription stores sub as HMNFD would: the subscriber from
// SubscriberComponent/SubscriberAgent or Subscriber ([agent@]xname), every
// value lower-cased.
func fromSubscription(sub csm.Subscription) subscription {
	xname, agent := sub.Xname(), sub.SubscriberAgent
	if a, _, ok := strings.Cut(sub.Subscriber, "@"); ok && agent == "" {
		agent = a
	}
	return subscription{
		xname: strings.ToLower(xname), agent: strings.ToLower(agent), components: lower(sub.Components),
		states: lower(sub.States), roles: lower(sub.Roles), subRoles: lower(sub.SubRoles), softwareStatus: lower(sub.SoftwareStatus),
		enabled: sub.Enabled, url: strings.ToLower(sub.URL),
	}
}

// OrcaSubscription is the subscription the orca daemon asks for when it is
// (re)started on xname, as it would POST it (mixed case; HMNFD lists it
// lower-case). The Url is made up; HMNFD only stores it here.
func OrcaSubscription(xname string) csm.Subscription {
	return csm.Subscription{
		Subscriber: OrcaAgent + "@" + xname,
		Components: []string{xname},
		Roles:      []string{"Compute"},
		States:     []string{"Ready", "On", "Off", "Standby", "Halt", "Empty"},
		Enabled:    true,
		URL:        "http://" + xname + ":28600/orca/scn",
	}
}

// SetSubscriptions replaces the HMNFD subscriptions (stored as HMNFD would
// store them if each had been POSTed).
func (e *Emulator) SetSubscriptions(subs []csm.Subscription) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs = nil
	for _, s := range subs {
		e.putSubLocked(fromSubscription(s))
	}
}

// Subscriptions returns the HMNFD subscriptions as this release lists them.
func (e *Emulator) Subscriptions() []csm.Subscription {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.listSubsLocked("")
}

func (e *Emulator) listSubsLocked(xname string) []csm.Subscription {
	var out []csm.Subscription
	for _, s := range e.subs {
		if xname == "" || strings.EqualFold(s.xname, xname) {
			out = append(out, s.render(e.surface.hmnfdV2))
		}
	}
	return out
}

// putSubLocked adds s or replaces the subscription of the same subscriber
// (xname and agent), keeping the list in etcd key order.
func (e *Emulator) putSubLocked(s subscription) {
	e.subs = slices.DeleteFunc(e.subs, func(o subscription) bool { return o.xname == s.xname && o.agent == s.agent })
	e.subs = append(e.subs, s)
	slices.SortFunc(e.subs, func(a, b subscription) int { return strings.Compare(a.key(), b.key()) })
}

// Subscribe adds (or replaces) the subscription orca makes for xname when
// restarted: see OrcaSubscription.
func (e *Emulator) Subscribe(xname string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subscribeLocked(xname)
}

func (e *Emulator) subscribeLocked(xname string) {
	e.putSubLocked(fromSubscription(OrcaSubscription(xname)))
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

// Unsubscribe removes every subscription of subscriber xname.
func (e *Emulator) Unsubscribe(xname string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs = slices.DeleteFunc(e.subs, func(s subscription) bool { return strings.EqualFold(s.xname, xname) })
}

// ClearSubscriptions removes all subscriptions and leaves HMNFD ready (an
// etcd rebuild as the emulator modelled it before readiness was: see
// WipeHMNFD for what the real service does).
func (e *Emulator) ClearSubscriptions() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs = nil
}

// WipeHMNFD plays the runbook's etcd rebuild under a running HMNFD as the
// real service was observed to take it: every subscription is gone and
// readiness answers 503 until RestartHMNFD, because HMNFD writes its
// health key only at start-up.
func (e *Emulator) WipeHMNFD() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs = nil
	e.hmnfdNotReady = true
}

// RestartHMNFD plays HMNFD's process restarting (its pods deleted and
// recreated): it writes its health key again and is ready.
// Subscriptions are not brought back: nodes must subscribe again.
func (e *Emulator) RestartHMNFD() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hmnfdNotReady = false
}

// HMNFDReady reports whether readiness answers 204.
func (e *Emulator) HMNFDReady() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.hmnfdNotReady
}

func (e *Emulator) writeSubs(w http.ResponseWriter, xname string) {
	e.mu.Lock()
	subs := e.listSubsLocked(xname)
	e.mu.Unlock()
	// HMNFD's struct has no omitempty on the list: none is null.
	writeJSON(w, http.StatusOK, csm.SubscriptionList{SubscriptionList: subs})
}

func (e *Emulator) getSubscriptions(w http.ResponseWriter, r *http.Request) {
	e.writeSubs(w, "")
}

func (e *Emulator) getSubscriptionsOf(w http.ResponseWriter, r *http.Request) {
	e.writeSubs(w, r.PathValue("xname"))
}

// getAgentsNotRouted: the v2 spec lists GET …/{xname}/agents, the service
// routes only DELETE there (observed: 405, empty body).
func (e *Emulator) getAgentsNotRouted(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodDelete)
	w.WriteHeader(http.StatusMethodNotAllowed)
}

func (e *Emulator) getReadiness(w http.ResponseWriter, r *http.Request) {
	if !e.HMNFDReady() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (e *Emulator) getHMNFDHealth(w http.ResponseWriter, r *http.Request) {
	h := map[string]string{"KvStore": "KV Store Connected, Health key present", "MsgBus": "Not Connected",
		"HsmSubscriptions": "HSM Subscriptions Present", "PruneMap": "No contents", "WorkerPool": "Workers:500, Jobs:0"}
	if !e.HMNFDReady() {
		h["KvStore"], h["HsmSubscriptions"] = "Health key not present", "HSM Subscription key not present"
	}
	writeJSON(w, http.StatusOK, h)
}

var xnameRE = regexp.MustCompile(`^x[0-9]+([a-z][0-9]+)*$`)

// subscribeBody is a v1 or v2 subscription POST, lower-cased before it is
// parsed (as HMNFD does).
type subscribeBody struct {
	Subscriber     string   `json:"subscriber"`
	Components     []string `json:"components"`
	States         []string `json:"states"`
	Roles          []string `json:"roles"`
	SubRoles       []string `json:"subroles"`
	SoftwareStatus []string `json:"softwarestatus"`
	Enabled        *bool    `json:"enabled"`
	URL            string   `json:"url"`
}

func readSubscribeBody(r *http.Request) (subscribeBody, error) {
	var b subscribeBody
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return b, err
	}
	// encoding/json matches keys case-insensitively; the lower-casing is
	// for the values.
	err = json.Unmarshal([]byte(strings.ToLower(string(raw))), &b)
	return b, err
}

func (e *Emulator) subscribe(w http.ResponseWriter, r *http.Request, xname, agent string, b subscribeBody) {
	var missing []string
	if len(b.Components) == 0 {
		missing = append(missing, "Components")
	}
	if b.URL == "" {
		missing = append(missing, "Url")
	}
	if len(b.States) == 0 && len(b.SoftwareStatus) == 0 && b.Enabled == nil && len(b.Roles) == 0 && len(b.SubRoles) == 0 {
		missing = append(missing, "one of States, SoftwareStatus, Enabled, Roles, SubRoles")
	}
	if len(missing) > 0 {
		writeProblem(w, http.StatusBadRequest, "Invalid Request", "Missing required field(s): "+strings.Join(missing, ", "))
		return
	}
	s := subscription{xname: xname, agent: agent, components: b.Components, states: b.States, roles: b.Roles,
		subRoles: b.SubRoles, softwareStatus: b.SoftwareStatus, enabled: b.Enabled != nil, url: b.URL}
	e.mu.Lock()
	for _, o := range e.subs {
		if o.key() == s.key() {
			e.mu.Unlock()
			writeProblem(w, http.StatusBadRequest, "Invalid Request", "Subscription exists, cannot modify in POST operation")
			return
		}
	}
	e.putSubLocked(s)
	e.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// postSubscribeV1: POST /hmi/v1/subscribe {"Subscriber":"[agent@]xname",...}.
func (e *Emulator) postSubscribeV1(w http.ResponseWriter, r *http.Request) {
	b, err := readSubscribeBody(r)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "Invalid Request", "Error decoding JSON: "+err.Error())
		return
	}
	parts := strings.Split(b.Subscriber, "@")
	xname, agent := parts[len(parts)-1], ""
	if len(parts) == 2 {
		agent = parts[0]
	}
	if len(parts) > 2 || !xnameRE.MatchString(xname) {
		writeProblem(w, http.StatusBadRequest, "Invalid Request", "Subcriber field is not a valid XName")
		return
	}
	e.subscribe(w, r, xname, agent, b)
}

// postSubscribeV2: POST /hmi/v2/subscriptions/{xname}/agents/{agent}; any
// Subscriber in the body is ignored, the agent keeps its case.
func (e *Emulator) postSubscribeV2(w http.ResponseWriter, r *http.Request) {
	xname := strings.ToLower(r.PathValue("xname"))
	if !xnameRE.MatchString(xname) {
		writeProblem(w, http.StatusBadRequest, "Invalid Request", "Invalid XName in URL path")
		return
	}
	b, err := readSubscribeBody(r)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "Invalid Request", "Error decoding JSON: "+err.Error())
		return
	}
	e.subscribe(w, r, xname, r.PathValue("agent"), b)
}

func (e *Emulator) ctlWipeHMNFD(w http.ResponseWriter, r *http.Request) {
	e.WipeHMNFD()
	w.WriteHeader(http.StatusNoContent)
}

func (e *Emulator) ctlRestartHMNFD(w http.ResponseWriter, r *http.Request) {
	e.RestartHMNFD()
	w.WriteHeader(http.StatusNoContent)
}
