package csmemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
)

// BSS boot parameters as hms-bss stores and serves them (its
// cmd/boot-script-service default_api.go and boot_data.go, unchanged in
// what follows from v1.7.7, CSM 1.0, to v1.28.0, CSM 1.6). Every release
// serves BSS: the runbook lists it on every docs-csm branch and its etcd
// cluster is cray-bss-etcd (1.0–1.4) or cray-bss-bitnami-etcd (1.5, 1.6)
// (CSM-APIS.md §8, §10).
//
// In etcd BSS keeps one key per host, /params/<name>, that refers to the
// kernel and initrd by image keys, /kernel/<fnv64a of the path> and
// /initrd/<...>; a PUT naming a kernel or initrd stores the image key
// too. GET without a filter lists the kernel images, then the initrd
// images (each {"kernel"|"initrd": path, "params": ...}), then the hosts,
// in key order; with nothing stored the list is null. A filtered GET
// (?name=, ?nid=, or a body) lists the matching entries in key order, as
// 1.7.7 does (v1.28.0 answers named hosts in the order asked), and
// 404 when none matches. Writes answer an
// empty body; refusals are RFC 7807 problems (hms-base
// SendProblemDetailsGeneric).

// bssParams is bssTypes.BootParams: the wire shape of a request or of one
// listed entry. CloudInit is a struct, so it is always rendered.
type bssParams struct {
	Hosts     []string     `json:"hosts,omitempty"`
	Macs      []string     `json:"macs,omitempty"`
	Nids      []int32      `json:"nids,omitempty"`
	Params    string       `json:"params,omitempty"`
	Kernel    string       `json:"kernel,omitempty"`
	Initrd    string       `json:"initrd,omitempty"`
	CloudInit bssCloudInit `json:"cloud-init,omitempty"`
}

// bssCloudInit is bssTypes.CloudInit.
type bssCloudInit struct {
	MetaData  map[string]any `json:"meta-data"`
	UserData  map[string]any `json:"user-data"`
	PhoneHome bssPhoneHome   `json:"phone-home,omitempty"`
}

// bssPhoneHome is bssTypes.PhoneHome.
type bssPhoneHome struct {
	PublicKeyDSA     string `json:"pub_key_dsa"`
	PublicKeyRSA     string `json:"pub_key_rsa"`
	PublicKeyECDSA   string `json:"pub_key_ecdsa"`
	PublicKeyED25519 string `json:"pub_key_ed25519,omitempty"`
	InstanceID       string `json:"instance_id"`
	Hostname         string `json:"hostname"`
	FQDN             string `json:"fqdn"`
}

func (p bssPhoneHome) set() bool { return p != bssPhoneHome{} }

// bssHost is the value of /params/<name>: image keys, not paths.
type bssHost struct {
	params         string
	kernel, initrd string
	cloudInit      bssCloudInit
}

// bssImage is the value of /kernel/<hash> or /initrd/<hash>.
type bssImage struct {
	path, params string
}

const (
	bssKernel = "kernel"
	bssInitrd = "initrd"
)

// BootImage is the COS image the seeded compute nodes boot: its kernel,
// initrd and root file system in S3, as IMS stores them
// (s3://boot-images/<image id>/...).
const BootImage = "s3://boot-images/5b1a4b7e-cos-2.0.30"

// BootImageEtag is the etag of BootImage's rootfs.
const BootImageEtag = "c0ffee3b1e5a9d7f"

// DefaultBootParams are the entries BSS holds for the compute nodes in
// cs on a running system: what BOS wrote when it last booted them, the
// COS image's kernel and initrd and the kernel parameters of the session
// template, with the root file system projected by CPS
// (root=craycps-s3:<rootfs>:<etag>:dvs:..., CSM-APIS.md §7).
func DefaultBootParams(cs []csm.Component) []csm.BootParams {
	var out []csm.BootParams
	for _, c := range cs {
		if !strings.EqualFold(c.Type, "Node") || !strings.EqualFold(c.Role, "Compute") {
			continue
		}
		out = append(out, csm.BootParams{
			Hosts:  []string{c.ID},
			Kernel: BootImage + "/kernel",
			Initrd: BootImage + "/initrd",
			Params: "console=ttyS0,115200 bad_page=panic crashkernel=340M hugepagelist=2m-2g intel_iommu=off intel_pstate=disable iommu=pt ip=dhcp " +
				"numa_interleave_omit=headless numa_zonelist_order=node oops=panic pageblock_order=14 pcie_ports=native printk.synchronous=y " +
				"rd.neednet=1 rd.retry=10 rd.shell turbo_boost_limit=999 spire_join_token=${SPIRE_JOIN_TOKEN} " +
				"root=craycps-s3:" + BootImage + "/rootfs:" + BootImageEtag + ":dvs:api-gw-service-nmn.local:300:nmn0 " +
				"nmd_data=url=" + BootImage + "/rootfs,etag=" + BootImageEtag,
		})
	}
	return out
}

