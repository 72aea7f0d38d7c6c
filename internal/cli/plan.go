package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/spf13/cobra"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/catalog"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/kube"
	"github.com/csmops/etcd-repopulate/internal/plan"
	"github.com/csmops/etcd-repopulate/internal/productcatalog"
	"github.com/csmops/etcd-repopulate/internal/snapshot"
)

type planOptions struct {
	*globals
	planInputs
}

// planInputs are what plan reads to decide; start --services auto takes
// the same and decides with the same code (makePlan).
type planInputs struct {
	configFile  string
	kubeconfig  string
	kubeContext string
	release     string
	snapshotDir string
	since       string
}

// addPlanFlags registers plan's inputs but --snapshot, whose meaning each
// command words itself; for names the command they serve start with.
func (in *planInputs) addPlanFlags(cmd *cobra.Command, prefix string) {
	cmd.Flags().StringVar(&in.since, "since", "", prefix+"when the rebuild started (RFC 3339 time, or a duration ago such as 6h): an etcd cluster created after it was rebuilt")
	cmd.Flags().StringVar(&in.release, "release", "", prefix+"the CSM release (default: the config's release:, auto: the product catalog confirmed by API probes)")
	cmd.Flags().StringVar(&in.configFile, "config", "", prefix+"the worker's YAML config file, for csm.baseURL and csm.clientSecret")
	cmd.Flags().StringVar(&in.kubeconfig, "kubeconfig", "", prefix+"kubeconfig file (default: $KUBECONFIG, else in-cluster config, else no etcd cluster is read)")
	cmd.Flags().StringVar(&in.kubeContext, "context", "", prefix+"kubeconfig context (default: the file's current context)")
	releases := make([]cobra.Completion, len(api.Releases))
	for i, r := range api.Releases {
		releases[i] = string(r)
	}
	_ = cmd.RegisterFlagCompletionFunc("release", cobra.FixedCompletions(releases, cobra.ShellCompDirectiveNoFileComp))
}

