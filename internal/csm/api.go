package csm

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// API paths, relative to the gateway (CSM-APIS.md).
const (
	PathHSMComponents        = "/apis/smd/hsm/v2/State/Components"
	PathHMNFDSubscriptions   = "/apis/hmnfd/hmi/v2/subscriptions"
	PathCRUSSession          = "/apis/crus/session"
	PathFASLoader            = "/apis/fas/v1/loader"
	PathFASLoaderNexus       = "/apis/fas/v1/loader/nexus"
	PathFASImages            = "/apis/fas/v1/images"
	PathFASActions           = "/apis/fas/v1/actions"
	PathBOSSessionTemplates  = "/apis/bos/v2/sessiontemplates"
	PathBOSSessionTemplatesV = "/apis/bos/v2/sessiontemplatesvalid"
	PathBOSSessions          = "/apis/bos/v2/sessions"
	PathCPSContents          = "/apis/v2/cps/contents"
	PathCPSTransports        = "/apis/v2/cps/transports"
)

// ---- HSM ---------------------------------------------------------------

// ComponentQuery filters HSM components. Values within one field are ORed,
// different fields are ANDed; empty fields do not filter.
type ComponentQuery struct {
	// IDs are xnames (id=); keep a query to a few hundred so the URL stays
	// under the gateway's limit.
	IDs                            []string
	Types, Roles, SubRoles, States []string
}

func (q ComponentQuery) encode() string {
	// Built by hand to keep the documented parameter order
	// (id, type, role, subrole, state); url.Values would sort them.
	var parts []string
	add := func(key string, vals []string) {
		for _, v := range vals {
			parts = append(parts, key+"="+url.QueryEscape(v))
		}
	}
	add("id", q.IDs)
	add("type", q.Types)
	add("role", q.Roles)
	add("subrole", q.SubRoles)
	add("state", q.States)
	if len(parts) == 0 {
		return ""
	}
	return "?" + strings.Join(parts, "&")
}

// Components lists HSM components matching q.
func (c *Client) Components(ctx context.Context, q ComponentQuery) ([]Component, error) {
	return c.components(ctx, "Components", q)
}

func (c *Client) components(ctx context.Context, op string, q ComponentQuery) ([]Component, error) {
	var out ComponentArray
	err := c.do(ctx, request{op: op, method: http.MethodGet, path: PathHSMComponents + q.encode(), out: &out,
		want: `a JSON object {"Components":[...]} (HSM component list)`})
	if err != nil {
		return nil, err
	}
	return out.Components, nil
}

// ReadyComputeNodes lists compute nodes in state Ready: the nodes whose
// cray-dvs-orca/cray-orca daemon must be restarted to re-subscribe with
// HMNFD (GET …/State/Components?type=Node&role=Compute&state=Ready). It
// replaces the runbook's `sat status | grep Ready | grep Compute`.
func (c *Client) ReadyComputeNodes(ctx context.Context) ([]Component, error) {
	return c.components(ctx, "ReadyComputeNodes", ComponentQuery{Types: []string{"Node"}, Roles: []string{"Compute"}, States: []string{"Ready"}})
}

// ComponentsByState lists components of any type in any of states
// (e.g. "Ready", "On"). With no states it lists every component.
func (c *Client) ComponentsByState(ctx context.Context, states ...string) ([]Component, error) {
	return c.components(ctx, "ComponentsByState", ComponentQuery{States: states})
}

// ---- HMNFD -------------------------------------------------------------

// Subscriptions lists HMNFD v2 subscriptions.
func (c *Client) Subscriptions(ctx context.Context) ([]Subscription, error) {
	var out SubscriptionList
	err := c.do(ctx, request{op: "Subscriptions", method: http.MethodGet, path: PathHMNFDSubscriptions, out: &out,
		want: `a JSON object {"SubscriptionList":[...]} (HMNFD subscriptions)`})
	if err != nil {
		return nil, err
	}
	return out.SubscriptionList, nil
}

// ---- CRUS --------------------------------------------------------------

