package csmemu

import (
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
)

// BOS request validation as connexion 2.x does it from each release's
// openapi.yaml (../shared/csm-specs/bos-*.yaml): readOnly members and
// members the schema does not have (additionalProperties: false) are
// refused with 400.

var (
	// v1 SessionTemplate, BootSet and CfsParameters (bos 1.7.103, 1.10.23).
	v1TemplateKeys = []string{"templateUrl", "templateBody", "name", "description", "cfs_url", "cfs_branch", "enable_cfs", "cfs", "partition", "boot_sets", "links"}
	v1BootSetKeys  = []string{"name", "boot_ordinal", "shutdown_ordinal", "path", "type", "etag", "kernel_parameters", "network",
		"node_list", "node_roles_groups", "node_groups", "rootfs_provider", "rootfs_provider_passthrough"}
	v1CFSKeys = []string{"clone_url", "branch", "commit", "playbook", "configuration"}
	// v2 V2SessionTemplate (less the read-only members), V2BootSet, V2CfsParameters.
	v2TemplateKeys = []string{"description", "enable_cfs", "cfs", "boot_sets"}
	v2BootSetKeys  = []string{"name", "path", "cfs", "type", "etag", "kernel_parameters", "node_list", "node_roles_groups",
		"node_groups", "rootfs_provider", "rootfs_provider_passthrough"}
	v2CFSKeys = []string{"configuration"}
)

// unexpected is jsonschema's additionalProperties message for m at where.
func unexpected(m map[string]any, allowed []string, where string) string {
	var bad []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			bad = append(bad, fmt.Sprintf("'%s'", k))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	sort.Strings(bad)
	verb := "was"
	if len(bad) > 1 {
		verb = "were"
	}
	msg := fmt.Sprintf("Additional properties are not allowed (%s %s unexpected)", strings.Join(bad, ", "), verb)
	if where != "" {
		msg += " - '" + where + "'"
	}
	return msg
}

// templateSchemaProblem checks a template body against the release's
// schema; "" when it passes.
func templateSchemaProblem(m map[string]any, top, bootSet, cfs []string, bootSetsRequired bool) string {
	if p := unexpected(m, top, ""); p != "" {
		return p
	}
	if c, ok := m["cfs"].(map[string]any); ok {
		if p := unexpected(c, cfs, "cfs"); p != "" {
			return p
		}
	}
	sets, _ := m["boot_sets"].(map[string]any)
	if bootSetsRequired && len(sets) == 0 {
		return "'boot_sets' is a required property and must hold at least one boot set"
	}
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		bs, ok := sets[name].(map[string]any)
		if !ok {
			return fmt.Sprintf("%v is not of type 'object' - 'boot_sets.%s'", sets[name], name)
		}
		if p := unexpected(bs, bootSet, "boot_sets."+name); p != "" {
			return p
		}
		for _, req := range []string{"path", "type"} {
			if _, ok := bs[req]; !ok {
				return fmt.Sprintf("'%s' is a required property - 'boot_sets.%s'", req, name)
			}
		}
		if c, ok := bs["cfs"].(map[string]any); ok {
			if p := unexpected(c, cfs, "boot_sets."+name+".cfs"); p != "" {
				return p
			}
		}
	}
	return ""
}

// v2SchemaProblem checks a v2 PUT body (read-only members already refused).
// BOS 2.10+ adds a boot set's arch; 2.17+ (CSM 1.6) requires boot_sets.
func v2SchemaProblem(m map[string]any, r api.Release) string {
	bootSet := v2BootSetKeys
	if r == api.CSM15 || r == api.CSM16 {
		bootSet = append(slices.Clone(bootSet), "arch")
	}
	return templateSchemaProblem(m, v2TemplateKeys, bootSet, v2CFSKeys, r == api.CSM16)
}

