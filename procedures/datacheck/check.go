// Package datacheck holds the data checks that close a service whose
// procedure alone does not show that its data is back: bss (the
// cray-reds-init Job completes whatever BSS holds) and fas (the loader
// finishes whatever it loaded). A catalog entry names its check; the
// child workflow's frame (workflows/procedure) runs it as the last step.
package datacheck

import (
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/workflows/procedure"
)

// StepDataCheck is the step of every data check.
const StepDataCheck = "data-check"

// ErrDataCheckFailed: the service's data is not back; the message says
// what is missing.
const ErrDataCheckFailed = "DataCheckFailed"

// BootParameters checks that BSS holds boot parameters for every node HSM
// lists, equal to the snapshot's where the run was given one.
var BootParameters = procedure.Check{
	Name:    api.CheckBootParameters,
	Step:    StepDataCheck,
	Checked: bootParametersChecked,
	Run: func(w *procedure.Run, ctx workflow.Context) error {
		req := BootParametersRequest{}
		if w.In.Snapshot != nil {
			req.Digests, req.SnapshotDir = w.In.Snapshot.BootParamDigests, w.In.Snapshot.Dir
		}
		return run(w, ctx, api.ActivityCheckBootParameters, req, bootParametersChecked(w.In))
	},
	Activities: func(_ *activities.Kube, c *activities.CSM) map[string]any {
		a := &Activities{CSM: c}
		return map[string]any{api.ActivityCheckBootParameters: a.CheckBootParameters}
	},
}

// FASImages checks that FAS lists at least as many firmware images as the
// snapshot (some, without one) and that the loader run logged no error.
var FASImages = procedure.Check{
	Name:    api.CheckFASImages,
	Step:    StepDataCheck,
	Checked: fasImagesChecked,
	Run: func(w *procedure.Run, ctx workflow.Context) error {
		req := FASImagesRequest{LoaderRunID: w.LoaderRunID}
		if w.In.Snapshot != nil {
			req.SnapshotImages = w.In.Snapshot.FASImages
		}
		return run(w, ctx, api.ActivityCheckFASImages, req, fasImagesChecked(w.In))
	},
	Activities: func(_ *activities.Kube, c *activities.CSM) map[string]any {
		a := &Activities{CSM: c}
		return map[string]any{api.ActivityCheckFASImages: a.CheckFASImages}
	},
}

func bootParametersChecked(in procedure.Input) string {
	if in.Snapshot != nil && in.Snapshot.BootParamDigests != nil {
		return fmt.Sprintf("BSS boot parameters for every node HSM lists, equal to the %d entries of snapshot %s", len(in.Snapshot.BootParamDigests), in.Snapshot.Dir)
	}
	return "BSS boot parameters for every node HSM lists"
}

func fasImagesChecked(in procedure.Input) string {
	if in.Snapshot != nil && in.Snapshot.FASImages != nil {
		return fmt.Sprintf("FAS images: at least the %d of snapshot %s; the loader run logged no error", *in.Snapshot.FASImages, in.Snapshot.Dir)
	}
	return "FAS images: at least one; the loader run logged no error"
}

// run runs one check activity as the data-check step and keeps what it
// found as the service's evidence, passed or not.
func run(w *procedure.Run, ctx workflow.Context, activity string, req any, checked string) error {
	var res Result
	err := w.Step(ctx, StepDataCheck, procedure.ReadOptions(w.In.Plan.Timings), func(ctx workflow.Context) (activities.Outcome, error) {
		err := workflow.ExecuteActivity(ctx, activity, req).Get(ctx, &res)
		return res.Outcome, err
	})
	if err != nil {
		w.Status.Evidence = &api.Evidence{Checked: checked, Found: procedure.ErrorMessage(err)}
		return err
	}
	w.Status.Evidence = &api.Evidence{Checked: checked, Found: res.Message, OK: true}
	return nil
}
