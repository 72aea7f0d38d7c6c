package datacheck

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// Activities read what a service holds through the worker's CSM API client.
type Activities struct{ CSM *activities.CSM }

// Result is what a check found when it passed (Outcome.Message).
type Result struct {
	activities.Outcome
}

// BootParametersRequest is what CheckBootParameters compares BSS against.
type BootParametersRequest struct {
	// Digests are the snapshot's entries, host → csm.BootParams.Digest;
	// nil: no snapshot with BSS data, only presence is checked.
	Digests     map[string]string `json:"digests,omitempty"`
	SnapshotDir string            `json:"snapshotDir,omitempty"`
}

// sampleSize is how many names a finding lists before "and N more".
const sampleSize = 5

// CheckBootParameters lists the nodes HSM knows and BSS's boot parameters,
// and fails, naming how many and which, when a node has no entry of its
// own or an entry differs from the snapshot's.
func (a *Activities) CheckBootParameters(ctx context.Context, req BootParametersRequest) (Result, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return Result{}, err
	}
	nodes, err := cl.Components(ctx, csm.ComponentQuery{Types: []string{"Node"}})
	if err != nil {
		return Result{}, activities.CSMError(err)
	}
	entries, err := cl.BootParameters(ctx)
	if err != nil {
		return Result{}, activities.CSMError(err)
	}
	held := map[string]csm.BootParams{}
	for _, b := range entries {
		if h := b.Host(); h != "" {
			held[strings.ToLower(h)] = b
		}
	}
	var missing []string
	for _, n := range nodes {
		if _, ok := held[strings.ToLower(n.ID)]; !ok {
			missing = append(missing, n.ID)
		}
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("BSS holds no boot parameters for %d of the %d nodes HSM lists (%s)", len(missing), len(nodes), procedure.Sample(missing, sampleSize)))
	}
	found := fmt.Sprintf("BSS holds boot parameters for all %d nodes HSM lists", len(nodes))
	if req.Digests != nil {
		var gone, differ []string
		for _, host := range sortedKeys(req.Digests) {
			b, ok := held[strings.ToLower(host)]
			switch {
			case !ok && !slices.ContainsFunc(missing, func(m string) bool { return strings.EqualFold(m, host) }):
				gone = append(gone, host)
			case ok && b.Digest() != req.Digests[host]:
				differ = append(differ, host)
			}
		}
		if len(gone) > 0 {
			problems = append(problems, fmt.Sprintf("%d entries of snapshot %s are not in BSS (%s)", len(gone), req.SnapshotDir, procedure.Sample(gone, sampleSize)))
		}
		if len(differ) > 0 {
			problems = append(problems, fmt.Sprintf("%d entries differ from snapshot %s (%s)", len(differ), req.SnapshotDir, procedure.Sample(differ, sampleSize)))
		}
		found += fmt.Sprintf("; the %d entries of snapshot %s are there and equal", len(req.Digests), req.SnapshotDir)
	}
	if len(problems) > 0 {
		return Result{}, temporal.NewNonRetryableApplicationError(strings.Join(problems, "; "), ErrDataCheckFailed, nil)
	}
	return Result{Outcome: activities.NewOutcome(ctx, "%s", found)}, nil
}

// FASImagesRequest is what CheckFASImages expects of FAS.
type FASImagesRequest struct {
	// SnapshotImages is how many images FAS listed in the snapshot; nil:
	// no snapshot, at least one is expected.
	SnapshotImages *int `json:"snapshotImages,omitempty"`
	// LoaderRunID is the loader run the procedure started; empty when FAS
	// ran a site's loader Job instead, whose run is not known.
	LoaderRunID string `json:"loaderRunId,omitempty"`
}

// loaderError matches an error line of the FAS loader's log; FAS's
// loader logs through Python's logging, whose level names are upper case.
var loaderError = regexp.MustCompile(`\b(ERROR|CRITICAL)\b`)

// CheckFASImages counts the images FAS lists and reads the loader run's
// log, and fails, saying what it found, on fewer images than expected or
// an error in the log.
func (a *Activities) CheckFASImages(ctx context.Context, req FASImagesRequest) (Result, error) {
	cl, err := a.CSM.APIClient()
	if err != nil {
		return Result{}, err
	}
	images, err := cl.FASImages(ctx)
	if err != nil {
		return Result{}, activities.CSMError(err)
	}
	want, of := 1, "at least one expected without a snapshot"
	if req.SnapshotImages != nil {
		want, of = *req.SnapshotImages, fmt.Sprintf("the snapshot had %d", *req.SnapshotImages)
	}
	var problems []string
	found := fmt.Sprintf("FAS lists %d images (%s)", len(images), of)
	if len(images) < want {
		problems = append(problems, found)
	}
	if req.LoaderRunID == "" {
		found += "; no loader run through the API to read (a loader Job ran)"
	} else {
		out, err := cl.FASLoaderRun(ctx, req.LoaderRunID)
		if err != nil {
			return Result{}, activities.CSMError(err)
		}
		var errs []string
		for _, line := range out.LoaderRunOutput {
			if loaderError.MatchString(line) {
				errs = append(errs, line)
			}
		}
		if len(errs) > 0 {
			problems = append(problems, fmt.Sprintf("loader run %s logged %d errors, the first: %s", req.LoaderRunID, len(errs), activities.Clip(errs[0], activities.MaxReasonBytes)))
		}
		found += fmt.Sprintf("; loader run %s logged no error in %d lines", req.LoaderRunID, len(out.LoaderRunOutput))
	}
	if len(problems) > 0 {
		return Result{}, temporal.NewNonRetryableApplicationError(strings.Join(problems, "; "), ErrDataCheckFailed, nil)
	}
	return Result{Outcome: activities.NewOutcome(ctx, "%s", found)}, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
