package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/kube"
	"github.com/csmops/etcd-repopulate/internal/productcatalog"
	"github.com/csmops/etcd-repopulate/internal/snapshot"
	"github.com/csmops/etcd-repopulate/internal/wiring"
)

type snapshotOptions struct {
	*globals
	out         string
	force       bool
	configFile  string
	kubeconfig  string
	kubeContext string
}

func newSnapshotCommand(g *globals) *cobra.Command {
	o := &snapshotOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "snapshot --out DIR [--force] [--config FILE] [--kubeconfig PATH] [--context NAME]",
		Short: "Save, before the etcd rebuild, what the rebuild wipes",
		Long: `Save into DIR what an etcd rebuild wipes and a run can put back or check
against: the BOS session templates, the External DNS EtcdCluster, the FAS
images and unfinished FAS actions, the CRUS sessions, the HMNFD
subscriptions and the BSS boot parameters, with a manifest.json holding each
file's item count and SHA-256. Take it before the rebuild; give it to
repopulate start --snapshot after it.

This runs here, not as a workflow. It reaches the CSM API gateway with the
worker's config file (csm section) and reads the Keycloak client secret from
where that file says, Kubernetes included. Without Kubernetes credentials the
EtcdCluster is left out, with a note in the manifest. Secrets are never
written.

DIR must not exist or be empty; --force replaces its content, but only once the
new snapshot is complete. A failed snapshot leaves nothing behind.`,
		Example: `  repopulate snapshot --out /root/etcd-snapshot-$(date +%F) --config /etc/repopulate/config.yaml
  repopulate snapshot --out ./snap --config config.yaml --kubeconfig ~/.kube/config -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.out, "out", "", "directory to write the snapshot to (must not exist or be empty)")
	cmd.Flags().BoolVar(&o.force, "force", false, "replace the content of a non-empty --out once the new snapshot is complete")
	cmd.Flags().StringVar(&o.configFile, "config", "", "the worker's YAML config file, for csm.baseURL, csm.clientSecret and services.externaldns")
	cmd.Flags().StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else in-cluster config, else the EtcdCluster is skipped)")
	cmd.Flags().StringVar(&o.kubeContext, "context", "", "kubeconfig context (default: the file's current context)")
	return cmd
}

func (o *snapshotOptions) run(ctx context.Context) error {
	if err := o.validateOutput(); err != nil {
		return err
	}
	if o.out == "" {
		return badInput("--out DIR is required: the directory to write the snapshot to")
	}
	if !o.force {
		if err := snapshot.CheckTarget(o.out); err != nil {
			return badInput("--out: %v", err)
		}
	}
	cfg, err := config.Load(o.configFile)
	if err != nil {
		return badInput("--config: %v", err)
	}
	if cfg.CSM.BaseURL == "" {
		return badInput("csm.baseURL is not set (--config %q): the snapshot reads BOS, FAS, CRUS, HMNFD and BSS through the CSM API gateway; give the worker's config file", o.configFile)
	}
	src, note, err := o.sources(ctx, cfg)
	if err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintln(o.streams.Err, "repopulate: note:", note)
	}
	take := snapshot.Take
	if o.force {
		take = snapshot.TakeOver
	}
	m, err := take(ctx, src, o.out)
	if err != nil {
		return &ExitError{Code: ExitFailed, Err: fmt.Errorf("snapshot not taken, nothing written to %s: %w", o.out, err)}
	}
	// Read it back as start --snapshot will, so a problem shows now and not
	// after the rebuild.
	in, _, err := snapshot.Load(o.out)
	if err != nil {
		return &ExitError{Code: ExitFailed, Err: fmt.Errorf("the snapshot just written does not read back: %w", err)}
	}
	if err := snapshot.CheckSize(in); err != nil {
		fmt.Fprintln(o.streams.Err, "repopulate: warning:", err)
	}
	if o.output == "json" {
		return writeJSON(o.streams.Out, m)
	}
	printManifest(o.streams.Out, m)
	fmt.Fprintf(o.streams.Out, "\nsnapshot written to %s\nafter the rebuild: repopulate start --snapshot %s\n", in.Dir, in.Dir)
	return nil
}

// sources builds the CSM client as the worker does, and the Kubernetes
// client when there are credentials. note says what is skipped without them.
func (o *snapshotOptions) sources(ctx context.Context, cfg config.Config) (snapshot.Sources, string, error) {
	cl, err := newClients(cfg, o.kubeconfig, o.kubeContext)
	if err != nil {
		return snapshot.Sources{}, "", err
	}
	src := snapshot.Sources{CSM: cl.csm}
	note := ""
	if cl.kube == nil {
		note = "no Kubernetes credentials: the External DNS EtcdCluster is not saved (give --kubeconfig to save it)"
	} else {
		src.Kube = cl.kube.Dynamic
	}
	if plan := cfg.Plan(snapshotRelease(ctx, cfg.Release, cl.core()), api.ExternalDNS); plan.Procedure == api.RecreateEtcdCluster {
		src.ExternalDNS = plan.Object
	}
	return src, note, nil
}

// clients are what the CLI's read-only commands (snapshot, plan) reach,
// built from the worker's config file as the worker builds them.
type clients struct {
	// kube is nil without Kubernetes credentials.
	kube *kube.Client
	csm  *csm.Client
}

func (c clients) core() kubernetes.Interface {
	if c.kube == nil {
		return nil
	}
	return c.kube.Core
}

// newClients builds the Kubernetes client from kubeconfig (none without
// credentials, unless the client secret is in Kubernetes: bad input) and
// the CSM client from cfg's csm section.
func newClients(cfg config.Config, kubeconfig, kubeContext string) (clients, error) {
	var out clients
	rc, err := wiring.KubeConfig(kubeconfig, kubeContext)
	switch {
	case errors.Is(err, wiring.ErrNoKubeCredentials):
		if cfg.CSM.ClientSecret.Kubernetes != nil {
			ks := cfg.CSM.ClientSecret.Kubernetes
			return out, badInput("the client secret is in Kubernetes secret %s/%s (csm.clientSecret.kubernetes) but there are no Kubernetes credentials: give --kubeconfig, or set csm.clientSecret.file or .env", ks.Namespace, ks.Name)
		}
	case err != nil:
		return out, badInput("%v", err)
	default:
		core, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return out, badInput("kubernetes client: %v", err)
		}
		dyn, err := dynamic.NewForConfig(rc)
		if err != nil {
			return out, badInput("kubernetes dynamic client: %v", err)
		}
		out.kube = &kube.Client{Core: core, Dynamic: dyn}
	}
	if out.csm, err = wiring.CSMClient(cfg.CSM, out.core()); err != nil {
		return out, badInput("csm section of --config: %v", err)
	}
	return out, nil
}

func printManifest(w io.Writer, m snapshot.Manifest) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PART\tITEMS\tFILE\tSHA256")
	for _, p := range m.Parts {
		if p.File == "" {
			fmt.Fprintf(tw, "%s\t-\t(not saved: %s)\t\n", p.Name, p.Note)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.12s\n", p.Name, p.Count, p.File, p.SHA256)
	}
	tw.Flush()
	fmt.Fprintf(w, "taken %s from %s (tool %s)\n", m.Taken.Format(time.RFC3339), m.CSMBaseURL, m.ToolVersion)
}

// loadSnapshot reads --snapshot for start: a snapshot that does not verify
// or is too large for a workflow start is bad input, and nothing starts.
func loadSnapshot(dir string) (*api.SnapshotInput, error) {
	in, _, err := snapshot.Load(dir)
	if err != nil {
		return nil, badInput("--snapshot: %v", err)
	}
	if err := snapshot.CheckSize(in); err != nil {
		return nil, badInput("--snapshot: %v", err)
	}
	return in, nil
}

// addBootParameters carries the snapshot's BSS boot parameters, grouped
// (snapshot.GroupBootParameters), in the run's input when the run includes
// bss and the snapshot may come from a release where bss restores them
// (restore-bss-from-snapshot; the snapshot's API probes tell releases
// apart only partly, so the run's procedure refuses what this cannot).
// A snapshot without them is refused here when every release its probes
// fit restores BSS from it; a grouped form still too large for a run's
// input is refused with its size.
func addBootParameters(in *api.SnapshotInput, services []api.Service) error {
	if !slices.Contains(services, api.BSS) {
		return nil
	}
	bs, m, err := snapshot.LoadBootParameters(in.Dir)
	fits := api.Releases
	if m.Probes != nil {
		fits = m.Probes.Matching()
	}
	var restoring []api.Release
	for _, r := range fits {
		if catalog.RestoresBSSFromSnapshot(r) {
			restoring = append(restoring, r)
		}
	}
	switch {
	case len(restoring) == 0:
		return nil
	case errors.Is(err, snapshot.ErrNoBootParameters):
		if len(restoring) < len(fits) {
			return nil // maybe a release that re-runs cray-reds-init: the run decides
		}
		return badInput("--snapshot %s: the snapshot has no %s.json (BSS boot parameters; taken %s by a version that did not save them), and on %s, the release its API probes point to, bss restores BSS from the snapshot: take a new snapshot with this version before the next rebuild (repopulate snapshot --out DIR), or leave bss out of --services here and run it without --snapshot (BSS is then left to its etcd backup, as the runbook says)",
			in.Dir, snapshot.PartBootParameters, m.Taken.Format(time.RFC3339), releaseList(restoring))
	case err != nil:
		return badInput("--snapshot: %v", err)
	}
	groups, err := snapshot.GroupBootParameters(bs)
	if err != nil {
		return badInput("--snapshot %s: %s.json: %v; take the snapshot again", in.Dir, snapshot.PartBootParameters, err)
	}
	in.BootParameters, in.BootParametersSaved = groups, true
	if err := snapshot.CheckSize(in); err != nil {
		return badInput("--snapshot: %v", err)
	}
	return nil
}

func releaseList(rs []api.Release) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = string(r)
	}
	return strings.Join(names, " or ")
}

// describeSnapshot says what a run will restore or check from the snapshot.
func describeSnapshot(in *api.SnapshotInput) string {
	s := fmt.Sprintf("snapshot %s (taken %s): %d BOS session templates to restore, %d subscribed xnames to check in HMNFD, %d unfinished FAS actions to report",
		in.Dir, in.Taken.Format(time.RFC3339), len(in.SessionTemplates), len(in.SubscribedXnames), len(in.FASActions))
	if in.BootParametersSaved {
		s += fmt.Sprintf(", BSS boot parameters in %d groups of identical entries to offer at gate %s (CSM 1.5+)", len(in.BootParameters), api.GateBSSRestore)
	}
	return s
}

// snapshotRelease is the release whose External DNS the snapshot saves: the
// configured one, else the product catalog's, else CSM 1.0's (the cluster
// is then read and a missing EtcdCluster is reported).
func snapshotRelease(ctx context.Context, configured api.Release, core kubernetes.Interface) api.Release {
	if configured != api.ReleaseAuto {
		return configured
	}
	if c, err := readProductCatalog(ctx, core); err == nil {
		if r, ok := api.ReleaseOfVersion(c.Highest); ok {
			return r
		}
	}
	return api.CSM10
}

// readProductCatalog reads the CSM versions installed; without Kubernetes
// credentials the catalog's Note says so.
func readProductCatalog(ctx context.Context, core kubernetes.Interface) (productcatalog.Catalog, error) {
	if core == nil {
		return productcatalog.Catalog{Note: "no Kubernetes credentials (give --kubeconfig)"}, nil
	}
	return productcatalog.Read(ctx, core)
}
