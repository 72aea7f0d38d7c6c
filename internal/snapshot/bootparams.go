package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/csmops/etcd-repopulate/internal/csm"
)

// GroupBootParameters turns the boot parameters BSS listed (one entry per
// host, ~850 bytes a compute node) into what a run's input carries: one
// entry per distinct kernel, initrd, params and cloud-init, naming every
// host that had them, in the order BSS listed the hosts. Image entries
// (no hosts) are left out: BSS stores them again from the host entries
// that name the kernel and initrd. MACs and NIDs are left out too: entries
// are put back by host, and BSS resolves MACs and NIDs through HSM.
func GroupBootParameters(bs []csm.BootParams) ([]json.RawMessage, error) {
	var groups []csm.BootParams
	index := map[string]int{}
	for _, b := range bs {
		if len(b.Hosts) == 0 {
			continue
		}
		key, err := bootKey(b)
		if err != nil {
			return nil, fmt.Errorf("boot parameters of %v: %w", b.Hosts, err)
		}
		i, ok := index[key]
		if !ok {
			i = len(groups)
			index[key] = i
			groups = append(groups, csm.BootParams{Params: b.Params, Kernel: b.Kernel, Initrd: b.Initrd, CloudInit: b.CloudInit})
		}
		groups[i].Hosts = append(groups[i].Hosts, b.Hosts...)
	}
	out := make([]json.RawMessage, len(groups))
	for i, g := range groups {
		raw, err := json.Marshal(g)
		if err != nil {
			return nil, err
		}
		out[i] = raw
	}
	return out, nil
}

// bootKey is what two hosts must share to be one group.
func bootKey(b csm.BootParams) (string, error) {
	var ci bytes.Buffer
	if len(bytes.TrimSpace(b.CloudInit)) > 0 {
		if err := json.Compact(&ci, b.CloudInit); err != nil {
			return "", fmt.Errorf("cloud-init is not JSON: %v", err)
		}
	}
	key, err := json.Marshal([]string{b.Kernel, b.Initrd, b.Params, ci.String()})
	return string(key), err
}

// UngroupBootParameters is the snapshot's entry of each host, as
// GroupBootParameters grouped them, in order.
func UngroupBootParameters(groups []json.RawMessage) ([]csm.BootParams, error) {
	var out []csm.BootParams
	for i, raw := range groups {
		var g csm.BootParams
		if err := json.Unmarshal(raw, &g); err != nil {
			return nil, fmt.Errorf("grouped boot parameters %d: %v", i, err)
		}
		for _, h := range g.Hosts {
			e := g
			e.Hosts = []string{h}
			out = append(out, e)
		}
	}
	return out, nil
}