var k8sName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func (e *Emulator) getBOSVersion(v string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// The numbers are integers in the Version schema up to BOS 2.0.x,
		// strings in 2.10's.
		var major, minor, patch any = 1, 0, 0
		if v == "v2" {
			major = 2
		}
		if r := e.surface.release; r == api.CSM15 || r == api.CSM16 {
			major, minor, patch = fmt.Sprint(major), "0", "0"
		}
		writeJSON(w, http.StatusOK, map[string]any{"major": major, "minor": minor, "patch": patch,
			"links": []map[string]string{{"rel": "self", "href": "/" + v}}})
	}
}

// listTemplatesV1: GET /v1/sessiontemplate (the same store v2 reads, as
// BOS 2.x keeps v1 and v2 templates in one database; v1 has no tenants).
func (e *Emulator) listTemplatesV1(w http.ResponseWriter, r *http.Request) {
	e.serveTemplateList(w, func(k tmplKey) bool { return k.tenant == "" })
}

func (e *Emulator) getTemplateV1(w http.ResponseWriter, r *http.Request) {
	e.serveTemplate(w, tmplKey{name: r.PathValue("name")})
}

// postTemplateV1: POST /v1/sessiontemplate creates or silently replaces
// the template named in the body. BOS 1.x answers 201 with its etcd key
// ("/sessionTemplate/<name>"), BOS 2.x with the name.
func (e *Emulator) postTemplateV1(w http.ResponseWriter, r *http.Request) {
	m, ok := decodeObject(w, r)
	if !ok {
		return
	}
	if _, ok := m["links"]; ok {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "Property is read-only - 'links'")
		return
	}
	name, _ := m["name"].(string)
	if name == "" {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "'name' is a required property")
		return
	}
	if !k8sName.MatchString(name) || len(name) > 45 {
		writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("'%s' does not match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$' or is longer than 45 - 'name'", name))
		return
	}
	if p := templateSchemaProblem(m, v1TemplateKeys, v1BootSetKeys, v1CFSKeys, false); p != "" {
		writeProblem(w, http.StatusBadRequest, "Bad Request", p)
		return
	}
	e.mu.Lock()
	e.templates[tmplKey{name: name}] = m
	e.mu.Unlock()
	if e.surface.bos1x {
		writeJSON(w, http.StatusCreated, "/sessionTemplate/"+name)
		return
	}
	writeJSON(w, http.StatusCreated, name)
}

// postBOSSessionV1: POST /v1/session. BOS 1.7 (CSM 1.0) requires
// templateUuid and has no templateName; later ones take either.
func (e *Emulator) postBOSSessionV1(w http.ResponseWriter, r *http.Request) {
	m, ok := decodeObject(w, r)
	if !ok {
		return
	}
	allowed := []string{"operation", "templateUuid", "templateName", "job", "limit", "links"}
	if e.surface.bos17 {
		allowed = []string{"operation", "templateUuid", "job", "limit", "links"}
	}
	if p := unexpected(m, allowed, ""); p != "" {
		writeProblem(w, http.StatusBadRequest, "Bad Request", p)
		return
	}
	if _, ok := m["links"]; ok {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "Property is read-only - 'links'")
		return
	}
	op, _ := m["operation"].(string)
	if op == "" {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "'operation' is a required property")
		return
	}
	op = strings.ToLower(op)
	if !slices.Contains([]string{"boot", "configure", "reboot", "shutdown"}, op) {
		writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("'%s' does not match '^(?i)boot|configure|reboot|shutdown$' - 'operation'", op))
		return
	}
	field := "templateName"
	tmpl, _ := m["templateName"].(string)
	if tmpl == "" {
		field = "templateUuid"
		tmpl, _ = m["templateUuid"].(string)
	}
	if tmpl == "" {
		if e.surface.bos17 {
			writeProblem(w, http.StatusBadRequest, "Bad Request", "'templateUuid' is a required property")
		} else {
			writeProblem(w, http.StatusBadRequest, "Bad Request", "templateName or templateUuid is required")
		}
		return
	}
	limit, _ := m["limit"].(string)
	e.mu.Lock()
	tm, ok := e.templates[tmplKey{name: tmpl}]
	if !ok {
		e.mu.Unlock()
		writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("Session Template %s does not exist", tmpl))
		return
	}
	id := newUUID()
	now := time.Now()
	nodes := limitNodes(e.templateNodesLocked(tm), limit)
	b := &bosEntry{
		s: csm.BOSSession{Name: id, TemplateName: tmpl, Operation: op, Limit: limit, Components: strings.Join(nodes, ","),
			Status: csm.BOSSessionStatus{Status: "pending", StartTime: now.UTC().Format(time.RFC3339)}},
		created: now, step: e.bosStep, nodes: nodes, states: bosStates(op), v1: true, templateField: field,
	}
	e.bosSessions = append(e.bosSessions, b)
	e.mu.Unlock()
	href := "/v1/session/" + id
	out := map[string]any{"operation": op, field: tmpl, "job": "boa-" + id,
		"links": []map[string]string{
			{"rel": "session", "href": href, "jobId": "boa-" + id, "type": "GET"},
			{"rel": "status", "href": href + "/status", "type": "GET"},
		}}
	if limit != "" {
		out["limit"] = limit
	}
	writeJSON(w, http.StatusCreated, out)
}

