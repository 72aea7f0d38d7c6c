package csmemu

import (
	"net/http"
	"strings"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
)

// DefaultRelease is what an Emulator serves when Options.Release is empty:
// CSM 1.3's API set (BOS v1 and v2, HMNFD v1 and v2, CRUS, CPS), the
// surface the emulator served before releases were modelled.
const DefaultRelease = api.CSM13

// surface is the API set one CSM release serves (CSM-APIS.md §1–§9).
type surface struct {
	release api.Release
	// bosV1/bosV2: BOS /v1 (BOS < 2.17: CSM ≤ 1.5) and /v2 (BOS ≥ 2.0: CSM ≥ 1.3).
	bosV1, bosV2 bool
	// bos1x: BOS 1.x (CSM 1.0, 1.2): templates only through /v1, in etcd.
	bos1x bool
	// bos17: BOS 1.7.x (CSM 1.0): a v1 session needs templateUuid and
	// refuses templateName (additionalProperties: false).
	bos17 bool
	// hmnfdV2: /hmi/v2 (HMNFD ≥ 1.12: CSM ≥ 1.2). Without it HMNFD is 1.8.5,
	// whose subscriptions have no SubscriberComponent/SubscriberAgent.
	hmnfdV2 bool
	// crus and cps: installed (CSM ≤ 1.4; both gone from the 1.5 runbook).
	crus, cps bool
	// bssReferralToken: BSS ≥ 1.21.0 (CSM ≥ 1.3) answers writes with a
	// BSS-Referral-Token header. BSS itself is on every release.
	bssReferralToken bool
}

func surfaceOf(r api.Release) surface {
	s := surface{release: r, bosV1: true, bosV2: true, hmnfdV2: true, crus: true, cps: true, bssReferralToken: bssReferralTokens(r)}
	switch r {
	case api.CSM10:
		s.bosV2, s.bos1x, s.bos17, s.hmnfdV2 = false, true, true, false
	case api.CSM12:
		s.bosV2, s.bos1x = false, true
	case api.CSM15:
		s.crus, s.cps = false, false
	case api.CSM16:
		s.bosV1, s.crus, s.cps = false, false, false
	}
	return s
}

// Release returns the release the emulator serves.
func (e *Emulator) Release() api.Release { return e.surface.release }

// absent answers 404 for a path of an API the release does not serve, the
// way that service's server does, and reports whether it did.
func (e *Emulator) absent(w http.ResponseWriter, r *http.Request, crusOff bool) bool {
	p := r.URL.Path
	s := e.surface
	switch {
	case !s.bosV1 && under(p, csm.PathBOSv1), !s.bosV2 && under(p, csm.PathBOSv2):
		// BOS is a connexion app: unknown paths get its problem+json 404.
		writeProblem(w, http.StatusNotFound, "Not Found", "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.")
	case !s.hmnfdV2 && under(p, "/apis/hmnfd/hmi/v2"):
		// HMNFD 1.8.5 routes with Go's default mux (observed: "404 page not found").
		http.NotFound(w, r)
	case (!s.crus || crusOff) && under(p, "/apis/crus"):
		writeProblem(w, http.StatusNotFound, "Not Found", "no route to CRUS: the service is not installed")
	case !s.cps && under(p, "/apis/v2/cps"):
		writeProblem(w, http.StatusNotFound, "Not Found", "no route to CPS: the service is not installed")
	case under(p, "/apis/smd/hsm/v1"):
		// The client uses only HSM v2, which every release serves; v1 is
		// not emulated.
		http.NotFound(w, r)
	default:
		return false
	}
	return true
}

// under reports whether p is prefix or below it.
func under(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}
