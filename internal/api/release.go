package api

import (
	"fmt"
	"strings"
)

// Release is a CSM release whose APIs or runbook differ from the one before
// it (../shared/runbook/CSM-APIS.md §8–§10). A run records the release it
// acts for, so that its history says which APIs it spoke.
type Release string

// The releases the worker knows. CSM 1.4 serves what 1.3 serves.
const (
	// ReleaseAuto detects the release from the product catalog and
	// confirms it with API probes.
	ReleaseAuto Release = "auto"
	CSM10       Release = "csm-1.0"
	CSM12       Release = "csm-1.2"
	CSM13       Release = "csm-1.3"
	CSM15       Release = "csm-1.5"
	CSM16       Release = "csm-1.6"
)

// Releases lists the known releases, oldest first.
var Releases = []Release{CSM10, CSM12, CSM13, CSM15, CSM16}

// API versions of the versioned CSM services.
const (
	APIv1 = "v1"
	APIv2 = "v2"
)

// APIVersions says which version of each versioned CSM API a run speaks.
// The zero value is what runs recorded before releases were modelled spoke
// (BOS v2, HMNFD v2), so their histories keep their meaning.
type APIVersions struct {
	// BOS is "v1" (BOS 1.x: CSM 1.0 and 1.2) or "v2" (BOS 2.x: CSM 1.3 on).
	BOS string `json:"bos,omitempty"`
	// HMNFD is "v1" (HMNFD 1.8.5: CSM 1.0) or "v2" (CSM 1.2 on).
	HMNFD string `json:"hmnfd,omitempty"`
}

// BOSVersion is the BOS API version to use, v2 when unset.
func (v APIVersions) BOSVersion() string { return orV2(v.BOS) }

// HMNFDVersion is the HMNFD API version to use, v2 when unset.
func (v APIVersions) HMNFDVersion() string { return orV2(v.HMNFD) }

func orV2(v string) string {
	if v == "" {
		return APIv2
	}
	return v
}

// APIs is what a release serves: BOS v1 only up to CSM 1.2 (BOS 1.10.23),
// v2 from 1.3 (v1 too until 1.5, but v2 is preferred); HMNFD /hmi/v2 from
// 1.2 (HMNFD 1.12+), /hmi/v1 only on 1.0 (HMNFD 1.8.5).
func (r Release) APIs() APIVersions {
	switch r {
	case CSM10:
		return APIVersions{BOS: APIv1, HMNFD: APIv1}
	case CSM12:
		return APIVersions{BOS: APIv1, HMNFD: APIv2}
	default:
		return APIVersions{BOS: APIv2, HMNFD: APIv2}
	}
}

// ParseRelease accepts a release name as written in the config or on the
// command line ("csm-1.4" is csm-1.3's API set and is accepted as such).
func ParseRelease(s string) (Release, error) {
	r := Release(strings.ToLower(strings.TrimSpace(s)))
	switch r {
	case ReleaseAuto, CSM10, CSM12, CSM13, CSM15, CSM16:
		return r, nil
	case "csm-1.4":
		return CSM13, nil
	}
	return "", fmt.Errorf("%q is not one of auto, %s (csm-1.4 is csm-1.3)", s, releaseNames())
}

func releaseNames() string {
	names := make([]string, len(Releases))
	for i, r := range Releases {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}