// listBOSSessionsV1: GET /v1/session answers the ids (strings), not the
// Session objects its spec shows.
func (e *Emulator) listBOSSessionsV1(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	ids := []string{}
	for _, b := range e.bosSessions {
		if b.v1 {
			ids = append(ids, b.s.Name)
		}
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, ids)
}

func (e *Emulator) findBOSv1Locked(id string) *bosEntry {
	for _, b := range e.bosSessions {
		if b.v1 && b.s.Name == id {
			return b
		}
	}
	return nil
}

// v1Metadata is a v1 session's GenericMetadata.
func v1Metadata(b *bosEntry) map[string]any {
	md := map[string]any{"start_time": b.s.Status.StartTime, "complete": b.s.Status.Status == "complete",
		"in_progress": b.s.Status.Status == "running", "error_count": 0}
	if b.s.Status.EndTime != "" {
		md["stop_time"] = b.s.Status.EndTime
	}
	return md
}

// getBOSSessionV1: GET /v1/session/{id} (bos 1.10.23 get_v1_session: the
// session record plus its status metadata).
func (e *Emulator) getBOSSessionV1(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e.mu.Lock()
	e.advanceBOSLocked(time.Now())
	b := e.findBOSv1Locked(id)
	var out map[string]any
	if b != nil {
		out = v1Metadata(b)
		out["operation"], out[b.templateField], out["job"] = b.s.Operation, b.s.TemplateName, "boa-"+id
		out["status_link"] = "/v1/session/" + id + "/status"
		if b.s.Limit != "" {
			out["limit"] = b.s.Limit
		}
	}
	e.mu.Unlock()
	if b == nil {
		writeProblem(w, http.StatusNotFound, "Session could not be found.", "Session "+id+" could not be found")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// getBOSSessionStatusV1: GET /v1/session/{id}/status (SessionStatus).
func (e *Emulator) getBOSSessionStatusV1(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e.mu.Lock()
	e.advanceBOSLocked(time.Now())
	b := e.findBOSv1Locked(id)
	var out map[string]any
	if b != nil {
		sets := []string{}
		if tm, ok := e.templates[tmplKey{name: b.s.TemplateName}]; ok {
			bs, _ := tm["boot_sets"].(map[string]any)
			sets = slices.Sorted(maps.Keys(bs))
		}
		out = map[string]any{"id": id, "boot_sets": sets, "metadata": v1Metadata(b),
			"links": []map[string]string{{"rel": "self", "href": "/v1/session/" + id + "/status"}}}
	}
	e.mu.Unlock()
	if b == nil {
		writeProblem(w, http.StatusNotFound, "Session could not be found.", "Session "+id+" could not be found")
		return
	}
	writeJSON(w, http.StatusOK, out)
}