func newPlanCommand(g *globals) *cobra.Command {
	o := &planOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "plan [--snapshot DIR] [--since TIME] [--release R] [--config FILE] [--kubeconfig PATH] [--context NAME]",
		Short: "Say which services an etcd rebuild lost data of, and the start line that repopulates them",
		Long: `For each service of the CSM release, read its etcd cluster (name, kind, age,
members ready) from Kubernetes, count what the service holds now through the
CSM API (BSS boot parameters, HMNFD subscriptions, BOS session templates on
releases that keep them in etcd (1.0, 1.2), FAS images and actions, CRUS
sessions) and, with --snapshot, what it held when the snapshot was taken.
The etcd clusters per release are in docs/csm-releases.md.

plan changes nothing: it only reads (Kubernetes: get on etcdclusters
and statefulsets in namespace services, and the product catalog ConfigMap;
CSM API: GETs). It runs here, not as a workflow, with the worker's config
file (csm section) like repopulate snapshot.

Verdicts, one per service:
  lost data    the service needs a run: a count is 0 now where the snapshot
               had some (or where a healthy system always has some: BSS boot
               parameters, HMNFD subscriptions while HSM lists Ready computes),
               or the etcd cluster is younger than the snapshot (or --since)
               and the service's data is not counted here or is re-derived
               by its procedure (pods restarting: meds, reds, crus; cps,
               externaldns)
  intact       the data is there, or the cluster is older than the reference
  cannot tell  the evidence does not decide; the reason says what is missing
               (cluster not readable, CSM API unreachable, no --snapshot or
               --since to compare the cluster's age with, or an etcd cluster
               the runbook's sources do not confirm, marked unconfirmed)

The reference time is --since when given, else the snapshot's time. The last
line is the command that repopulates exactly the services that lost data:
review it, then run it as printed (it passes --snapshot on). Without one it
says "nothing to do: every service is intact", or "nothing to start" when no
service is known to have lost data but some cannot tell; those are listed
for a person to check, never added to the line. repopulate start
--services auto makes this same plan and starts exactly the services that
lost data.

Exit codes: 0 the plan was made (even if some services cannot tell),
1 no service could be decided (every verdict is cannot tell), 2 bad input.`,
		Example: `  repopulate plan --snapshot /root/etcd-snapshot-2026-11-30 --config /etc/repopulate/config.yaml
  repopulate plan --since 2026-12-01T08:00:00Z --config config.yaml --kubeconfig ~/.kube/config
  repopulate plan --since 6h --release csm-1.2 --config config.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.snapshotDir, "snapshot", "", "a snapshot taken before the rebuild (repopulate snapshot --out): compare with what it held, and with its time")
	o.addPlanFlags(cmd, "")
	_ = cmd.MarkFlagDirname("snapshot")
	return cmd
}

// planReport is plan's -o json.
type planReport struct {
	Release   api.ReleaseDetection `json:"release"`
	Reference time.Time            `json:"reference,omitzero"`
	RefWhat   string               `json:"referenceFrom,omitempty"`
	Snapshot  string               `json:"snapshot,omitempty"`
	Services  []servicePlan        `json:"services"`
	Skipped   []skippedService     `json:"skipped,omitempty"`
	// Start is the command that repopulates the services that lost data;
	// empty when none did.
	Start string   `json:"start,omitempty"`
	Notes []string `json:"notes,omitempty"`
}

type servicePlan struct {
	Service api.Service  `json:"service"`
	Cluster plan.Cluster `json:"etcdCluster"`
	Counts  []plan.Count `json:"counts,omitempty"`
	plan.Decision
}

type skippedService struct {
	Service api.Service `json:"service"`
	Reason  string      `json:"reason"`
}

func (o *planOptions) run(ctx context.Context) error {
	if err := o.validateOutput(); err != nil {
		return err
	}
	rep, err := o.makePlan(ctx)
	if err != nil {
		return err
	}
	if o.output == "json" {
		if err := writeJSON(o.streams.Out, rep); err != nil {
			return err
		}
	} else {
		printPlan(o.streams.Out, rep)
	}
	if rep.noneDecided() {
		return &ExitError{Code: ExitFailed, Err: errors.New("no service could be decided: every verdict is cannot tell (the reasons are above)")}
	}
	return nil
}

// makePlan gathers the evidence for every service of the release and
// decides each; errors are bad input (nothing was read that matters).
func (in planInputs) makePlan(ctx context.Context) (planReport, error) {
	var rep planReport
	var then map[catalog.Data]snapshot.Part
	var snapshotURL string
	if in.snapshotDir != "" {
		loaded, m, err := snapshot.Load(in.snapshotDir)
		if err != nil {
			return rep, badInput("--snapshot: %v", err)
		}
		rep.Snapshot, rep.Reference = loaded.Dir, m.Taken
		rep.RefWhat = "the snapshot"
		then = snapshotCounts(m)
		snapshotURL = m.CSMBaseURL
	}
	if in.since != "" {
		t, err := parseSince(in.since, time.Now())
		if err != nil {
			return rep, badInput("--since %q: %v", in.since, err)
		}
		rep.Reference, rep.RefWhat = t, "--since "+t.UTC().Format(time.RFC3339)
	}
	cfg, err := config.Load(in.configFile)
	if err != nil {
		return rep, badInput("--config: %v", err)
	}
	if in.release != "" {
		if cfg.Release, err = api.ParseRelease(in.release); err != nil {
			return rep, badInput("--release: %v", err)
		}
	}
	if cfg.CSM.BaseURL == "" {
		return rep, badInput("csm.baseURL is not set (--config %q): plan counts what BSS, HMNFD, BOS, FAS and CRUS hold through the CSM API gateway; give the worker's config file", in.configFile)
	}
	cl, err := newClients(cfg, in.kubeconfig, in.kubeContext)
	if err != nil {
		return rep, err
	}
	if snapshotURL != "" && snapshotURL != cl.csm.BaseURL() {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the snapshot was read from %s, the config reaches %s: make sure both are this system", snapshotURL, cl.csm.BaseURL()))
	}
	if cl.kube == nil {
		rep.Notes = append(rep.Notes, "no Kubernetes credentials: no etcd cluster was read (give --kubeconfig)")
	}
	if rep.Release, err = planRelease(ctx, cfg.Release, cl); err != nil {
		if in.release != "" {
			return rep, badInput("--release %s: %v", in.release, err)
		}
		return rep, badInput("%v; or give --release", err)
	}
	r := rep.Release.Release
	counter := &counter{csm: cl.csm.WithAPIs(r.APIs())}
	for _, e := range catalog.Entries() {
		v := e.Variant(r)
		if v.Procedure == api.NotInRelease && len(v.FollowUps) == 0 {
			rep.Skipped = append(rep.Skipped, skippedService{e.Service, v.Reason})
			continue
		}
		etcd := e.EtcdOn(r)
		sp := servicePlan{Service: e.Service, Cluster: readCluster(ctx, cl.kube, etcd)}
		for _, d := range etcd.Holds {
			c := counter.count(ctx, d)
			if p, ok := then[d]; ok {
				c.Then, c.HaveThen = p.Count, true
			}
			sp.Counts = append(sp.Counts, c)
		}
		sp.Decision = plan.Decide(plan.Evidence{Service: e.Service, Cluster: sp.Cluster, Counts: sp.Counts, Rederives: catalog.Rederives(v.Procedure),
			Reference: rep.Reference, RefWhat: rep.RefWhat})
		rep.Services = append(rep.Services, sp)
	}
	decided := map[api.Service]plan.Decision{}
	for _, sp := range rep.Services {
		decided[sp.Service] = sp.Decision
	}
	rep.Start = plan.StartLine(decided, catalog.Services(), rep.Snapshot)
	return rep, nil
}

// with are the services whose verdict is v, in the catalog's order.
func (rep planReport) with(v plan.Verdict) []api.Service {
	var out []api.Service
	for _, sp := range rep.Services {
		if sp.Verdict == v {
			out = append(out, sp.Service)
		}
	}
	return out
}

// noneDecided: there were services to decide and every verdict is cannot tell.
func (rep planReport) noneDecided() bool {
	return len(rep.Services) > 0 && len(rep.with(plan.CannotTell)) == len(rep.Services)
}

// snapshotCounts are the manifest's item counts of the data plan counts;
// a part the snapshot has no file for (older snapshots, CRUS absent) is left out.
func snapshotCounts(m snapshot.Manifest) map[catalog.Data]snapshot.Part {
	parts := map[catalog.Data]string{
		catalog.DataBootParameters:   snapshot.PartBootParameters,
		catalog.DataSubscriptions:    snapshot.PartSubscriptions,
		catalog.DataSessionTemplates: snapshot.PartSessionTemplates,
		catalog.DataFASImages:        snapshot.PartFASImages,
		catalog.DataFASActions:       snapshot.PartFASActions,
		catalog.DataCRUSSessions:     snapshot.PartCRUSSessions,
	}
	out := map[catalog.Data]snapshot.Part{}
	for d, name := range parts {
		if p, ok := m.Part(name); ok && p.File != "" {
			out[d] = p
		}
	}
	return out
}

// parseSince reads --since: an RFC 3339 time, or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		if t.After(now) {
			return time.Time{}, fmt.Errorf("%s is in the future: give when the rebuild started", t.Format(time.RFC3339))
		}
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, errors.New("want an RFC 3339 time (2026-12-01T08:00:00Z) or a positive duration ago (6h, 90m)")
	}
	return now.Add(-d), nil
}

// planRelease is the release plan reports for: the configured (or
// --release) one, else the product catalog's, each confirmed by API probes
// when the gateway answers (api.DecideRelease, as a run decides it).
func planRelease(ctx context.Context, configured api.Release, cl clients) (api.ReleaseDetection, error) {
	var cat productcatalog.Catalog
	if configured == api.ReleaseAuto {
		var err error
		if cat, err = readProductCatalog(ctx, cl.core()); err != nil {
			return api.ReleaseDetection{}, err
		}
	}
	var probes *api.ReleaseProbes
	probeNote := ""
	if p, err := cl.csm.Probe(ctx); err != nil {
		probeNote = err.Error()
	} else {
		probes = &p
	}
	return api.DecideRelease(configured, cat.Highest, cat.Note, probes, probeNote)
}

// readCluster reads the service's etcd cluster; what could not be read is
// in the result's Err, naming the object and what to grant or check.
func readCluster(ctx context.Context, k *kube.Client, etcd catalog.Etcd) plan.Cluster {
	c := plan.Cluster{Kind: string(etcd.Kind), Name: etcd.Name, Unconfirmed: etcd.Unconfirmed}
	if etcd.Kind == catalog.EtcdNone {
		return c
	}
	ref := etcd.Ref()
	if k == nil {
		c.Err = "no Kubernetes credentials (give --kubeconfig)"
		return c
	}
	var st kube.EtcdState
	var err error
	resource := "etcdclusters.etcd.database.coreos.com"
	if etcd.Kind == catalog.EtcdBitnami {
		resource = "statefulsets.apps"
		st, err = k.StatefulSetState(ctx, ref)
	} else {
		st, err = k.EtcdClusterState(ctx, ref)
	}
	switch {
	case err == nil:
		c.Created, c.Ready, c.Size = st.Created, st.Ready, st.Size
	case apierrors.IsForbidden(err):
		c.Err = fmt.Sprintf("cannot read %s %s: %v; the identity of --kubeconfig needs get on %s in namespace %s", etcd.Kind, ref, apiMessage(err), resource, ref.Namespace)
	case apierrors.IsUnauthorized(err):
		c.Err = fmt.Sprintf("cannot read %s %s: the Kubernetes credentials were rejected (%v); check --kubeconfig/--context", etcd.Kind, ref, apiMessage(err))
	case apierrors.IsNotFound(err):
		c.Err = fmt.Sprintf("%s %s not found (being rebuilt, or not this release's name: docs/csm-releases.md)", etcd.Kind, ref)
	default:
		c.Err = fmt.Sprintf("cannot read %s %s: %v", etcd.Kind, ref, err)
	}
	return c
}

func apiMessage(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return st.Status().Message
	}
	return err.Error()
}

// counter counts what the services hold through the CSM API, each list
// read once.
type counter struct {
	csm   *csm.Client
	ready *int // Ready compute nodes HSM lists; nil until asked
}

func (c *counter) count(ctx context.Context, d catalog.Data) plan.Count {
	out := plan.Count{What: string(d)}
	n, err := 0, error(nil)
	switch d {
	case catalog.DataBootParameters:
		n, err = length(c.csm.BootParameters(ctx))
		out.Expected = "BSS always holds boot parameters on a running system (every node booted from it has an entry)"
	case catalog.DataSubscriptions:
		n, err = length(c.csm.Subscriptions(ctx))
		if ready := c.readyComputes(ctx); ready > 0 {
			out.Expected = fmt.Sprintf("HSM lists %d Ready compute nodes, whose orca subscribes them", ready)
		}
	case catalog.DataSessionTemplates:
		n, err = length(c.csm.SessionTemplates(ctx))
	case catalog.DataFASImages:
		n, err = length(c.csm.FASImages(ctx))
	case catalog.DataFASActions:
		n, err = length(c.csm.FASActions(ctx))
	case catalog.DataCRUSSessions:
		n, err = length(c.csm.CRUSSessions(ctx))
		if csm.KindOf(err) == csm.NotFound {
			err = errors.New("CRUS is not installed (the API answered 404)")
		}
	default:
		err = fmt.Errorf("plan does not count %s", d)
	}
	if err != nil {
		out.NowErr = err.Error()
		return out
	}
	out.Now = n
	return out
}

// length is how many items a list call returned.
func length[T any](items []T, err error) (int, error) { return len(items), err }

func (c *counter) readyComputes(ctx context.Context) int {
	if c.ready == nil {
		n := 0
		if nodes, err := c.csm.ReadyComputeNodes(ctx); err == nil {
			n = len(nodes)
		}
		c.ready = &n
	}
	return *c.ready
}

func printPlan(w io.Writer, rep planReport) {
	fmt.Fprintf(w, "release %s\n", rep.Release)
	switch {
	case rep.RefWhat == "":
		fmt.Fprintln(w, "reference: none (give --snapshot or --since to tell rebuilt etcd clusters by their age)")
	case rep.Snapshot != "" && strings.HasPrefix(rep.RefWhat, "--since"):
		fmt.Fprintf(w, "reference: %s (counts compared with the snapshot %s)\n", rep.RefWhat, rep.Snapshot)
	case rep.Snapshot != "":
		fmt.Fprintf(w, "reference: the snapshot %s, taken %s\n", rep.Snapshot, rep.Reference.UTC().Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "reference: %s\n", rep.RefWhat)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tETCD CLUSTER\tAGE\tREADY\tHOLDS NOW\tSNAPSHOT\tVERDICT\tREASON")
	for _, sp := range rep.Services {
		name, age, ready := "-", "-", "-"
		if !sp.Cluster.None() {
			name = sp.Cluster.Kind + "/" + sp.Cluster.Name
		}
		if !sp.Cluster.Created.IsZero() {
			age = shortAge(time.Since(sp.Cluster.Created))
			ready = fmt.Sprintf("%d/%d", sp.Cluster.Ready, sp.Cluster.Size)
		}
		now, then := "-", "-"
		var nows, thens []string
		for _, c := range sp.Counts {
			v := "?"
			if c.NowErr == "" {
				v = fmt.Sprint(c.Now)
			}
			nows = append(nows, fmt.Sprintf("%s %s", v, shortWhat(c.What)))
			if c.HaveThen {
				thens = append(thens, fmt.Sprintf("%d %s", c.Then, shortWhat(c.What)))
			}
		}
		if len(nows) > 0 {
			now = strings.Join(nows, ", ")
		}
		if len(thens) > 0 {
			then = strings.Join(thens, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sp.Service, name, age, ready, now, then, sp.Verdict, sp.Reason)
	}
	tw.Flush()
	for _, sp := range rep.Services {
		if sp.Cluster.Unconfirmed != "" {
			fmt.Fprintf(w, "unconfirmed (%s): %s\n", sp.Service, sp.Cluster.Unconfirmed)
		}
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "not in %s: %s (%s)\n", rep.Release.Release, s.Service, s.Reason)
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	fmt.Fprintln(w)
	if rep.Start != "" {
		fmt.Fprintf(w, "to repopulate exactly the services that lost data:\n  %s\n", rep.Start)
		if unsure := rep.with(plan.CannotTell); len(unsure) > 0 {
			fmt.Fprintf(w, "cannot tell for %s: check them by hand (reasons above)\n", joinServices(unsure))
		}
		return
	}
	fmt.Fprintln(w, nothingToStart(rep))
}

// nothingToStart is what plan says when no service lost data.
func nothingToStart(rep planReport) string {
	unsure := rep.with(plan.CannotTell)
	if len(unsure) == 0 {
		return "nothing to do: every service is intact"
	}
	return fmt.Sprintf("nothing to start: no service is known to have lost data\ncannot tell for %s: check them by hand (reasons above)", joinServices(unsure))
}

func joinServices(ss []api.Service) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// verdicts are the plan as a run records it (start --services auto).
func (rep planReport) verdicts() *api.PlanVerdicts {
	from := rep.RefWhat
	if from == "the snapshot" {
		from += " " + rep.Snapshot
	}
	out := &api.PlanVerdicts{Release: rep.Release.Release, Reference: rep.Reference, ReferenceFrom: from}
	for _, sp := range rep.Services {
		out.Services = append(out.Services, api.PlanVerdict{Service: sp.Service, Verdict: string(sp.Verdict), Reason: sp.Reason})
	}
	return out
}

// shortWhat drops the service's name from a count's label for the table.
func shortWhat(what string) string {
	if _, rest, ok := strings.Cut(what, " "); ok {
		return rest
	}
	return what
}

func shortAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Truncate(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
