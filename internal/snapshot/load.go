package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
)

// Load reads the snapshot in dir, checks every file against the manifest's
// SHA-256 and item count, and returns the part a run uses: the session
// templates whole, the subscriptions reduced to the subscribed xnames and
// the unfinished FAS actions (BSS boot parameters are checked, and read by
// LoadBootParameters). Any mismatch is an error naming the file.
func Load(dir string) (*api.SnapshotInput, Manifest, error) {
	abs, m, err := readManifest(dir)
	if err != nil {
		return nil, m, err
	}
	in := &api.SnapshotInput{Dir: abs, Taken: m.Taken, APIs: m.APIs}
	seen := map[string]bool{}
	for _, p := range m.Parts {
		if seen[p.Name] {
			return nil, m, fmt.Errorf("snapshot %s: %s lists part %s twice", abs, ManifestFile, p.Name)
		}
		seen[p.Name] = true
		if p.File == "" {
			continue // not taken, and the note says why
		}
		if p.File != filepath.Base(p.File) || strings.HasPrefix(p.File, ".") {
			return nil, m, fmt.Errorf("snapshot %s: %s names file %q for part %s: want a plain file name", abs, ManifestFile, p.File, p.Name)
		}
		items, err := readPart(abs, p)
		if err != nil {
			return nil, m, err
		}
		if err := use(in, p, items); err != nil {
			return nil, m, fmt.Errorf("snapshot %s: %s: %w", abs, p.File, err)
		}
	}
	for _, name := range []string{PartSessionTemplates, PartFASActions, PartSubscriptions} {
		if !seen[name] {
			return nil, m, fmt.Errorf("snapshot %s: %s has no part %s: the snapshot is incomplete, take it again", abs, ManifestFile, name)
		}
	}
	return in, m, nil
}

