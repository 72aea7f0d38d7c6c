package api

import (
	"fmt"
	"strings"
)

// ReleaseProbes is what the CSM APIs answered to the release probes
// (CSM-APIS.md §9.2).
type ReleaseProbes struct {
	// BOSv1 and BOSv2: GET /apis/bos/v1 and /apis/bos/v2 answered (not 404).
	BOSv1 bool `json:"bosV1"`
	BOSv2 bool `json:"bosV2"`
	// HMNFDv2: GET /apis/hmnfd/hmi/v2/health answered (not 404).
	HMNFDv2 bool `json:"hmnfdV2"`
}

func (p ReleaseProbes) String() string {
	word := func(ok bool) string {
		if ok {
			return "present"
		}
		return "absent"
	}
	return fmt.Sprintf("BOS /v1 %s, BOS /v2 %s, HMNFD /hmi/v2 %s", word(p.BOSv1), word(p.BOSv2), word(p.HMNFDv2))
}

// APIs chooses the versions to speak from what the probes found: BOS v2
// when present (CSM 1.3 on serves v1 too, but v2 is where the templates
// live), else v1; HMNFD v2 when present, else v1. No BOS at all is an error.
func (p ReleaseProbes) APIs() (APIVersions, error) {
	var v APIVersions
	switch {
	case p.BOSv2:
		v.BOS = APIv2
	case p.BOSv1:
		v.BOS = APIv1
	default:
		return v, fmt.Errorf("the gateway serves neither BOS /v1 nor /v2 (both probes answered 404): is BOS installed, and is csm.baseURL the API gateway?")
	}
	v.HMNFD = APIv1
	if p.HMNFDv2 {
		v.HMNFD = APIv2
	}
	return v, nil
}

// Fits reports whether release r serves what the probes found: BOS /v2 from
// 1.3, BOS /v1 until 1.5, HMNFD /hmi/v2 from 1.2.
func (p ReleaseProbes) Fits(r Release) bool {
	return p.BOSv2 == (r.AtLeast(CSM13)) && p.BOSv1 == (r != CSM16) && p.HMNFDv2 == (r != CSM10)
}

// Matching lists the known releases the probes fit, oldest first.
func (p ReleaseProbes) Matching() []Release {
	var out []Release
	for _, r := range Releases {
		if p.Fits(r) {
			out = append(out, r)
		}
	}
	return out
}

// AtLeast reports whether r is release o or a later one.
func (r Release) AtLeast(o Release) bool { return releaseIndex(r) >= releaseIndex(o) }

func releaseIndex(r Release) int {
	for i, k := range Releases {
		if k == r {
			return i
		}
	}
	return -1
}

// ReleaseDetection is the release a run acts for and how it was found; it
// is in the run's status, its report and the Web UI summary.
type ReleaseDetection struct {
	Release Release `json:"release"`
	// Configured is the worker's release setting (auto or a release).
	Configured Release `json:"configured"`
	// CatalogVersion is the highest CSM version in the product catalog
	// (ConfigMap services/cray-product-catalog, key csm); empty when absent.
	CatalogVersion string `json:"catalogVersion,omitempty"`
	// Probes is what the APIs answered; nil when they could not be asked.
	Probes *ReleaseProbes `json:"probes,omitempty"`
	// How says in one line how the release was found.
	How string `json:"how"`
}

func (d ReleaseDetection) String() string {
	return fmt.Sprintf("%s (%s)", d.Release, d.How)
}

func releaseList(rs []Release) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = string(r)
	}
	return strings.Join(names, " or ")
}

// ReleaseOfVersion maps a CSM version such as "1.4.2" or "1.5.0-rc.1" to
// the release whose APIs it serves. Versions newer than the last known
// release map to it; ok is false for anything before 1.0 or unparsable.
func ReleaseOfVersion(v string) (r Release, ok bool) {
	major, minor, _, _, ok := parseVersion(v)
	if !ok || major < 1 {
		return "", false
	}
	switch {
	case major > 1 || minor >= 6:
		return CSM16, true
	case minor == 5:
		return CSM15, true
	case minor >= 3:
		return CSM13, true
	case minor == 2:
		return CSM12, true
	case minor == 0:
		return CSM10, true
	}
	return "", false // there was no CSM 1.1 release
}

// HighestVersion picks the highest of the product catalog's version keys,
// as docs-csm's `sort -V | tail -1` does, with pre-releases ("1.5.0-rc.2")
// below their release. Keys that are not versions are ignored.
func HighestVersion(keys []string) string {
	best := ""
	for _, k := range keys {
		if _, _, _, _, ok := parseVersion(k); ok && (best == "" || compareVersions(k, best) > 0) {
			best = k
		}
	}
	return best
}

