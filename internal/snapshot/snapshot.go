// Package snapshot saves, before an etcd rebuild, the data the rebuild
// wipes and that nothing else can bring back exactly: BOS session
// templates (read through the BOS API version the release serves, which
// the manifest records), the External DNS EtcdCluster, FAS images and unfinished
// actions, CRUS sessions, HMNFD subscriptions and BSS boot parameters. A
// snapshot is a directory
// of JSON files and a manifest.json with each file's item count and
// SHA-256, so that a run started from it (repopulate start --snapshot) uses
// exactly what was saved, or refuses.
package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/kube"
)

// ManifestFile is the manifest's name inside a snapshot directory.
const ManifestFile = "manifest.json"

// Format is the layout version written to the manifest; Load refuses others.
const Format = 1

// Part names, in the order they are taken.
const (
	PartSessionTemplates = "bos-sessiontemplates"
	PartEtcdCluster      = "externaldns-etcdcluster"
	PartFASImages        = "fas-images"
	PartFASActions       = "fas-actions"
	PartCRUSSessions     = "crus-sessions"
	PartSubscriptions    = "hmnfd-subscriptions"
	// PartBootParameters is every entry GET /bootparameters listed. It is
	// absent from snapshots taken before BSS was saved; those still load.
	PartBootParameters = "bss-bootparameters"
)

// Manifest describes a snapshot directory.
type Manifest struct {
	Format      int       `json:"format"`
	Taken       time.Time `json:"taken"`
	CSMBaseURL  string    `json:"csmBaseURL"`
	ToolVersion string    `json:"toolVersion"`
	// APIs are the API versions the snapshot was read through, chosen from
	// the gateway's probes (BOS v2 where it exists, else v1; HMNFD v2 where
	// it exists, else v1). Absent in snapshots taken before releases were
	// modelled: those were read through v2.
	APIs   api.APIVersions    `json:"apis,omitzero"`
	Probes *api.ReleaseProbes `json:"probes,omitempty"`
	Parts  []Part             `json:"parts"`
}

