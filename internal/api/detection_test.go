package api

import (
	"strings"
	"testing"
)

// probesOf is what each release answers (CSM-APIS.md §9.2).
var probesOf = map[Release]ReleaseProbes{
	CSM10: {BOSv1: true},
	CSM12: {BOSv1: true, HMNFDv2: true},
	CSM13: {BOSv1: true, BOSv2: true, HMNFDv2: true},
	CSM15: {BOSv1: true, BOSv2: true, HMNFDv2: true},
	CSM16: {BOSv2: true, HMNFDv2: true},
}

func TestReleaseOfVersion(t *testing.T) {
	for v, want := range map[string]Release{"1.0.11": CSM10, "1.2.2": CSM12, "1.3.5": CSM13, "1.4.4": CSM13, "1.5.0-rc.1": CSM15, "1.6.0-rc.3": CSM16, "1.7.0": CSM16} {
		if r, ok := ReleaseOfVersion(v); !ok || r != want {
			t.Errorf("%s: %s %v, want %s", v, r, ok, want)
		}
	}
	for _, v := range []string{"0.9.0", "1.1.0", "banana", ""} {
		if r, ok := ReleaseOfVersion(v); ok {
			t.Errorf("%s: %s, want none", v, r)
		}
	}
}

func TestDecideRelease(t *testing.T) {
	for r, p := range probesOf {
		p := p
		version := map[Release]string{CSM10: "1.0.11", CSM12: "1.2.2", CSM13: "1.4.4", CSM15: "1.5.2", CSM16: "1.6.0"}[r]
		d, err := DecideRelease(ReleaseAuto, version, "", &p, "")
		if err != nil || d.Release != r || !strings.Contains(d.How, "product catalog's highest CSM version is "+version) || !strings.Contains(d.How, "confirmed by API probes") {
			t.Errorf("auto on %s: %+v %v", r, d, err)
		}
		d, err = DecideRelease(r, "", "", &p, "")
		if err != nil || d.Release != r || !strings.Contains(d.How, "configured") {
			t.Errorf("configured %s: %+v %v", r, d, err)
		}
	}
	// No catalog: probes alone decide where they single out a release.
	p := probesOf[CSM12]
	if d, err := DecideRelease(ReleaseAuto, "", "ConfigMap services/cray-product-catalog not found", &p, ""); err != nil || d.Release != CSM12 || !strings.Contains(d.How, "from API probes alone") {
		t.Errorf("probes alone: %+v %v", d, err)
	}
	// Catalog but no probes: the catalog, unconfirmed.
	if d, err := DecideRelease(ReleaseAuto, "1.3.0", "", nil, "csm.baseURL is not set"); err != nil || d.Release != CSM13 || !strings.Contains(d.How, "not confirmed by API probes: csm.baseURL is not set") {
		t.Errorf("catalog alone: %+v %v", d, err)
	}
}

func TestDecideReleaseRefuses(t *testing.T) {
	p13 := probesOf[CSM13]
	_, err := DecideRelease(ReleaseAuto, "", "ConfigMap services/cray-product-catalog not found", &p13, "")
	for _, want := range []string{"cannot tell which CSM release", "ConfigMap services/cray-product-catalog not found", "they fit csm-1.3 or csm-1.5", "set release: in the worker config", "nothing was changed"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("no catalog, inconclusive probes: %v, want %q", err, want)
		}
	}
	_, err = DecideRelease(ReleaseAuto, "", "ConfigMap services/cray-product-catalog not found", nil, "csm.baseURL is not set")
	if err == nil || !strings.Contains(err.Error(), "csm.baseURL is not set") || !strings.Contains(err.Error(), "set release:") {
		t.Errorf("nothing to go by: %v", err)
	}
	p10 := probesOf[CSM10]
	_, err = DecideRelease(CSM13, "", "", &p10, "")
	for _, want := range []string{"release csm-1.3 is configured", "answer like csm-1.0", "BOS /v2 absent", "set release: in the worker config"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("contradicted: %v, want %q", err, want)
		}
	}
	// CSM 1.6 has no BOS /v1: 1.5 and 1.6 tell themselves apart by it.
	p15, p16 := probesOf[CSM15], probesOf[CSM16]
	if _, err := DecideRelease(CSM16, "", "", &p15, ""); err == nil || !strings.Contains(err.Error(), "answer like csm-1.3 or csm-1.5 (BOS /v1 present") {
		t.Errorf("csm-1.6 configured on 1.5 APIs: %v", err)
	}
	if _, err := DecideRelease(CSM15, "", "", &p16, ""); err == nil || !strings.Contains(err.Error(), "answer like csm-1.6 (BOS /v1 absent") {
		t.Errorf("csm-1.5 configured on 1.6 APIs: %v", err)
	}
	_, err = DecideRelease(ReleaseAuto, "1.5.0", "", &p10, "")
	if err == nil || !strings.Contains(err.Error(), "highest CSM version is 1.5.0, but the CSM APIs answer like csm-1.0") {
		t.Errorf("catalog contradicted: %v", err)
	}
}