// CRUSSessions lists CRUS sessions (`cray crus session list`). On CSM 1.5
// and later CRUS is gone and this returns a NotFound error.
func (c *Client) CRUSSessions(ctx context.Context) ([]CRUSSession, error) {
	var out []CRUSSession
	err := c.do(ctx, request{op: "CRUSSessions", method: http.MethodGet, path: PathCRUSSession, out: &out,
		want: "a JSON array of CRUS sessions"})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CRUSSession describes one CRUS session (`cray crus session describe`).
func (c *Client) CRUSSession(ctx context.Context, upgradeID string) (CRUSSession, error) {
	var out CRUSSession
	if err := c.needName("CRUSSession", "upgradeID", upgradeID); err != nil {
		return out, err
	}
	err := c.do(ctx, request{op: "CRUSSession", method: http.MethodGet, path: PathCRUSSession + "/" + url.PathEscape(upgradeID), out: &out,
		want: "a JSON object describing a CRUS session (upgrade_id, state, messages, completed)"})
	return out, err
}

// ---- FAS ---------------------------------------------------------------

// FASLoaderStatus returns whether the FAS loader is busy and its past runs.
func (c *Client) FASLoaderStatus(ctx context.Context) (LoaderStatus, error) {
	var out LoaderStatus
	err := c.do(ctx, request{op: "FASLoaderStatus", method: http.MethodGet, path: PathFASLoader, out: &out,
		want: `a JSON object {"loaderStatus":"busy"|"ready","loaderRunList":[...]}`})
	return out, err
}

// FASLoadNexus starts loading firmware images from Nexus
// (`cray fas loader nexus create`) and returns the loader run ID. While the
// loader is busy FAS answers 429, returned as a Busy (Retryable) error.
func (c *Client) FASLoadNexus(ctx context.Context) (string, error) {
	var out struct {
		LoaderRunID string `json:"loaderRunID"`
	}
	const want = `a JSON object {"loaderRunID":"..."}`
	err := c.do(ctx, request{op: "FASLoadNexus", method: http.MethodPost, path: PathFASLoaderNexus, out: &out, want: want})
	if err != nil {
		return "", err
	}
	if out.LoaderRunID == "" {
		return "", c.newError("FASLoadNexus", http.MethodPost, c.cfg.BaseURL+PathFASLoaderNexus, http.StatusOK, BadResponse,
			"expected "+want+": loaderRunID is missing or empty", nil)
	}
	return out.LoaderRunID, nil
}

// FASLoaderRun returns the output of one loader run.
func (c *Client) FASLoaderRun(ctx context.Context, loaderRunID string) (LoaderRun, error) {
	var out LoaderRun
	if err := c.needName("FASLoaderRun", "loaderRunID", loaderRunID); err != nil {
		return out, err
	}
	err := c.do(ctx, request{op: "FASLoaderRun", method: http.MethodGet, path: PathFASLoader + "/" + url.PathEscape(loaderRunID), out: &out,
		want: `a JSON object {"loaderRunOutput":[...]}`})
	return out, err
}

// FASImages lists the firmware images FAS knows.
func (c *Client) FASImages(ctx context.Context) ([]FASImage, error) {
	var out struct {
		Images []FASImage `json:"images"`
	}
	err := c.do(ctx, request{op: "FASImages", method: http.MethodGet, path: PathFASImages, out: &out,
		want: `a JSON object {"images":[...]}`})
	if err != nil {
		return nil, err
	}
	return out.Images, nil
}

// FASActions lists FAS actions.
func (c *Client) FASActions(ctx context.Context) ([]FASAction, error) {
	var out struct {
		Actions []FASAction `json:"actions"`
	}
	err := c.do(ctx, request{op: "FASActions", method: http.MethodGet, path: PathFASActions, out: &out,
		want: `a JSON object {"actions":[...]}`})
	if err != nil {
		return nil, err
	}
	return out.Actions, nil
}

// ---- BOS v2 ------------------------------------------------------------

// SessionTemplates lists BOS v2 session templates (of Config.Tenant, if set).
func (c *Client) SessionTemplates(ctx context.Context) ([]SessionTemplate, error) {
	var out []SessionTemplate
	err := c.do(ctx, request{op: "SessionTemplates", method: http.MethodGet, path: PathBOSSessionTemplates, out: &out,
		want: "a JSON array of BOS session templates"})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SessionTemplate returns one BOS v2 session template.
func (c *Client) SessionTemplate(ctx context.Context, name string) (SessionTemplate, error) {
	var out SessionTemplate
	if err := c.needName("SessionTemplate", "name", name); err != nil {
		return out, err
	}
	err := c.do(ctx, request{op: "SessionTemplate", method: http.MethodGet, path: PathBOSSessionTemplates + "/" + url.PathEscape(name), out: &out,
		want: "a JSON object describing a BOS session template"})
	return out, err
}

// PutSessionTemplate creates or replaces the template named tmpl.Name and
// returns what BOS stored.
func (c *Client) PutSessionTemplate(ctx context.Context, tmpl SessionTemplate) (SessionTemplate, error) {
	var out SessionTemplate
	if err := c.needName("PutSessionTemplate", "template name", tmpl.Name); err != nil {
		return out, err
	}
	err := c.do(ctx, request{op: "PutSessionTemplate", method: http.MethodPut, path: PathBOSSessionTemplates + "/" + url.PathEscape(tmpl.Name), body: tmpl, out: &out,
		want: "a JSON object describing the stored BOS session template"})
	return out, err
}

// SessionTemplateValid asks BOS whether a session could be launched from
// the template. BOS answers 200 with the string "Valid" or a description of
// the problem (e.g. no boot sets); valid is true only for "Valid".
func (c *Client) SessionTemplateValid(ctx context.Context, name string) (valid bool, message string, err error) {
	if err := c.needName("SessionTemplateValid", "name", name); err != nil {
		return false, "", err
	}
	var raw json.RawMessage
	err = c.do(ctx, request{op: "SessionTemplateValid", method: http.MethodGet, path: PathBOSSessionTemplatesV + "/" + url.PathEscape(name), out: &raw,
		want: `a JSON string ("Valid" or the problem found)`})
	if err != nil {
		return false, "", err
	}
	if err := json.Unmarshal(raw, &message); err != nil {
		// Some releases wrap the message in an object; take its text.
		message = problemDetail(raw)
		if message == "" {
			return false, "", c.newError("SessionTemplateValid", http.MethodGet, c.cfg.BaseURL+PathBOSSessionTemplatesV+"/"+url.PathEscape(name), http.StatusOK, BadResponse,
				fmt.Sprintf(`expected a JSON string ("Valid" or the problem found), got %s`, snippet(raw)), err)
		}
	}
	return strings.TrimSpace(message) == "Valid", message, nil
}

// CreateBOSSession starts a BOS v2 session, e.g. a reboot of the nodes in
// Limit with template TemplateName.
func (c *Client) CreateBOSSession(ctx context.Context, req BOSSessionRequest) (BOSSession, error) {
	var out BOSSession
	if err := c.needName("CreateBOSSession", "TemplateName", req.TemplateName); err != nil {
		return out, err
	}
	if err := c.needName("CreateBOSSession", "Operation", req.Operation); err != nil {
		return out, err
	}
	err := c.do(ctx, request{op: "CreateBOSSession", method: http.MethodPost, path: PathBOSSessions, body: req, out: &out,
		want: "a JSON object describing the created BOS session"})
	return out, err
}

// BOSSession returns one BOS v2 session by name.
func (c *Client) BOSSession(ctx context.Context, name string) (BOSSession, error) {
	var out BOSSession
	if err := c.needName("BOSSession", "name", name); err != nil {
		return out, err
	}
	err := c.do(ctx, request{op: "BOSSession", method: http.MethodGet, path: PathBOSSessions + "/" + url.PathEscape(name), out: &out,
		want: "a JSON object describing a BOS session"})
	return out, err
}

// ---- CPS ---------------------------------------------------------------

// CPSContents lists the content CPS projects.
func (c *Client) CPSContents(ctx context.Context) ([]CPSContent, error) {
	var out []CPSContent
	err := c.do(ctx, request{op: "CPSContents", method: http.MethodGet, path: PathCPSContents, out: &out,
		want: "a JSON array of CPS contents (s3path, etag)"})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CPSTransports lists CPS transports.
func (c *Client) CPSTransports(ctx context.Context) ([]CPSTransport, error) {
	var out []CPSTransport
	err := c.do(ctx, request{op: "CPSTransports", method: http.MethodGet, path: PathCPSTransports, out: &out,
		want: "a JSON array of CPS transports (readyForMount)"})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Client) needName(op, what, v string) error {
	if strings.TrimSpace(v) == "" {
		return c.newError(op, "", "", 0, BadRequest, what+" is empty", nil)
	}
	return nil
}
