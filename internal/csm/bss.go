package csm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
)

// PathBSSBootParameters is BSS's boot parameters collection behind the
// gateway (prefix /apis/bss, hms-bss kubernetes/cray-hms-bss/values.yaml;
// the definition's basePath is /apis/bss/boot/v1). Every CSM release serves
// it (CSM-APIS.md §8 and §10: BSS and its etcd cluster on 1.0–1.6).
const PathBSSBootParameters = "/apis/bss/boot/v1/bootparameters"

// BootParams is one entry of BSS's boot parameters, bssTypes.BootParams in
// hms-bss (BootParams in bss-1.7.7-swagger.yaml). GET lists a node's entry
// with Hosts holding its one name (an xname, or a tag such as "Global" or
// "Default"); it also lists one entry per kernel and initrd image BSS knows,
// without Hosts (images stored by a PUT that named them).
type BootParams struct {
	Hosts  []string `json:"hosts,omitempty"`
	Macs   []string `json:"macs,omitempty"`
	Nids   []int    `json:"nids,omitempty"`
	Params string   `json:"params,omitempty"`
	Kernel string   `json:"kernel,omitempty"`
	Initrd string   `json:"initrd,omitempty"`
	// CloudInit is kept as BSS sent it (meta-data, user-data, phone-home):
	// NCN entries carry arbitrary cloud-init user-data that must go back
	// unchanged.
	CloudInit json.RawMessage `json:"cloud-init,omitempty"`
}

// Host is the name of a node entry (its only host), or "" for an image
// entry or one that names several hosts.
func (b BootParams) Host() string {
	if len(b.Hosts) == 1 {
		return b.Hosts[0]
	}
	return ""
}

// Equal reports whether b and o boot the same way: same hosts, MACs, NIDs,
// kernel, initrd and params, and the same cloud-init data, compared as
// JSON values. A missing cloud-init equals the empty one BSS lists for an
// entry stored without it.
func (b BootParams) Equal(o BootParams) bool {
	if !slices.Equal(b.Hosts, o.Hosts) || !slices.Equal(b.Macs, o.Macs) || !slices.Equal(b.Nids, o.Nids) ||
		b.Params != o.Params || b.Kernel != o.Kernel || b.Initrd != o.Initrd {
		return false
	}
	x, err1 := cloudInitValue(b.CloudInit)
	y, err2 := cloudInitValue(o.CloudInit)
	if err1 != nil || err2 != nil {
		return bytes.Equal(b.CloudInit, o.CloudInit)
	}
	return reflect.DeepEqual(x, y)
}

// cloudInitValue decodes cloud-init for comparison, dropping what BSS
// renders for an entry stored without cloud-init: null or empty meta-data
// and user-data, and a phone-home whose members are all empty.
func cloudInitValue(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return map[string]any{}, nil
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	if v == nil {
		v = map[string]any{}
	}
	for _, k := range []string{"meta-data", "user-data"} {
		if m, ok := v[k].(map[string]any); v[k] == nil || ok && len(m) == 0 {
			delete(v, k)
		}
	}
	if ph, ok := v["phone-home"].(map[string]any); v["phone-home"] == nil || ok && allEmpty(ph) {
		delete(v, "phone-home")
	}
	return v, nil
}

func allEmpty(m map[string]any) bool {
	for _, x := range m {
		if x != "" {
			return false
		}
	}
	return true
}

// BootParameters lists every boot parameters entry BSS holds (GET
// /bootparameters without a filter): image entries first, then node and
// tag entries in BSS's key order. BSS answers null when it holds nothing
// (default_api.go BootparametersGetAll encodes a nil list), as after its
// etcd is rebuilt: that is an empty list.
func (c *Client) BootParameters(ctx context.Context) ([]BootParams, error) {
	var out []BootParams
	err := c.do(ctx, request{op: "BootParameters", method: http.MethodGet, path: PathBSSBootParameters, out: &out,
		want: "a JSON array of BSS boot parameters (hosts, kernel, initrd, params, cloud-init)"})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PutBootParameters creates or replaces the entry of each host in b.Hosts
// with b's kernel, initrd, params and cloud-init (PUT /bootparameters: BSS's
// Store overwrites the entry whole, while POST refuses a host that has one
// and PATCH one that has none). b must name its nodes by Hosts (xnames or
// tags), not by MACs or NIDs, which BSS resolves through HSM.
func (c *Client) PutBootParameters(ctx context.Context, b BootParams) error {
	const op = "PutBootParameters"
	if err := c.checkBootParams(op, b); err != nil {
		return err
	}
	return c.do(ctx, request{op: op, method: http.MethodPut, path: PathBSSBootParameters, body: b})
}

func (c *Client) checkBootParams(op string, b BootParams) error {
	bad := func(msg string) error { return c.newError(op, "", "", 0, BadRequest, msg, nil) }
	if len(b.Hosts) == 0 {
		return bad("boot parameters name no host: give the node's xname (or a tag such as Global) in hosts")
	}
	for i, h := range b.Hosts {
		if strings.TrimSpace(h) == "" {
			return bad(fmt.Sprintf("hosts[%d] is empty: give the node's xname", i))
		}
	}
	if len(b.Macs) > 0 || len(b.Nids) > 0 {
		return bad(fmt.Sprintf("boot parameters for %s also name MACs or NIDs: name nodes by hosts only, BSS resolves MACs and NIDs through HSM and would store the entry under another key", strings.Join(b.Hosts, ",")))
	}
	if len(b.CloudInit) > 0 && !json.Valid(b.CloudInit) {
		return bad(fmt.Sprintf("cloud-init of %s is not JSON", strings.Join(b.Hosts, ",")))
	}
	return nil
}

// Digest is a short fingerprint of how b boots: equal entries (Equal)
// have equal digests. A run carries digests, not entries, to compare BSS
// with a snapshot.
func (b BootParams) Digest() string {
	ci, err := cloudInitValue(b.CloudInit)
	if err != nil {
		ci = string(b.CloudInit)
	}
	// json.Marshal writes map keys sorted: one encoding per value; an
	// empty list is as Equal has it, no list.
	orNil := func(n int, v any) any {
		if n == 0 {
			return nil
		}
		return v
	}
	raw, _ := json.Marshal([]any{orNil(len(b.Hosts), b.Hosts), orNil(len(b.Macs), b.Macs), orNil(len(b.Nids), b.Nids), b.Params, b.Kernel, b.Initrd, ci}) //nolint:errcheck // plain values
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}
