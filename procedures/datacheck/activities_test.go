package datacheck_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
	"github.com/csmops/etcd-repopulate/procedures/datacheck"
)

// emulated serves an emulator of rel with n compute nodes (BSS holds
// their boot parameters) and returns the checks talking to it over HTTP.
func emulated(t *testing.T, rel api.Release, n int) (*csmemu.Emulator, *csm.Client, *datacheck.Activities) {
	t.Helper()
	e := csmemu.New(csmemu.Options{Release: rel, Components: csmemu.ComputeNodes(n)})
	base, err := e.Start(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	cl, err := csm.New(csm.Config{BaseURL: base, Secret: csm.SecretValue(csmemu.DefaultClientSecret), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e, cl, &datacheck.Activities{CSM: &activities.CSM{Client: cl}}
}

// check runs one check activity as Temporal would.
func check(t *testing.T, a *datacheck.Activities, fn, req any) (datacheck.Result, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	var out datacheck.Result
	v, err := env.ExecuteActivity(fn, req)
	if err == nil {
		err = v.Get(&out)
	}
	return out, err
}

// failedWith asserts err is the check's non-retryable failure and returns its message.
func failedWith(t *testing.T, err error) string {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != datacheck.ErrDataCheckFailed || !appErr.NonRetryable() {
		t.Fatalf("error %v, want a non-retryable %s", err, datacheck.ErrDataCheckFailed)
	}
	return appErr.Message()
}

func digests(bs []csm.BootParams) map[string]string {
	out := map[string]string{}
	for _, b := range bs {
		if h := b.Host(); h != "" {
			out[h] = b.Digest()
		}
	}
	return out
}

// TestBSSEmptyFailsItsDataCheck: after the rebuild BSS lists nothing (the
// Job completing does not refill it): the check fails naming how many of
// HSM's nodes lack boot parameters, and some of them.
func TestBSSEmptyFailsItsDataCheck(t *testing.T) {
	for _, rel := range []api.Release{api.CSM10, api.CSM15} {
		e, _, a := emulated(t, rel, 12)
		e.WipeBSS()
		_, err := check(t, a, a.CheckBootParameters, datacheck.BootParametersRequest{})
		msg := failedWith(t, err)
		want := "BSS holds no boot parameters for 12 of the 12 nodes HSM lists (x1000c0s0b0n0,x1000c0s1b0n0,x1000c0s2b0n0,x1000c0s3b0n0,x1000c0s4b0n0 and 7 more)"
		if msg != want {
			t.Errorf("%s: %q, want %q", rel, msg, want)
		}
	}
}

// TestBSSRefilledPassesItsDataCheck: with the boot parameters back, equal
// to what a snapshot listed, the check passes and says what it found.
func TestBSSRefilledPassesItsDataCheck(t *testing.T) {
	e, _, a := emulated(t, api.CSM12, 4)
	saved := e.BootParams() // what repopulate snapshot saves
	e.WipeBSS()
	if err := e.SetBootParams(csmemu.DefaultBootParams(csmemu.ComputeNodes(4))); err != nil {
		t.Fatal(err)
	}
	res, err := check(t, a, a.CheckBootParameters, datacheck.BootParametersRequest{Digests: digests(saved), SnapshotDir: "/snap"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "BSS holds boot parameters for all 4 nodes HSM lists; the 4 entries of snapshot /snap are there and equal"; res.Message != want {
		t.Errorf("found %q, want %q", res.Message, want)
	}
	// Without a snapshot only presence is checked.
	if res, err := check(t, a, a.CheckBootParameters, datacheck.BootParametersRequest{}); err != nil || res.Message != "BSS holds boot parameters for all 4 nodes HSM lists" {
		t.Errorf("without a snapshot: %q, %v", res.Message, err)
	}
}

// TestBSSEntryDifferingFromTheSnapshotFails: an entry BSS holds again but
// with other parameters, and a snapshot entry BSS lacks, are each named.
func TestBSSEntryDifferingFromTheSnapshotFails(t *testing.T) {
	_, cl, a := emulated(t, api.CSM13, 3)
	saved := csmemu.DefaultBootParams(csmemu.ComputeNodes(3))
	saved = append(saved, csm.BootParams{Hosts: []string{"Global"}, Params: "quiet"})
	changed := saved[1]
	changed.Params += " debug"
	if err := cl.PutBootParameters(t.Context(), changed); err != nil {
		t.Fatal(err)
	}
	_, err := check(t, a, a.CheckBootParameters, datacheck.BootParametersRequest{Digests: digests(saved), SnapshotDir: "/snap"})
	msg := failedWith(t, err)
	want := "1 entries of snapshot /snap are not in BSS (Global); 1 entries differ from snapshot /snap (x1000c0s1b0n0)"
	if msg != want {
		t.Errorf("%q, want %q", msg, want)
	}
}

// TestFASImagesCheck: no image after the rebuild fails; after a Nexus
// load FAS lists the images and the run's log has no error; a snapshot
// that listed more images than FAS does now fails.
func TestFASImagesCheck(t *testing.T) {
	_, cl, a := emulated(t, api.CSM12, 2)
	_, err := check(t, a, a.CheckFASImages, datacheck.FASImagesRequest{})
	if msg := failedWith(t, err); msg != "FAS lists 0 images (at least one expected without a snapshot)" {
		t.Errorf("before the load: %q", msg)
	}
	id, err := cl.FASLoadNexus(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := len(csmemu.DefaultFASImages())
	res, err := check(t, a, a.CheckFASImages, datacheck.FASImagesRequest{LoaderRunID: id, SnapshotImages: &n})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Message, "FAS lists 3 images (the snapshot had 3); loader run "+id+" logged no error in 3 lines") {
		t.Errorf("after the load: %q", res.Message)
	}
	more := n + 2
	_, err = check(t, a, a.CheckFASImages, datacheck.FASImagesRequest{SnapshotImages: &more})
	if msg := failedWith(t, err); msg != "FAS lists 3 images (the snapshot had 5)" {
		t.Errorf("fewer than the snapshot: %q", msg)
	}
}

// TestFASLoaderErrorFailsItsDataCheck: a loader run that logged an error
// fails the check, quoting the line, even with FAS's images all there.
func TestFASLoaderErrorFailsItsDataCheck(t *testing.T) {
	e, cl, a := emulated(t, api.CSM13, 2)
	e.SetFASImages(csmemu.DefaultFASImages())
	e.FailFASLoads("cannot reach Nexus at packages.local: connection refused")
	id, err := cl.FASLoadNexus(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_, err = check(t, a, a.CheckFASImages, datacheck.FASImagesRequest{LoaderRunID: id})
	msg := failedWith(t, err)
	if !strings.HasPrefix(msg, "loader run "+id+" logged 1 errors, the first: ") || !strings.HasSuffix(msg, " ERROR: cannot reach Nexus at packages.local: connection refused") {
		t.Errorf("%q, want the loader's error line", msg)
	}
}
