package csm

import (
	"context"
	"fmt"
	"net/http"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Probe asks the gateway which API versions exist: 200 means present, 404
// absent; any other answer is an error (a probe must not guess).
func (c *Client) Probe(ctx context.Context) (api.ReleaseProbes, error) {
	var p api.ReleaseProbes
	for _, pr := range []struct {
		path string
		to   *bool
	}{{PathBOSv1, &p.BOSv1}, {PathBOSv2, &p.BOSv2}, {PathHMNFDv2Health, &p.HMNFDv2}} {
		var st int
		if err := c.do(ctx, request{op: "Probe", method: http.MethodGet, path: pr.path, status: &st}); err != nil {
			return api.ReleaseProbes{}, err
		}
		switch st {
		case http.StatusOK:
			*pr.to = true
		case http.StatusNotFound:
		default:
			return api.ReleaseProbes{}, c.newError("Probe", http.MethodGet, c.cfg.BaseURL+pr.path, st, statusKind(st),
				fmt.Sprintf("expected 200 (API present) or 404 (absent), got HTTP %d %s", st, http.StatusText(st)), nil)
		}
	}
	return p, nil
}