// SetBootParams replaces everything BSS holds with bs, each stored as a
// PUT of it would store it (a kernel or initrd named also becomes an image
// entry). Entries must name their nodes by hosts.
func (e *Emulator) SetBootParams(bs []csm.BootParams) error {
	var reqs []bssParams
	for i, b := range bs {
		p, err := fromBootParams(b)
		if err != nil {
			return fmt.Errorf("csmemu: boot parameters %d: %w", i, err)
		}
		if len(p.Hosts) == 0 {
			return fmt.Errorf("csmemu: boot parameters %d name no host", i)
		}
		reqs = append(reqs, p)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.bssHosts)
	clear(e.bssImages)
	for _, p := range reqs {
		e.bssStoreLocked(p)
	}
	return nil
}

func fromBootParams(b csm.BootParams) (bssParams, error) {
	raw, err := json.Marshal(b)
	if err != nil {
		return bssParams{}, err
	}
	var p bssParams
	err = json.Unmarshal(raw, &p)
	return p, err
}

// BootParams returns what GET /bootparameters lists now.
func (e *Emulator) BootParams() []csm.BootParams {
	e.mu.Lock()
	list := e.bssListLocked()
	e.mu.Unlock()
	out := make([]csm.BootParams, 0, len(list))
	for _, p := range list {
		raw, _ := json.Marshal(p)
		var b csm.BootParams
		json.Unmarshal(raw, &b) //nolint:errcheck // our own encoding
		out = append(out, b)
	}
	return out
}

// WipeBSS plays the etcd rebuild under BSS: every key is gone, node and
// tag entries and image entries alike, and GET lists null.
func (e *Emulator) WipeBSS() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.bssHosts)
	clear(e.bssImages)
}

func bssImageKey(kind, path string) string {
	h := fnv.New64a()
	h.Write([]byte(path))
	return fmt.Sprintf("/%s/%x", kind, h.Sum(nil))
}

// bssImageStoreLocked returns the key of the image at path, storing it
// (without params) when BSS has none (boot_data.go imageStore).
func (e *Emulator) bssImageStoreLocked(kind, path string) string {
	for k, im := range e.bssImages {
		if strings.HasPrefix(k, "/"+kind+"/") && im.path == path {
			return k
		}
	}
	k := bssImageKey(kind, path)
	e.bssImages[k] = bssImage{path: path}
	return k
}

func (e *Emulator) bssImageFindLocked(kind, path string) bool {
	for k, im := range e.bssImages {
		if strings.HasPrefix(k, "/"+kind+"/") && im.path == path {
			return true
		}
	}
	return false
}

// bssNIDLocked is the xname HSM gives nid (ok), else the name BSS stores
// an unknown NID under.
func (e *Emulator) bssNIDLocked(nid int32) (name string, ok bool) {
	for _, c := range e.components {
		if c.NID == int(nid) && c.NID != 0 {
			return c.ID, true
		}
	}
	return fmt.Sprintf("nid%d", nid), false
}

