package csm

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// API paths, relative to the gateway (CSM-APIS.md). The BOS ones are in bos.go.
const (
	PathHSMComponents = "/apis/smd/hsm/v2/State/Components"
	// PathHMNFDSubscriptions is HMNFD's /hmi/v2 list (HMNFD 1.12+, CSM 1.2+).
	PathHMNFDSubscriptions = "/apis/hmnfd/hmi/v2/subscriptions"
	// PathHMNFDv1Subscriptions is the /hmi/v1 list, the only one of HMNFD
	// 1.8.5 (CSM 1.0); later releases serve it too, from the same handler.
	PathHMNFDv1Subscriptions = "/apis/hmnfd/hmi/v1/subscriptions"
	// PathHMNFDReadiness answers 204 when HMNFD is ready, 503 when not
	// (every release).
	PathHMNFDReadiness = "/apis/hmnfd/hmi/v1/readiness"
	// PathHMNFDv2Health exists from HMNFD 1.12 (CSM 1.2): the /hmi/v2 probe.
	PathHMNFDv2Health  = "/apis/hmnfd/hmi/v2/health"
	PathCRUSSession    = "/apis/crus/session"
	PathFASLoader      = "/apis/fas/v1/loader"
	PathFASLoaderNexus = "/apis/fas/v1/loader/nexus"
	PathFASImages      = "/apis/fas/v1/images"
	PathFASActions     = "/apis/fas/v1/actions"
	PathCPSContents    = "/apis/v2/cps/contents"
	PathCPSTransports  = "/apis/v2/cps/transports"
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

// Subscriptions lists HMNFD's subscriptions through the HMNFD API version c
// speaks (/hmi/v1 on CSM 1.0). HMNFD answers {"SubscriptionList":null}
// when there are none: that is an empty list. Use Subscription.Xname for
// the subscriber: HMNFD 1.8.5 has no SubscriberComponent.
func (c *Client) Subscriptions(ctx context.Context) ([]Subscription, error) {
	var out SubscriptionList
	path := PathHMNFDSubscriptions
	if c.apis.HMNFDVersion() == api.APIv1 {
		path = PathHMNFDv1Subscriptions
	}
	err := c.do(ctx, request{op: "Subscriptions", method: http.MethodGet, path: path, out: &out,
		want: `a JSON object {"SubscriptionList":[...]} (HMNFD subscriptions)`})
	if err != nil {
		return nil, err
	}
	return out.SubscriptionList, nil
}

// HMNFDReady asks HMNFD whether it is ready (GET /hmi/v1/readiness: 204
// ready, 503 not). After its etcd is rebuilt HMNFD stays not ready until its
// process restarts: it writes its health key only at start-up
// (csm-specs/observed/README.md).
func (c *Client) HMNFDReady(ctx context.Context) (bool, error) {
	var st int
	err := c.do(ctx, request{op: "HMNFDReady", method: http.MethodGet, path: PathHMNFDReadiness, status: &st})
	if err != nil {
		return false, err
	}
	switch st {
	case http.StatusNoContent, http.StatusOK:
		return true, nil
	case http.StatusServiceUnavailable:
		return false, nil
	}
	return false, c.newError("HMNFDReady", http.MethodGet, c.cfg.BaseURL+PathHMNFDReadiness, st, statusKind(st),
		fmt.Sprintf("expected 204 (ready) or 503 (not ready), got HTTP %d %s", st, http.StatusText(st)), nil)
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

// CPSTransports returns how the content at s3path is projected over
// transport (e.g. "dvs"): GET /transports?s3path=&transport=[&etag=]. Both
// s3path and transport are required by CPS, and it answers one object for
// the content, not a list.
func (c *Client) CPSTransports(ctx context.Context, s3path, transport, etag string) (CPSTransports, error) {
	var out CPSTransports
	if err := c.needName("CPSTransports", "s3path", s3path); err != nil {
		return out, err
	}
	if err := c.needName("CPSTransports", "transport", transport); err != nil {
		return out, err
	}
	q := url.Values{"s3path": {s3path}, "transport": {transport}}
	if etag != "" {
		q.Set("etag", etag)
	}
	err := c.do(ctx, request{op: "CPSTransports", method: http.MethodGet, path: PathCPSTransports + "?" + q.Encode(), out: &out,
		want: `a JSON object {"artifactID":...,"transports":[{"type","readyForMount",...}]}`})
	return out, err
}

func (c *Client) needName(op, what, v string) error {
	if strings.TrimSpace(v) == "" {
		return c.newError(op, "", "", 0, BadRequest, what+" is empty", nil)
	}
	return nil
}