// Part is one saved file. A part that could not be taken for a known reason
// (no Kubernetes credentials, CRUS not installed) has no File and says why
// in Note.
type Part struct {
	Name   string `json:"name"`
	File   string `json:"file,omitempty"`
	Count  int    `json:"count"`
	SHA256 string `json:"sha256,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Part returns the named part, if the manifest has it.
func (m Manifest) Part(name string) (Part, bool) {
	i := slices.IndexFunc(m.Parts, func(p Part) bool { return p.Name == name })
	if i < 0 {
		return Part{}, false
	}
	return m.Parts[i], true
}

// Sources are where a snapshot is read from.
type Sources struct {
	// CSM reaches the API gateway (required).
	CSM *csm.Client
	// Kube reads the EtcdCluster; nil skips it with a note in the manifest.
	Kube dynamic.Interface
	// ExternalDNS names the EtcdCluster; zero skips it (the CSM release has none).
	ExternalDNS api.ObjectRef
}

// Take saves a snapshot into dir, which must not exist or be empty: a
// previous snapshot is never overwritten (see TakeOver). Everything is
// written to a temporary sibling directory that is renamed to dir only once
// complete, so a failed or interrupted Take leaves no dir behind.
func Take(ctx context.Context, src Sources, dir string) (Manifest, error) {
	return take(ctx, src, dir, false)
}

// TakeOver is Take into a dir that may hold a previous snapshot (--force):
// the old content is replaced only once the new snapshot is complete, so a
// failed TakeOver leaves the old snapshot as it was.
func TakeOver(ctx context.Context, src Sources, dir string) (Manifest, error) {
	return take(ctx, src, dir, true)
}

// CheckTarget returns an error when dir cannot receive a snapshot without
// --force: it exists and is not an empty directory.
func CheckTarget(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		if fi, serr := os.Stat(dir); serr == nil && !fi.IsDir() {
			return fmt.Errorf("snapshot directory %s is a file: give a directory that does not exist yet", dir)
		}
		return fmt.Errorf("snapshot directory %s: %w", dir, err)
	case len(entries) > 0:
		what := "is not empty"
		if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err == nil {
			what = "already holds a snapshot"
		}
		return fmt.Errorf("snapshot directory %s %s: give a new directory, or --force to replace its content once the new snapshot is complete", dir, what)
	}
	return nil
}

func take(ctx context.Context, src Sources, dir string, force bool) (Manifest, error) {
	if src.CSM == nil {
		return Manifest{}, errors.New("no CSM API client: set csm.baseURL (and csm.clientSecret) in the config file")
	}
	dir = filepath.Clean(dir)
	if !force {
		if err := CheckTarget(dir); err != nil {
			return Manifest{}, err
		}
	} else if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return Manifest{}, fmt.Errorf("snapshot directory %s is a file: give a directory", dir)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Manifest{}, fmt.Errorf("create %s: %w", parent, err)
	}
	// A sibling, so that the final rename stays on one file system.
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".partial-")
	if err != nil {
		return Manifest{}, fmt.Errorf("create a temporary directory next to %s: %w", dir, err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o750); err != nil {
		return Manifest{}, err
	}
	probes, err := src.CSM.Probe(ctx)
	if err != nil {
		return Manifest{}, fmt.Errorf("probe the API versions the gateway serves: %w", err)
	}
	apis, err := probes.APIs()
	if err != nil {
		return Manifest{}, err
	}
	cl := src.CSM.WithAPIs(apis)
	m := Manifest{Format: Format, Taken: time.Now().UTC().Truncate(time.Second), CSMBaseURL: src.CSM.BaseURL(), ToolVersion: toolVersion(),
		APIs: apis, Probes: &probes}
	w := writer{dir: tmp, m: &m}

	templates, err := cl.SessionTemplates(ctx)
	if err != nil {
		return Manifest{}, fmt.Errorf("BOS %s session templates: %w", apis.BOSVersion(), err)
	}
	raws := make([]json.RawMessage, 0, len(templates))
	for _, t := range templates {
		b, err := json.Marshal(t)
		if err != nil {
			return Manifest{}, fmt.Errorf("encode BOS session template %s: %w", t.Name, err)
		}
		raws = append(raws, b)
	}
	if err := w.write(PartSessionTemplates, raws, len(raws)); err != nil {
		return Manifest{}, err
	}

	if err := w.etcdCluster(ctx, src); err != nil {
		return Manifest{}, err
	}

	images, err := cl.FASImages(ctx)
	if err != nil {
		return Manifest{}, fmt.Errorf("FAS images: %w", err)
	}
	if err := w.write(PartFASImages, nonNil(images), len(images)); err != nil {
		return Manifest{}, err
	}
	actions, err := cl.FASActions(ctx)
	if err != nil {
		return Manifest{}, fmt.Errorf("FAS actions: %w", err)
	}
	actions = slices.DeleteFunc(actions, func(a csm.FASAction) bool { return FASActionFinished(a.State) })
	if err := w.write(PartFASActions, nonNil(actions), len(actions)); err != nil {
		return Manifest{}, err
	}

	sessions, err := cl.CRUSSessions(ctx)
	switch {
	case csm.KindOf(err) == csm.NotFound:
		m.Parts = append(m.Parts, Part{Name: PartCRUSSessions, Note: "CRUS is not installed (the API answered 404; CSM 1.5 removed it)"})
	case err != nil:
		return Manifest{}, fmt.Errorf("CRUS sessions: %w", err)
	default:
		if err := w.write(PartCRUSSessions, nonNil(sessions), len(sessions)); err != nil {
			return Manifest{}, err
		}
	}

	subs, err := cl.Subscriptions(ctx)
	if err != nil {
		return Manifest{}, fmt.Errorf("HMNFD subscriptions: %w", err)
	}
	if err := w.write(PartSubscriptions, nonNil(subs), len(subs)); err != nil {
		return Manifest{}, err
	}

	bootParams, err := cl.BootParameters(ctx)
	if err != nil {
		return Manifest{}, fmt.Errorf("BSS boot parameters: %w", err)
	}
	if err := w.write(PartBootParameters, nonNil(bootParams), len(bootParams)); err != nil {
		return Manifest{}, err
	}

	if err := writeJSONFile(filepath.Join(tmp, ManifestFile), m); err != nil {
		return Manifest{}, err
	}
	if err := ctx.Err(); err != nil {
		return Manifest{}, fmt.Errorf("snapshot interrupted: %w", err)
	}
	if err := install(tmp, dir, force); err != nil {
		return Manifest{}, err
	}
	done = true
	return m, nil
}

// install renames the finished tmp to dir. With force an existing dir is
// moved aside first and removed only after the rename succeeded.
func install(tmp, dir string, force bool) error {
	var old string
	if force {
		if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
			old = tmp + ".old"
			if err := os.Rename(dir, old); err != nil {
				return fmt.Errorf("move the previous content of %s aside: %w", dir, err)
			}
		}
	}
	// rename(2) replaces an empty directory and refuses a non-empty one, so
	// a snapshot written meanwhile by someone else is not overwritten.
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			if rerr := os.Rename(old, dir); rerr != nil {
				return fmt.Errorf("install the snapshot as %s: %v; the previous content is in %s (moving it back failed: %v)", dir, err, old, rerr)
			}
		}
		return fmt.Errorf("install the snapshot as %s: %w", dir, err)
	}
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

// FASActionFinished reports whether a FAS action state is final: such an
// action needs nothing after the rebuild.
func FASActionFinished(state string) bool {
	switch strings.ToLower(state) {
	case "completed", "aborted":
		return true
	}
	return false
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

type writer struct {
	dir string
	m   *Manifest
}

// write saves v as part name's file and records it in the manifest.
func (w writer) write(name string, v any, count int) error {
	file := name + ".json"
	b, err := encode(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", file, err)
	}
	if err := writeFile(filepath.Join(w.dir, file), b); err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	w.m.Parts = append(w.m.Parts, Part{Name: name, File: file, Count: count, SHA256: hex.EncodeToString(sum[:])})
	return nil
}

func (w writer) etcdCluster(ctx context.Context, src Sources) error {
	ref := src.ExternalDNS
	switch {
	case ref.Name == "":
		w.m.Parts = append(w.m.Parts, Part{Name: PartEtcdCluster, Note: "this CSM release has no External DNS EtcdCluster"})
		return nil
	case src.Kube == nil:
		w.m.Parts = append(w.m.Parts, Part{Name: PartEtcdCluster, Note: fmt.Sprintf("EtcdCluster %s not saved: no Kubernetes credentials (give --kubeconfig)", ref)})
		return nil
	}
	obj, err := src.Kube.Resource(kube.EtcdClusterGVR).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("EtcdCluster %s not found: check services.externaldns in the config file, or whether etcd-operator's CRD is installed", ref)
	case err != nil:
		return fmt.Errorf("read EtcdCluster %s: %w", ref, err)
	}
	// The API server's own JSON, as kubectl get -o json prints it.
	b, err := obj.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode EtcdCluster %s: %w", ref, err)
	}
	return w.write(PartEtcdCluster, json.RawMessage(b), 1)
}

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func writeJSONFile(path string, v any) error {
	b, err := encode(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	return writeFile(path, b)
}

func writeFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The snapshot must survive the power cycle a rebuild may involve.
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// toolVersion is the module version and VCS revision the binary was built from.
func toolVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
	}
	return strings.TrimSpace(v)
}