// bssStoreLocked is boot_data.go Store: the entry of every named host is
// replaced whole; with no host, the kernel's (else the initrd's) params.
// It stores nothing when nothing is named, and BSS still answers success
// (Store builds its "Nothing to Store" error and drops it).
func (e *Emulator) bssStoreLocked(p bssParams) {
	var kernel, initrd string
	if p.Kernel != "" {
		kernel = e.bssImageStoreLocked(bssKernel, p.Kernel)
	}
	if p.Initrd != "" {
		initrd = e.bssImageStoreLocked(bssInitrd, p.Initrd)
	}
	h := bssHost{params: p.Params, kernel: kernel, initrd: initrd, cloudInit: p.CloudInit}
	switch {
	case len(p.Hosts) > 0:
		for _, name := range p.Hosts {
			e.bssHosts[name] = h
		}
	case len(p.Macs) > 0:
		// HSM here knows no MACs: BSS stores under the MAC itself.
		for _, m := range p.Macs {
			e.bssHosts[m] = h
		}
	case len(p.Nids) > 0:
		for _, n := range p.Nids {
			name, _ := e.bssNIDLocked(n)
			e.bssHosts[name] = h
		}
	case kernel != "":
		e.bssImages[kernel] = bssImage{path: p.Kernel, params: p.Params}
	case initrd != "":
		e.bssImages[initrd] = bssImage{path: p.Initrd, params: p.Params}
	}
}

// render is a host entry as GET lists it: image keys resolved to paths.
func (e *Emulator) bssRenderLocked(name string, h bssHost) bssParams {
	return bssParams{Hosts: []string{name}, Params: h.params, Kernel: e.bssImages[h.kernel].path,
		Initrd: e.bssImages[h.initrd].path, CloudInit: h.cloudInit}
}

func (e *Emulator) bssImageKeysLocked(kind string) []string {
	var keys []string
	for k := range e.bssImages {
		if strings.HasPrefix(k, "/"+kind+"/") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func (e *Emulator) bssNamesLocked() []string {
	names := make([]string, 0, len(e.bssHosts))
	for n := range e.bssHosts {
		names = append(names, n)
	}
	slices.Sort(names) // etcd's key order under /params/
	return names
}

// bssListLocked is BootparametersGetAll's list (nil when BSS is empty).
func (e *Emulator) bssListLocked() []bssParams {
	var out []bssParams
	for _, k := range e.bssImageKeysLocked(bssKernel) {
		out = append(out, bssParams{Kernel: e.bssImages[k].path, Params: e.bssImages[k].params})
	}
	for _, k := range e.bssImageKeysLocked(bssInitrd) {
		out = append(out, bssParams{Initrd: e.bssImages[k].path, Params: e.bssImages[k].params})
	}
	for _, n := range e.bssNamesLocked() {
		out = append(out, e.bssRenderLocked(n, e.bssHosts[n]))
	}
	return out
}

// bssJSON answers as BSS's handlers do: json.Encoder (a trailing newline),
// "application/json; charset=UTF-8".
func bssJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		writeProblem(w, http.StatusInternalServerError, "Internal Server Error", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// bssWritten answers a successful PUT or POST: an empty body, and from
// BSS 1.21.0 (CSM 1.3) the BSS-Referral-Token Store made for the hosts.
func (e *Emulator) bssWritten(w http.ResponseWriter, status int, p bssParams) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if e.surface.bssReferralToken && (len(p.Hosts) > 0 || len(p.Macs) > 0 || len(p.Nids) > 0) {
		w.Header().Set("BSS-Referral-Token", newUUID())
	}
	w.WriteHeader(status)
}

// readBSSBody decodes a request body as BSS does (json.Decoder, unknown
// members ignored).
func readBSSBody(w http.ResponseWriter, r *http.Request) (bssParams, bool) {
	var p bssParams
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("Bad Request: %s", err))
		return p, false
	}
	return p, true
}

