package csm

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// BOS paths (CSM-APIS.md §2). BOS 1.x (CSM 1.0, 1.2) serves only /v1; BOS
// 2.0–2.16 (CSM 1.3–1.5) both; BOS 2.17+ (CSM 1.6) only /v2.
const (
	PathBOSv1 = "/apis/bos/v1"
	PathBOSv2 = "/apis/bos/v2"
	// v1: singular; POST creates or silently replaces; there is no PUT and
	// no validation endpoint.
	PathBOSv1SessionTemplate = "/apis/bos/v1/sessiontemplate"
	PathBOSv1Session         = "/apis/bos/v1/session"
	// v2: plural; PUT creates or replaces.
	PathBOSSessionTemplates  = "/apis/bos/v2/sessiontemplates"
	PathBOSSessionTemplatesV = "/apis/bos/v2/sessiontemplatesvalid"
	PathBOSSessions          = "/apis/bos/v2/sessions"
)

func (c *Client) bosV1() bool { return c.apis.BOSVersion() == api.APIv1 }

// SessionTemplates lists BOS session templates through the BOS API version
// c speaks (of Config.Tenant, if set, on v2).
func (c *Client) SessionTemplates(ctx context.Context) ([]SessionTemplate, error) {
	p := PathBOSSessionTemplates
	if c.bosV1() {
		p = PathBOSv1SessionTemplate
	}
	var out []SessionTemplate
	err := c.do(ctx, request{op: "SessionTemplates", method: http.MethodGet, path: p, out: &out,
		want: "a JSON array of BOS session templates"})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SessionTemplate returns one BOS session template.
func (c *Client) SessionTemplate(ctx context.Context, name string) (SessionTemplate, error) {
	var out SessionTemplate
	if err := c.needName("SessionTemplate", "name", name); err != nil {
		return out, err
	}
	p := PathBOSSessionTemplates
	if c.bosV1() {
		p = PathBOSv1SessionTemplate
	}
	err := c.do(ctx, request{op: "SessionTemplate", method: http.MethodGet, path: p + "/" + url.PathEscape(name), out: &out,
		want: "a JSON object describing a BOS session template"})
	return out, err
}

// PutSessionTemplate creates or replaces the template named tmpl.Name and
// returns what BOS stored.
//
// On v2 it PUTs /v2/sessiontemplates/{name} with a body that leaves out
// name, tenant and links: BOS marks them read-only and its request
// validation refuses a body that carries one (the name comes from the URL,
// the tenant from the Cray-Tenant-Name header). A template with keys BOS v2
// does not accept (V1OnlyKeys) is refused here, before anything is sent:
// convert it with ConvertToV2 first, so that what is dropped is reported.
//
// On v1 it POSTs /v1/sessiontemplate (which replaces a template of that
// name) with the name in the body and without links and tenant, then reads
// the template back: BOS 1.x answers the POST with a key string, not the
// template.
func (c *Client) PutSessionTemplate(ctx context.Context, tmpl SessionTemplate) (SessionTemplate, error) {
	var out SessionTemplate
	if err := c.needName("PutSessionTemplate", "template name", tmpl.Name); err != nil {
		return out, err
	}
	name := tmpl.Name
	body := withoutServerSet(tmpl)
	if c.bosV1() {
		body.Name = name
		var key json.RawMessage
		err := c.do(ctx, request{op: "PutSessionTemplate", method: http.MethodPost, path: PathBOSv1SessionTemplate, body: body, out: &key,
			want: "a JSON string naming the stored BOS session template"})
		if err != nil {
			return out, err
		}
		return c.SessionTemplate(ctx, name)
	}
	if bad := V1OnlyKeys(tmpl); len(bad) > 0 {
		return out, c.newError("PutSessionTemplate", http.MethodPut, c.cfg.BaseURL+PathBOSSessionTemplates+"/"+url.PathEscape(name), 0, BadRequest,
			fmt.Sprintf("session template %s has keys BOS v2 does not accept (%s): convert it with ConvertToV2, which reports what it drops", name, strings.Join(bad, ", ")), nil)
	}
	body.Name = ""
	err := c.do(ctx, request{op: "PutSessionTemplate", method: http.MethodPut, path: PathBOSSessionTemplates + "/" + url.PathEscape(name), body: body, out: &out,
		want: "a JSON object describing the stored BOS session template"})
	return out, err
}

// withoutServerSet copies t without the members BOS sets itself: tenant
// and links (and name, which callers put back where the API wants it).
func withoutServerSet(t SessionTemplate) SessionTemplate {
	t.Name, t.Tenant, t.Links = "", "", nil
	if t.Extra != nil {
		extra := make(map[string]json.RawMessage, len(t.Extra))
		for k, v := range t.Extra {
			switch k {
			case "name", "tenant", "links":
			default:
				extra[k] = v
			}
		}
		t.Extra = extra
	}
	return t
}

// Members a BOS v2 session template may carry (V2SessionTemplate, V2BootSet
// and V2CfsParameters of bos 2.0.5 and 2.10.2, all additionalProperties:
// false; "arch" is 2.10+). Read-only name, tenant and links are left out by
// PutSessionTemplate.
var (
	v2TemplateKeys = []string{"name", "tenant", "links", "description", "enable_cfs", "cfs", "boot_sets"}
	v2BootSetKeys  = []string{"name", "path", "cfs", "type", "etag", "kernel_parameters", "node_list", "node_roles_groups",
		"node_groups", "arch", "rootfs_provider", "rootfs_provider_passthrough"}
	v2CFSKeys = []string{"configuration"}
)

// V1OnlyKeys lists, as dotted paths ("partition", "cfs.clone_url",
// "boot_sets.compute.network"), the members of t that a BOS v2 session
// template does not have: BOS v2 refuses a PUT that carries any of them.
func V1OnlyKeys(t SessionTemplate) []string {
	var out []string
	for _, k := range extraKeys(t.Extra) {
		if !slices.Contains(v2TemplateKeys, k) {
			out = append(out, k)
		}
	}
	if t.CFS != nil {
		for _, k := range extraKeys(t.CFS.Extra) {
			if !slices.Contains(v2CFSKeys, k) {
				out = append(out, "cfs."+k)
			}
		}
	}
	for _, name := range sortedKeys(t.BootSets) {
		bs := t.BootSets[name]
		for _, k := range extraKeys(bs.Extra) {
			if !slices.Contains(v2BootSetKeys, k) {
				out = append(out, "boot_sets."+name+"."+k)
			}
		}
		if bs.CFS != nil {
			for _, k := range extraKeys(bs.CFS.Extra) {
				if !slices.Contains(v2CFSKeys, k) {
					out = append(out, "boot_sets."+name+".cfs."+k)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// ConvertToV2 turns a template read through BOS v1 into one BOS v2 accepts
// by dropping the members v2 does not have, and returns them (V1OnlyKeys).
// BOS itself does the same when it migrates v1 templates (bos 2.7.0+
// strips v1-only fields). A v1 template's "cfs" block keeps only
// "configuration"; an emptied block is dropped.
func ConvertToV2(t SessionTemplate) (SessionTemplate, []string) {
	dropped := V1OnlyKeys(t)
	if len(dropped) == 0 {
		return t, nil
	}
	t.Extra = keepKeys(t.Extra, v2TemplateKeys)
	if t.CFS != nil {
		cfs := *t.CFS
		cfs.Extra = keepKeys(cfs.Extra, v2CFSKeys)
		t.CFS = &cfs
		if cfs.Configuration == "" && len(cfs.Extra) == 0 {
			t.CFS = nil
		}
	}
	if t.BootSets != nil {
		sets := make(map[string]BootSet, len(t.BootSets))
		for name, bs := range t.BootSets {
			bs.Extra = keepKeys(bs.Extra, v2BootSetKeys)
			if bs.CFS != nil {
				cfs := *bs.CFS
				cfs.Extra = keepKeys(cfs.Extra, v2CFSKeys)
				bs.CFS = &cfs
			}
			sets[name] = bs
		}
		t.BootSets = sets
	}
	return t, dropped
}

func keepKeys(m map[string]json.RawMessage, keep []string) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	out := map[string]json.RawMessage{}
	for k, v := range m {
		if slices.Contains(keep, k) {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// extraKeys lists the keys of Extra, sorted. Extra also keeps modelled
// members that arrived empty; every modelled member is a v2 member.
func extraKeys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Verdicts of TemplateValidation.
const (
	TemplateValid   = "valid"
	TemplateWarning = "warning"
	TemplateInvalid = "invalid"
)

// TemplateValidation is BOS v2's answer about a session template.
type TemplateValidation struct {
	// Verdict is TemplateValid, TemplateWarning or TemplateInvalid.
	Verdict string `json:"verdict"`
	// Message is BOS's text: "Valid" or what it found.
	Message string `json:"message"`
}

// ValidateSessionTemplate asks BOS v2 whether a session could be launched
// from the template (GET /v2/sessiontemplatesvalid/{name}). BOS answers 200
// with a string: "Valid", or the message of validate_boot_sets. That
// function returns an error code and a message; the endpoint drops the
// code. Its warnings (a boot set's initrd or boot_parameters that cannot be
// located: the boot may still work, the kernel was found) carry the word
// "Warning" in the message, its errors (no boot set, no node specifier, no
// kernel, no boot artifacts) do not. So a message containing "warning" is a
// TemplateWarning, anything else but "Valid" TemplateInvalid.
//
// BOS v1 has no validation endpoint: on v1 this is a BadRequest error; use
// CheckTemplate instead.
func (c *Client) ValidateSessionTemplate(ctx context.Context, name string) (TemplateValidation, error) {
	if err := c.needName("ValidateSessionTemplate", "name", name); err != nil {
		return TemplateValidation{}, err
	}
	u := PathBOSSessionTemplatesV + "/" + url.PathEscape(name)
	if c.bosV1() {
		return TemplateValidation{}, c.newError("ValidateSessionTemplate", "", "", 0, BadRequest,
			"BOS v1 (CSM 1.0, 1.2) has no session template validation endpoint: check the template with csm.CheckTemplate", nil)
	}
	var raw json.RawMessage
	err := c.do(ctx, request{op: "ValidateSessionTemplate", method: http.MethodGet, path: u, out: &raw,
		want: `a JSON string ("Valid" or the problem found)`})
	if err != nil {
		return TemplateValidation{}, err
	}
	var msg string
	if err := json.Unmarshal(raw, &msg); err != nil {
		return TemplateValidation{}, c.newError("ValidateSessionTemplate", http.MethodGet, c.cfg.BaseURL+u, http.StatusOK, BadResponse,
			fmt.Sprintf(`expected a JSON string ("Valid" or the problem found), got %s`, snippet(raw)), err)
	}
	return classifyValidation(msg), nil
}

func classifyValidation(msg string) TemplateValidation {
	m := strings.TrimSpace(msg)
	switch {
	case m == "Valid":
		return TemplateValidation{Verdict: TemplateValid, Message: m}
	case strings.Contains(strings.ToLower(m), "warning"):
		return TemplateValidation{Verdict: TemplateWarning, Message: m}
	}
	return TemplateValidation{Verdict: TemplateInvalid, Message: m}
}

// CheckTemplate is what can be checked of a template without BOS's
// validation endpoint (BOS v1): the checks of validate_boot_sets that need
// no other service. It returns "" when none fails: at least one boot set,
// and each with path, type and a node specifier (node_list,
// node_roles_groups or node_groups).
func CheckTemplate(t SessionTemplate) string {
	if len(t.BootSets) == 0 {
		return fmt.Sprintf("session template %s has no boot set", t.Name)
	}
	for _, name := range sortedKeys(t.BootSets) {
		bs := t.BootSets[name]
		var missing []string
		if bs.Path == "" {
			missing = append(missing, "path")
		}
		if bs.Type == "" {
			missing = append(missing, "type")
		}
		if !bs.HasNodes() {
			missing = append(missing, "a node specifier (node_list, node_roles_groups or node_groups)")
		}
		if len(missing) > 0 {
			return fmt.Sprintf("session template %s boot set %s has no %s", t.Name, name, strings.Join(missing, ", no "))
		}
	}
	return ""
}

// ---- sessions --------------------------------------------------------------

// bosV1SessionCreate is POST /v1/session. templateUuid is the one field
// every BOS with /v1 accepts: BOS 1.7.x (CSM 1.0) refuses templateName
// (additionalProperties: false); 1.9+ prefers templateName but still takes
// templateUuid.
type bosV1SessionCreate struct {
	Operation    string `json:"operation"`
	TemplateUUID string `json:"templateUuid"`
	Limit        string `json:"limit,omitempty"`
}

// bosV1Session is a v1 session as POST /v1/session and GET
// /v1/session/{id} describe it.
type bosV1Session struct {
	Operation    string `json:"operation"`
	TemplateUUID string `json:"templateUuid,omitempty"`
	TemplateName string `json:"templateName,omitempty"`
	Limit        string `json:"limit,omitempty"`
	Links        []struct {
		Rel  string `json:"rel"`
		Href string `json:"href"`
	} `json:"links,omitempty"`
}

func (s bosV1Session) template() string {
	if s.TemplateName != "" {
		return s.TemplateName
	}
	return s.TemplateUUID
}

// bosV1Status is GET /v1/session/{id}/status.
type bosV1Status struct {
	Metadata struct {
		StartTime  string `json:"start_time,omitempty"`
		StopTime   string `json:"stop_time,omitempty"`
		Complete   bool   `json:"complete"`
		InProgress bool   `json:"in_progress"`
		ErrorCount int    `json:"error_count"`
	} `json:"metadata"`
}

// CreateBOSSession starts a BOS session, e.g. a shutdown of the nodes in
// Limit with template TemplateName.
//
// On v2 it POSTs /v2/sessions; a Name makes it idempotent (409 when taken).
// On v1 it POSTs /v1/session with templateUuid; BOS names the session
// itself and the id appears only in the answer's links, so Name is
// ignored and the returned session's Name is that id.
func (c *Client) CreateBOSSession(ctx context.Context, req BOSSessionRequest) (BOSSession, error) {
	var out BOSSession
	if err := c.needName("CreateBOSSession", "TemplateName", req.TemplateName); err != nil {
		return out, err
	}
	if err := c.needName("CreateBOSSession", "Operation", req.Operation); err != nil {
		return out, err
	}
	if !c.bosV1() {
		err := c.do(ctx, request{op: "CreateBOSSession", method: http.MethodPost, path: PathBOSSessions, body: req, out: &out,
			want: "a JSON object describing the created BOS session"})
		return out, err
	}
	var got bosV1Session
	const want = `a JSON object with links [{"rel":"session","href":"/v1/session/<id>"}]`
	err := c.do(ctx, request{op: "CreateBOSSession", method: http.MethodPost, path: PathBOSv1Session,
		body: bosV1SessionCreate{Operation: req.Operation, TemplateUUID: req.TemplateName, Limit: req.Limit}, out: &got, want: want})
	if err != nil {
		return out, err
	}
	id := ""
	for _, l := range got.Links {
		if l.Rel == "session" {
			id = path.Base(l.Href)
		}
	}
	if id == "" || id == "." || id == "/" {
		return out, c.newError("CreateBOSSession", http.MethodPost, c.cfg.BaseURL+PathBOSv1Session, http.StatusCreated, BadResponse,
			"expected "+want+": no session link", nil)
	}
	return BOSSession{Name: id, TemplateName: req.TemplateName, Operation: req.Operation, Limit: req.Limit,
		Status: BOSSessionStatus{Status: "pending"}}, nil
}

// BOSSession returns one BOS session by name (v2) or id (v1). On v1 the
// status comes from /v1/session/{id}/status: complete, else running when
// in progress, else pending; a non-zero error_count is the Error.
func (c *Client) BOSSession(ctx context.Context, name string) (BOSSession, error) {
	var out BOSSession
	if err := c.needName("BOSSession", "name", name); err != nil {
		return out, err
	}
	if !c.bosV1() {
		err := c.do(ctx, request{op: "BOSSession", method: http.MethodGet, path: PathBOSSessions + "/" + url.PathEscape(name), out: &out,
			want: "a JSON object describing a BOS session"})
		return out, err
	}
	var s bosV1Session
	p := PathBOSv1Session + "/" + url.PathEscape(name)
	if err := c.do(ctx, request{op: "BOSSession", method: http.MethodGet, path: p, out: &s,
		want: "a JSON object describing a BOS v1 session"}); err != nil {
		return out, err
	}
	var st bosV1Status
	if err := c.do(ctx, request{op: "BOSSession", method: http.MethodGet, path: p + "/status", out: &st,
		want: `a JSON object {"metadata":{"complete","in_progress","error_count",...}}`}); err != nil {
		return out, err
	}
	out = BOSSession{Name: name, TemplateName: s.template(), Operation: s.Operation, Limit: s.Limit}
	md := st.Metadata
	out.Status = BOSSessionStatus{Status: "pending", StartTime: md.StartTime, EndTime: md.StopTime}
	switch {
	case md.Complete:
		out.Status.Status = "complete"
	case md.InProgress:
		out.Status.Status = "running"
	}
	if md.ErrorCount > 0 {
		out.Status.Error = fmt.Sprintf("%d errors (GET %s/status)", md.ErrorCount, p)
	}
	return out, nil
}

// BOSSessionIDs lists the ids of the BOS v1 sessions (GET /v1/session
// answers a list of id strings, not the session objects its spec shows).
func (c *Client) BOSSessionIDs(ctx context.Context) ([]string, error) {
	var out []string
	err := c.do(ctx, request{op: "BOSSessionIDs", method: http.MethodGet, path: PathBOSv1Session, out: &out,
		want: "a JSON array of BOS v1 session ids"})
	return out, err
}