// readManifest reads and checks dir's manifest; abs is dir made absolute.
func readManifest(dir string) (abs string, m Manifest, err error) {
	abs, err = filepath.Abs(dir)
	if err != nil {
		return "", m, err
	}
	mb, err := os.ReadFile(filepath.Join(abs, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return abs, m, fmt.Errorf("snapshot %s: no %s: give the directory repopulate snapshot --out wrote", abs, ManifestFile)
	}
	if err != nil {
		return abs, m, fmt.Errorf("snapshot %s: %w", abs, err)
	}
	if err := strictDecode(mb, &m); err != nil {
		return abs, Manifest{}, fmt.Errorf("snapshot %s: %s is not a snapshot manifest: %v", abs, ManifestFile, err)
	}
	if m.Format != Format {
		return abs, Manifest{}, fmt.Errorf("snapshot %s: format %d, this version reads format %d: take the snapshot again with this version", abs, m.Format, Format)
	}
	return abs, m, nil
}

// ErrNoBootParameters: the snapshot holds no BSS boot parameters (it was
// taken before they were saved).
var ErrNoBootParameters = errors.New("the snapshot holds no BSS boot parameters")

// LoadBootParameters reads the BSS boot parameters saved in dir, checked
// against the manifest like every file Load reads, in the order BSS listed
// them (image entries, then nodes and tags). They are not part of a run's
// input (api.SnapshotInput): at about 850 bytes a compute node, a few
// thousand nodes exceed what a workflow start can carry, so whoever
// restores them reads them here. A snapshot without them is
// ErrNoBootParameters, with a message that says what to do.
func LoadBootParameters(dir string) ([]csm.BootParams, Manifest, error) {
	abs, m, err := readManifest(dir)
	if err != nil {
		return nil, m, err
	}
	p, ok := m.Part(PartBootParameters)
	if !ok || p.File == "" {
		return nil, m, fmt.Errorf("snapshot %s (taken %s): %w; it was taken by a version that did not save them: restore BSS as the runbook says (from its etcd backup on CSM 1.5 and later), or take a new snapshot before the next rebuild",
			abs, m.Taken.Format(time.RFC3339), ErrNoBootParameters)
	}
	items, err := readPart(abs, p)
	if err != nil {
		return nil, m, err
	}
	out, err := bootParams(items)
	if err != nil {
		return nil, m, fmt.Errorf("snapshot %s: %s: %w", abs, p.File, err)
	}
	return out, m, nil
}

func bootParams(items []json.RawMessage) ([]csm.BootParams, error) {
	out := make([]csm.BootParams, 0, len(items))
	for i, raw := range items {
		var b csm.BootParams
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("boot parameters %d: %v", i, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// readPart checks a part's file and returns its items (one for an object).
func readPart(dir string, p Part) ([]json.RawMessage, error) {
	path := filepath.Join(dir, p.File)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("snapshot file %s is missing, so its checksum does not match %s: the snapshot was changed after it was taken; restore the file or take the snapshot again", path, ManifestFile)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot file %s: %w", path, err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != p.SHA256 {
		return nil, fmt.Errorf("snapshot file %s: the checksum does not match %s (sha256 %s, manifest says %s): the file was changed after the snapshot was taken; restore it or take the snapshot again", path, ManifestFile, got, p.SHA256)
	}
	var items []json.RawMessage
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) {
		if err := json.Unmarshal(b, &items); err != nil {
			return nil, fmt.Errorf("snapshot file %s: %v", path, err)
		}
	} else {
		items = []json.RawMessage{json.RawMessage(b)}
	}
	if len(items) != p.Count {
		return nil, fmt.Errorf("snapshot file %s holds %d items, %s says %d: take the snapshot again", path, len(items), ManifestFile, p.Count)
	}
	return items, nil
}

// use puts a part's items into the run's input.
func use(in *api.SnapshotInput, p Part, items []json.RawMessage) error {
	switch p.Name {
	case PartSessionTemplates:
		for i, raw := range items {
			var t struct {
				Name string `json:"name"`
			}
			if err := json.Unmarshal(raw, &t); err != nil || strings.TrimSpace(t.Name) == "" {
				return fmt.Errorf("template %d has no name", i)
			}
			var c bytes.Buffer
			if err := json.Compact(&c, raw); err != nil {
				return err
			}
			in.SessionTemplates = append(in.SessionTemplates, json.RawMessage(c.Bytes()))
		}
	case PartSubscriptions:
		have := map[string]bool{}
		for i, raw := range items {
			var s csm.Subscription
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("subscription %d: %v", i, err)
			}
			// HMNFD 1.8.5 (CSM 1.0) lists no SubscriberComponent.
			if x := strings.ToLower(s.Xname()); x != "" && !have[x] {
				have[x] = true
				in.SubscribedXnames = append(in.SubscribedXnames, x)
			}
		}
		slices.Sort(in.SubscribedXnames)
	case PartBootParameters:
		// Checked here so that start --snapshot refuses a broken file;
		// read whole by LoadBootParameters (too large for a run's input):
		// the run carries a digest per host for the bss data check.
		bs, err := bootParams(items)
		if err != nil {
			return err
		}
		in.BootParamDigests = map[string]string{}
		for _, b := range bs {
			if h := b.Host(); h != "" {
				in.BootParamDigests[h] = b.Digest()
			}
		}
	case PartFASImages:
		n := len(items)
		in.FASImages = &n
	case PartFASActions:
		for i, raw := range items {
			var a csm.FASAction
			if err := json.Unmarshal(raw, &a); err != nil || a.ActionID == "" {
				return fmt.Errorf("FAS action %d has no actionID", i)
			}
			if FASActionFinished(a.State) {
				continue
			}
			in.FASActions = append(in.FASActions, api.SavedFASAction{ActionID: a.ActionID, State: a.State, Command: fasCommand(a.Command)})
		}
	}
	return nil
}

// fasCommand summarises what an action was asked to do, for the report.
func fasCommand(c csm.FASCommand) string {
	var parts []string
	if c.Description != "" {
		parts = append(parts, c.Description)
	}
	if c.Version != "" {
		parts = append(parts, "version "+c.Version)
	}
	if c.Tag != "" {
		parts = append(parts, "tag "+c.Tag)
	}
	if c.OverrideDryrun {
		parts = append(parts, "overrideDryrun")
	} else {
		parts = append(parts, "dry run")
	}
	return strings.Join(parts, ", ")
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// MaxInputBytes bounds a run's snapshot input: it travels in the workflow's
// start event, and Temporal refuses payloads above 2 MB.
const MaxInputBytes = 1536 << 10

// CheckSize refuses an input too large to start a run with, naming the part
// that takes most of it.
func CheckSize(in *api.SnapshotInput) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if len(b) <= MaxInputBytes {
		return nil
	}
	size := func(v any) int { b, _ := json.Marshal(v); return len(b) }
	parts := []struct {
		what string
		n    int
	}{
		{fmt.Sprintf("%d BOS session templates", len(in.SessionTemplates)), size(in.SessionTemplates)},
		{fmt.Sprintf("%d subscribed xnames", len(in.SubscribedXnames)), size(in.SubscribedXnames)},
		{fmt.Sprintf("%d unfinished FAS actions", len(in.FASActions)), size(in.FASActions)},
		{fmt.Sprintf("%d BSS boot parameter entries (hosts with identical parameters grouped)", len(in.BootParameters)), size(in.BootParameters)},
		{fmt.Sprintf("digests of %d BSS boot parameters", len(in.BootParamDigests)), size(in.BootParamDigests)},
	}
	big := slices.MaxFunc(parts, func(a, b struct {
		what string
		n    int
	}) int {
		return a.n - b.n
	})
	fix := fmt.Sprintf("start without --snapshot and restore those by hand from %s", in.Dir)
	if big.n == size(in.BootParameters) {
		fix = fmt.Sprintf("run the other services with --snapshot and leave bss out of --services, then restore BSS from its etcd backup (CSM 1.5+ runbook) or by hand from %s (PUT /apis/bss/boot/v1/bootparameters, one request per entry)", filepath.Join(in.Dir, PartBootParameters+".json"))
	}
	return fmt.Errorf("snapshot %s is %s as a run's input, above the %s a workflow start can carry: %s take %s; %s",
		in.Dir, kib(len(b)), kib(MaxInputBytes), big.what, kib(big.n), fix)
}

func kib(n int) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