func (e *Emulator) getBootParameters(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("Failed to receive request body: %v", err))
		return
	}
	q := r.URL.Query()
	mac, name, nid := strings.Join(q["mac"], ","), strings.Join(q["name"], ","), strings.Join(q["nid"], ",")
	filtered := mac != "" || name != "" || nid != ""
	if len(body) == 0 && !filtered {
		e.mu.Lock()
		list := e.bssListLocked()
		e.mu.Unlock()
		bssJSON(w, http.StatusOK, list) // nil encodes as null, as BSS's does
		return
	}
	var args bssParams
	if err := json.Unmarshal(body, &args); err != nil && !filtered {
		writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("Failed to interpret request body '%s': %v", body, err))
		return
	}
	if mac != "" {
		args.Macs = append(args.Macs, strings.Split(mac, ",")...)
	}
	if name != "" {
		args.Hosts = append(args.Hosts, strings.Split(name, ",")...)
	}
	if nid != "" {
		for _, n := range strings.Split(nid, ",") {
			v, err := strconv.ParseInt(n, 0, 0)
			if err != nil {
				writeProblem(w, http.StatusBadRequest, "Bad Request", fmt.Sprintf("Bad Request - Invalid nid '%s'", n))
				return
			}
			args.Nids = append(args.Nids, int32(v))
		}
	}
	e.mu.Lock()
	var out []bssParams
	if args.Kernel != "" || args.Initrd != "" {
		for _, k := range e.bssImageKeysLocked(bssKernel) {
			if im := e.bssImages[k]; im.path == args.Kernel {
				out = append(out, bssParams{Kernel: im.path, Params: im.params})
			}
		}
		for _, k := range e.bssImageKeysLocked(bssInitrd) {
			if im := e.bssImages[k]; im.path == args.Initrd {
				out = append(out, bssParams{Initrd: im.path, Params: im.params})
			}
		}
	}
	for _, n := range e.bssNamesLocked() {
		hsmNID := 0
		for _, c := range e.components {
			if c.ID == n {
				hsmNID = c.NID
			}
		}
		if slices.Contains(args.Hosts, n) || hsmNID != 0 && slices.Contains(args.Nids, int32(hsmNID)) {
			out = append(out, e.bssRenderLocked(n, e.bssHosts[n]))
		}
	}
	e.mu.Unlock()
	if out == nil {
		var objs []string
		for _, o := range []struct {
			what string
			set  bool
		}{{"Hosts", len(args.Hosts) > 0}, {"MACs", len(args.Macs) > 0}, {"NIDs", len(args.Nids) > 0},
			{"kernel", args.Kernel != ""}, {"initrd", args.Initrd != ""}} {
			if o.set {
				objs = append(objs, o.what)
			}
		}
		if len(objs) == 0 {
			writeProblem(w, http.StatusBadRequest, "Bad Request", "No specified data requested")
			return
		}
		msg := "Cannot find boot parameters for requested " + strings.Join(objs[:len(objs)-1], ", ")
		if len(objs) > 1 {
			msg += " or "
		}
		writeProblem(w, http.StatusNotFound, "Not Found", msg+objs[len(objs)-1])
		return
	}
	bssJSON(w, http.StatusOK, out)
}