// parseVersion reads "MAJOR.MINOR[.PATCH][-PRE]", with an optional "v".
func parseVersion(v string) (major, minor, patch int, pre string, ok bool) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	v, pre, _ = strings.Cut(v, "-")
	parts := strings.Split(v, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, 0, 0, "", false
	}
	nums := make([]int, 3)
	for i, p := range parts {
		if p == "" {
			return 0, 0, 0, "", false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return 0, 0, 0, "", false
			}
			nums[i] = nums[i]*10 + int(c-'0')
		}
	}
	return nums[0], nums[1], nums[2], pre, true
}

// compareVersions orders versions numerically; a pre-release is below its
// release, and pre-releases compare dot-part by dot-part (numbers as numbers).
func compareVersions(a, b string) int {
	am, an, ap, apre, _ := parseVersion(a)
	bm, bn, bp, bpre, _ := parseVersion(b)
	for _, d := range []int{am - bm, an - bn, ap - bp} {
		if d != 0 {
			return d
		}
	}
	switch {
	case apre == bpre:
		return 0
	case apre == "":
		return 1
	case bpre == "":
		return -1
	}
	as, bs := strings.Split(apre, "."), strings.Split(bpre, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if c := compareIdent(as[i], bs[i]); c != 0 {
			return c
		}
	}
	return len(as) - len(bs)
}

func compareIdent(a, b string) int {
	na, aNum := number(a)
	nb, bNum := number(b)
	switch {
	case aNum && bNum:
		return na - nb
	case aNum:
		return -1
	case bNum:
		return 1
	}
	return strings.Compare(a, b)
}

func number(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// DecideRelease is the release a run acts for: the configured one, or with
// auto the product catalog's highest version, each confirmed by the probes
// when they could be asked; with neither a catalog nor conclusive probes
// it is an error naming the setting to set. catalogNote and probeNote say
// why the catalog or the probes are missing (for the error and How).
func DecideRelease(configured Release, catalogVersion, catalogNote string, probes *ReleaseProbes, probeNote string) (ReleaseDetection, error) {
	d := ReleaseDetection{Configured: configured, CatalogVersion: catalogVersion, Probes: probes}
	confirm := func(r Release, source string) (ReleaseDetection, error) {
		d.Release = r
		switch {
		case probes == nil:
			d.How = fmt.Sprintf("%s; not confirmed by API probes: %s", source, probeNote)
		case probes.Fits(r):
			d.How = fmt.Sprintf("%s; confirmed by API probes (%s)", source, probes)
		default:
			return ReleaseDetection{}, fmt.Errorf("%s, but the CSM APIs answer like %s (%s): nothing was changed; set release: in the worker config to the release this system runs (docs/csm-releases.md), or to auto",
				source, releaseList(probes.Matching()), probes)
		}
		return d, nil
	}
	if configured != ReleaseAuto {
		return confirm(configured, fmt.Sprintf("release %s is configured", configured))
	}
	if catalogVersion != "" {
		r, ok := ReleaseOfVersion(catalogVersion)
		if ok {
			source := fmt.Sprintf("product catalog's highest CSM version is %s", catalogVersion)
			if !r.AtLeast(CSM16) || strings.HasPrefix(catalogVersion, "1.6") {
				return confirm(r, source)
			}
			return confirm(r, source+fmt.Sprintf(" (newer than any release this worker knows: treated as %s)", r))
		}
		catalogNote = fmt.Sprintf("its highest CSM version %q is not a CSM release this worker knows", catalogVersion)
	}
	if probes != nil {
		if m := probes.Matching(); len(m) == 1 {
			d.Release = m[0]
			d.How = fmt.Sprintf("from API probes alone (%s); product catalog: %s", probes, catalogNote)
			return d, nil
		}
	}
	probeText := probeNote
	if probes != nil {
		probeText = fmt.Sprintf("they fit %s (%s)", releaseList(probes.Matching()), probes)
		if len(probes.Matching()) == 0 {
			probeText = fmt.Sprintf("they fit no known release (%s)", probes)
		}
	}
	return ReleaseDetection{}, fmt.Errorf("cannot tell which CSM release this is: product catalog: %s; API probes: %s; nothing was changed; set release: in the worker config (one of %s; docs/csm-releases.md)",
		catalogNote, probeText, releaseNames())
}
