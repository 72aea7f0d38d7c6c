package csmemu_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

// TestBSSListsSeededNodesAndImages: a running system's BSS lists the image
// entries its PUTs created (kernel, then initrd), then every compute node
// HSM lists, each with the image's S3 paths, in key order, with the
// cloud-init BSS renders for an entry stored without it.
func TestBSSListsSeededNodesAndImages(t *testing.T) {
	e, c, base := start(t, csmemu.Options{Components: csmemu.ComputeNodes(3)})
	st, body := call(t, c, base, "GET", csm.PathBSSBootParameters, "")
	if st != 200 {
		t.Fatalf("GET: %d %s", st, body)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 5 {
		t.Fatalf("%d entries, want kernel, initrd and 3 nodes: %s", len(list), body)
	}
	if list[0]["kernel"] != csmemu.BootImage+"/kernel" || list[0]["hosts"] != nil || list[1]["initrd"] != csmemu.BootImage+"/initrd" {
		t.Errorf("image entries %v %v", list[0], list[1])
	}
	for i, x := range []string{"x1000c0s0b0n0", "x1000c0s1b0n0", "x1000c0s2b0n0"} {
		got := list[i+2]
		if hosts, _ := got["hosts"].([]any); len(hosts) != 1 || hosts[0] != x {
			t.Errorf("entry %d hosts %v, want [%s]", i+2, got["hosts"], x)
		}
		if got["kernel"] != csmemu.BootImage+"/kernel" || got["initrd"] != csmemu.BootImage+"/initrd" ||
			!strings.Contains(got["params"].(string), "root=craycps-s3:"+csmemu.BootImage+"/rootfs:") {
			t.Errorf("entry %s: %v", x, got)
		}
	}
	if !strings.Contains(body, `"cloud-init":{"meta-data":null,"user-data":null,"phone-home":{"pub_key_dsa":"","pub_key_rsa":"","pub_key_ecdsa":"","instance_id":"","hostname":"","fqdn":""}}`) {
		t.Errorf("cloud-init not rendered as bssTypes.CloudInit: %s", body)
	}
	if got := e.BootParams(); len(got) != 5 || got[2].Host() != "x1000c0s0b0n0" {
		t.Errorf("BootParams() %+v", got)
	}
}

// TestBSSWipeListsNull: after the etcd rebuild BSS lists null, not [].
func TestBSSWipeListsNull(t *testing.T) {
	e, c, base := start(t, csmemu.Options{Components: csmemu.ComputeNodes(2), ControlAPI: true})
	e.WipeBSS()
	if st, body := call(t, c, base, "GET", csm.PathBSSBootParameters, ""); st != 200 || body != "null" {
		t.Errorf("GET after wipe: %d %q, want 200 null", st, body)
	}
	if err := e.SetBootParams(csmemu.DefaultBootParams(csmemu.ComputeNodes(2))); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/_csmemu/bss-wipe", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || len(e.BootParams()) != 0 {
		t.Errorf("bss-wipe: %d, %d entries left", resp.StatusCode, len(e.BootParams()))
	}
}