// putBootParameters: PUT creates or replaces (boot_data.go Store).
func (e *Emulator) putBootParameters(w http.ResponseWriter, r *http.Request) {
	p, ok := readBSSBody(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	e.bssStoreLocked(p)
	e.mu.Unlock()
	e.bssWritten(w, http.StatusOK, p)
}

// postBootParameters: POST creates and refuses, with 400, a host that
// already has an entry (boot_data.go StoreNew).
func (e *Emulator) postBootParameters(w http.ResponseWriter, r *http.Request) {
	p, ok := readBSSBody(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	exists := ""
	switch {
	case len(p.Hosts) > 0:
		if i := slices.IndexFunc(p.Hosts, func(h string) bool { _, ok := e.bssHosts[h]; return ok }); i >= 0 {
			exists = p.Hosts[i]
		}
	case len(p.Macs) > 0:
		// HSM here knows no MACs, so StoreNew finds no existing entry.
	case len(p.Nids) > 0:
		for _, n := range p.Nids {
			if name, known := e.bssNIDLocked(n); known {
				if _, ok := e.bssHosts[name]; ok {
					exists = strconv.Itoa(int(n))
					break
				}
			}
		}
	case p.Kernel != "":
		if e.bssImageFindLocked(bssKernel, p.Kernel) {
			exists = p.Kernel
		}
	case p.Initrd != "":
		if e.bssImageFindLocked(bssInitrd, p.Initrd) {
			exists = p.Initrd
		}
	}
	if exists == "" {
		e.bssStoreLocked(p)
	}
	e.mu.Unlock()
	if exists != "" {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "Bad Request: Already exists: "+exists)
		return
	}
	e.bssWritten(w, http.StatusCreated, p)
}

// patchBootParameters: PATCH changes the named fields of existing entries
// and answers 404 when a host has none (boot_data.go Update).
func (e *Emulator) patchBootParameters(w http.ResponseWriter, r *http.Request) {
	p, ok := readBSSBody(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var kernel, initrd string
	if p.Kernel != "" {
		kernel = e.bssImageStoreLocked(bssKernel, p.Kernel)
	}
	if p.Initrd != "" {
		initrd = e.bssImageStoreLocked(bssInitrd, p.Initrd)
	}
	names := slices.Clone(p.Hosts)
	for _, n := range p.Nids {
		// Update skips a NID HSM does not know.
		if name, known := e.bssNIDLocked(n); known {
			names = append(names, name)
		}
	}
	for _, n := range names {
		if _, ok := e.bssHosts[n]; !ok {
			writeProblem(w, http.StatusNotFound, "Not Found",
				fmt.Sprintf("Not Found: Error looking up %s: Key /params/%s does not exist", n, n))
			return
		}
	}
	switch {
	case len(names) > 0:
		for _, n := range names {
			h := e.bssHosts[n]
			if p.Params != "" {
				h.params = p.Params
			}
			if kernel != "" {
				h.kernel = kernel
			}
			if initrd != "" {
				h.initrd = initrd
			}
			h.cloudInit.MetaData = mergePatch(h.cloudInit.MetaData, p.CloudInit.MetaData)
			h.cloudInit.UserData = mergePatch(h.cloudInit.UserData, p.CloudInit.UserData)
			if p.CloudInit.PhoneHome.set() {
				h.cloudInit.PhoneHome = p.CloudInit.PhoneHome
			}
			e.bssHosts[n] = h
		}
	case kernel != "":
		e.bssImages[kernel] = bssImage{path: p.Kernel, params: p.Params}
	case initrd != "":
		e.bssImages[initrd] = bssImage{path: p.Initrd, params: p.Params}
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
}

// mergePatch applies patch to base as a JSON merge patch (RFC 7396), as
// BSS merges cloud-init meta-data and user-data.
func mergePatch(base, patch map[string]any) map[string]any {
	if len(patch) == 0 {
		return base
	}
	if len(base) == 0 {
		return patch
	}
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range patch {
		pm, isMap := v.(map[string]any)
		bm, baseMap := out[k].(map[string]any)
		switch {
		case v == nil:
			delete(out, k)
		case isMap && baseMap:
			out[k] = mergePatch(bm, pm)
		default:
			out[k] = v
		}
	}
	return out
}

// deleteBootParameters removes the named hosts' entries, and an image
// named by kernel or initrd with every reference to it; a missing host is
// a 400 (boot_data.go Remove), the others are still removed.
func (e *Emulator) deleteBootParameters(w http.ResponseWriter, r *http.Request) {
	p, ok := readBSSBody(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	var firstErr string
	remove := func(h string) {
		if _, ok := e.bssHosts[h]; !ok {
			if firstErr == "" {
				firstErr = fmt.Sprintf("Key %s deletion: Key /params/%s does not exist", h, h)
			}
			return
		}
		delete(e.bssHosts, h)
	}
	for _, h := range p.Hosts {
		remove(h)
	}
	for _, n := range p.Nids {
		name, _ := e.bssNIDLocked(n)
		remove(name)
	}
	for kind, path := range map[string]string{bssKernel: p.Kernel, bssInitrd: p.Initrd} {
		if path == "" {
			continue
		}
		for k, im := range e.bssImages {
			if !strings.HasPrefix(k, "/"+kind+"/") || im.path != path {
				continue
			}
			delete(e.bssImages, k)
			for n, h := range e.bssHosts {
				if h.kernel == k {
					h.kernel = ""
				}
				if h.initrd == k {
					h.initrd = ""
				}
				e.bssHosts[n] = h
			}
		}
	}
	e.mu.Unlock()
	if firstErr != "" {
		writeProblem(w, http.StatusBadRequest, "Bad Request", firstErr)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
}

// bssReferralTokens: BSS hands out a referral token on writes from 1.21.0,
// which CSM 1.3 ships (chart 2.1.5; hms-bss-charts
// cray-hms-bss.compatibility.yaml).
func bssReferralTokens(r api.Release) bool {
	return r != api.CSM10 && r != api.CSM12
}

func (e *Emulator) ctlWipeBSS(w http.ResponseWriter, r *http.Request) {
	e.WipeBSS()
	w.WriteHeader(http.StatusNoContent)
}
