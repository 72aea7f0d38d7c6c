package csm

import (
	"context"
	"fmt"
	"net/http"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Probes says which versioned CSM APIs the gateway serves (CSM-APIS.md §9.2).
type Probes struct {
	// BOSv1: GET /apis/bos/v1 answers (BOS < 2.17: CSM 1.0–1.5).
	BOSv1 bool `json:"bosV1"`
	// BOSv2: GET /apis/bos/v2 answers (BOS ≥ 2.0: CSM 1.3 on).
	BOSv2 bool `json:"bosV2"`
	// HMNFDv2: GET /apis/hmnfd/hmi/v2/health answers (HMNFD ≥ 1.12: CSM 1.2 on).
	HMNFDv2 bool `json:"hmnfdV2"`
}

// Probe asks the gateway which API versions exist: 200 means present, 404
// absent; any other answer is an error (a probe must not guess).
func (c *Client) Probe(ctx context.Context) (Probes, error) {
	var p Probes
	for _, pr := range []struct {
		path string
		to   *bool
	}{{PathBOSv1, &p.BOSv1}, {PathBOSv2, &p.BOSv2}, {PathHMNFDv2Health, &p.HMNFDv2}} {
		var st int
		if err := c.do(ctx, request{op: "Probe", method: http.MethodGet, path: pr.path, status: &st}); err != nil {
			return Probes{}, err
		}
		switch st {
		case http.StatusOK:
			*pr.to = true
		case http.StatusNotFound:
		default:
			return Probes{}, c.newError("Probe", http.MethodGet, c.cfg.BaseURL+pr.path, st, statusKind(st),
				fmt.Sprintf("expected 200 (API present) or 404 (absent), got HTTP %d %s", st, http.StatusText(st)), nil)
		}
	}
	return p, nil
}

// APIs chooses the versions to speak from what the probes found: BOS v2
// when present (CSM 1.3 on serves v1 too, but v2 is where the templates
// live), else v1; HMNFD v2 when present, else v1. No BOS at all is an error.
func (p Probes) APIs() (api.APIVersions, error) {
	var v api.APIVersions
	switch {
	case p.BOSv2:
		v.BOS = api.APIv2
	case p.BOSv1:
		v.BOS = api.APIv1
	default:
		return v, fmt.Errorf("the gateway serves neither BOS /v1 nor /v2 (both probes answered 404): is BOS installed, and is csm.baseURL the API gateway?")
	}
	v.HMNFD = api.APIv1
	if p.HMNFDv2 {
		v.HMNFD = api.APIv2
	}
	return v, nil
}