// TestBSSWriteVerbs: PUT creates or replaces an entry whole; POST creates
// and refuses an existing host with 400; PATCH changes only what it names
// and refuses a host without an entry with 404; DELETE removes.
func TestBSSWriteVerbs(t *testing.T) {
	e, c, base := start(t, csmemu.Options{Components: csmemu.ComputeNodes(1)})
	p := csm.PathBSSBootParameters
	get := func(name string) (int, string) { return call(t, c, base, "GET", p+"?name="+name, "") }

	if st, body := call(t, c, base, "POST", p, `{"hosts":["x1000c0s0b0n0"],"kernel":"s3://b/k2"}`); st != 400 ||
		!strings.Contains(body, `"detail":"Bad Request: Already exists: x1000c0s0b0n0"`) {
		t.Errorf("POST of an existing host: %d %s", st, body)
	}
	if st, body := call(t, c, base, "PUT", p, `{"hosts":["x1000c0s0b0n0"],"kernel":"s3://b/k2","params":"quiet"}`); st != 200 || body != "" {
		t.Errorf("PUT: %d %q", st, body)
	}
	if _, body := get("x1000c0s0b0n0"); !strings.Contains(body, `"params":"quiet","kernel":"s3://b/k2","cloud-init"`) || strings.Contains(body, "initrd") {
		t.Errorf("PUT did not replace the entry whole: %s", body)
	}
	if st, body := call(t, c, base, "PATCH", p, `{"hosts":["x1000c0s0b0n0"],"params":"console=ttyS0"}`); st != 200 {
		t.Errorf("PATCH: %d %s", st, body)
	}
	if _, body := get("x1000c0s0b0n0"); !strings.Contains(body, `"params":"console=ttyS0","kernel":"s3://b/k2"`) {
		t.Errorf("PATCH: %s", body)
	}
	if st, body := call(t, c, base, "PATCH", p, `{"hosts":["x9"],"params":"x"}`); st != 404 || !strings.Contains(body, "Key /params/x9 does not exist") {
		t.Errorf("PATCH of a missing host: %d %s", st, body)
	}
	if st, body := call(t, c, base, "POST", p, `{"hosts":["x1000c0s9b0n0"],"kernel":"s3://b/k3"}`); st != 201 || body != "" {
		t.Errorf("POST of a new host: %d %q", st, body)
	}
	if st, body := get("x1000c0s9b0n0"); st != 200 || !strings.Contains(body, "s3://b/k3") {
		t.Errorf("GET after POST: %d %s", st, body)
	}
	if st, body := call(t, c, base, "DELETE", p, `{"hosts":["x1000c0s9b0n0"]}`); st != 200 {
		t.Errorf("DELETE: %d %s", st, body)
	}
	if st, body := get("x1000c0s9b0n0"); st != 404 || !strings.Contains(body, "Cannot find boot parameters for requested Hosts") {
		t.Errorf("GET of a deleted host: %d %s", st, body)
	}
	if st, body := call(t, c, base, "PUT", p, `{"hosts":`); st != 400 || !strings.Contains(body, "Bad Request: ") {
		t.Errorf("PUT of broken JSON: %d %s", st, body)
	}
	// Images the PUTs and POSTs named are listed as their own entries.
	kernels := 0
	for _, b := range e.BootParams() {
		if b.Host() == "" && b.Kernel != "" {
			kernels++
		}
	}
	if kernels != 3 {
		t.Errorf("%d kernel image entries, want 3 (the seeded one, k2, k3)", kernels)
	}
}

// TestBSSReferralTokenFromCSM13: BSS 1.21.0 (CSM 1.3) and later send a
// BSS-Referral-Token on writes; 1.7.7 (CSM 1.0) does not.
func TestBSSReferralTokenFromCSM13(t *testing.T) {
	for rel, want := range map[api.Release]bool{api.CSM10: false, api.CSM12: false, api.CSM13: true, api.CSM16: true} {
		e := csmemu.New(csmemu.Options{Release: rel})
		base, err := e.Start(false)
		if err != nil {
			t.Fatal(err)
		}
		tok := token(t, base)
		req, _ := http.NewRequest("PUT", base+csm.PathBSSBootParameters, strings.NewReader(`{"hosts":["x1"],"kernel":"s3://b/k"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("BSS-Referral-Token") != ""; got != want || resp.StatusCode != 200 {
			t.Errorf("%s: %d, referral token %v, want %v", rel, resp.StatusCode, got, want)
		}
		e.Close()
	}
}

func token(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.PostForm(base+csmemu.TokenPath, map[string][]string{"grant_type": {"client_credentials"},
		"client_id": {csm.DefaultClientID}, "client_secret": {csmemu.DefaultClientSecret}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatal(err)
	}
	return tr.AccessToken
}
