package catalog

import (
	"fmt"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/settings"
	"github.com/csmops/etcd-repopulate/procedures/bos"
	"github.com/csmops/etcd-repopulate/procedures/bssrestore"
	"github.com/csmops/etcd-repopulate/procedures/cps"
	"github.com/csmops/etcd-repopulate/procedures/crus"
	"github.com/csmops/etcd-repopulate/procedures/etcdcluster"
	"github.com/csmops/etcd-repopulate/procedures/fasloader"
	"github.com/csmops/etcd-repopulate/procedures/orca"
	"github.com/csmops/etcd-repopulate/procedures/rerunjob"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
)

// Change IDs (workflow.GetVersion) of orderings added after runs were
// recorded; the parent workflow asks for each.
const (
	// ChangeCPSAfterHMNFD: cps waits for hmnfd, so that the nodes cps
	// shuts down are not counted as hmnfd failures. This way round hmnfd
	// (minutes) is never held behind cps's gates (possibly days), and the
	// nodes cps reboots start orca, which subscribes them, as they boot.
	ChangeCPSAfterHMNFD = "cps-after-hmnfd"
	// ChangeCPSNeedsBOSDone: cps starts only when bos ended done; before,
	// it started whatever bos's outcome and found no CPS template.
	ChangeCPSNeedsBOSDone = "cps-needs-bos-done"
)

// entries are the services in the runbook's order (CSM-APIS.md §8–§10 for
// what each release has).
var entries = []Entry{
	{
		Service:  api.BOS,
		Title:    "Boot Orchestration Service (BOS)",
		Does:     "restores session templates (1.0, 1.2), checks them (1.3+)",
		Settings: func() settings.Settings { return &bos.BOSSettings{} },
		Variants: []Variant{
			{Since: api.CSM10, Procedure: api.RestoreBOSTemplates},
			{Since: api.CSM13, Procedure: api.CheckBOSTemplates},
		},
		SnapshotPart: func(full, part *api.SnapshotInput) { part.SessionTemplates = full.SessionTemplates },
		Etcd: []Etcd{
			operatorEtcd(api.BOS, DataSessionTemplates),
			operatorEtcd(api.BOS).since(api.CSM13), // BOS v2 keeps templates elsewhere: v1 sessions only
			bitnamiEtcd(api.BOS),
			noEtcd(api.CSM16),
		},
	},
	{
		Service: api.BSS,
		Title:   "Boot Script Service (BSS)",
		Does:    "re-runs the cray-reds-init Job (up to 1.4); restores boot parameters from the snapshot behind gate bss-restore (1.5+)",
		Settings: func() settings.Settings {
			return &bssrestore.BSSSettings{JobSettings: rerunjob.JobSettings{Namespace: "services", Job: "cray-reds-init", CompleteTimeout: settings.Duration(30 * time.Minute)}}
		},
		Variants: []Variant{
			{Since: api.CSM10, Procedure: api.RerunJob},
			// The CSM 1.5 runbook's BSS section: "Restore BSS from the ETCD
			// backup", whose procedure (Restore_an_etcd_Cluster_from_a_Backup.md,
			// docs-csm release/1.5 and 1.6) is a script on a master or worker
			// NCN. With a snapshot that holds BSS boot parameters the run
			// offers to restore them instead (gate bss-restore); without one
			// the service is left to that script (bssrestore.EtcdBackupFollowUp).
			{Since: api.CSM15, Procedure: api.RestoreBSSFromSnapshot},
		},
		SnapshotPart: func(full, part *api.SnapshotInput) {
			part.BootParameters, part.BootParametersSaved = full.BootParameters, full.BootParametersSaved
			part.BootParamDigests = full.BootParamDigests
		},
		Etcd: []Etcd{operatorEtcd(api.BSS, DataBootParameters), bitnamiEtcd(api.BSS, DataBootParameters)},
		// The Job completing says nothing of what BSS holds.
		DataCheck: api.CheckBootParameters,
	},
	{
		Service: api.CPS,
		Title:   "Content Projection Service (CPS)",
		Does:    "reboots, behind two gates, the nodes that mount CPS",
		Settings: func() settings.Settings {
			return &cps.CPSSettings{ShutdownTimeout: settings.Duration(15 * time.Minute), BootTimeout: settings.Duration(45 * time.Minute)}
		},
		Variants: []Variant{
			{Since: api.CSM10, Procedure: api.RemountCPS},
			{Since: api.CSM15, Procedure: api.NotInRelease, Reason: "not in this release: the CSM 1.5 runbook has no CPS section (CPS ships with COS/USS)"},
		},
		After: []Prerequisite{
			{Service: api.BOS, DoneSince: ChangeCPSNeedsBOSDone,
				NotDone:  "cps finds its nodes in the BOS session templates bos restores",
				FollowUp: "CPS clients were not shut down and may still have CPS content mounted from the old etcd: once the BOS session templates are back, run cps again (repopulate start --services cps)"},
			{Service: api.HMNFD, Since: ChangeCPSAfterHMNFD, Why: "the compute nodes cps shuts down must not count as hmnfd failures"},
		},
		Etcd: []Etcd{operatorEtcd(api.CPS), unconfirmed(bitnamiEtcd(api.CPS), api.CSM15, "CSM-APIS.md §10 does not confirm CPS's etcd cluster from CSM 1.5 (CPS ships with COS/USS)")},
	},
	{
		Service: api.CRUS,
		Title:   "Compute Rolling Upgrade Service (CRUS)",
		Does:    "follows CRUS sessions, then restarts the cray-crus pods",
		Settings: func() settings.Settings {
			return &crus.CRUSSettings{
				PodSettings: restartpods.PodSettings{Namespace: "services", Selector: "app.kubernetes.io/name=cray-crus", ReadyTimeout: settings.Duration(10 * time.Minute)},
				SessionPoll: settings.Duration(10 * time.Second), StuckAfter: settings.Duration(15 * time.Minute),
			}
		},
		Variants: []Variant{
			{Since: api.CSM10, Procedure: api.RestartCRUS},
			{Since: api.CSM15, Procedure: api.NotInRelease, Reason: "not in this release: CRUS was removed in CSM 1.5 (BOS v2 replaces it)"},
		},
		Etcd: []Etcd{operatorEtcd(api.CRUS, DataCRUSSessions), noEtcd(api.CSM15)},
	},
	{
		Service: api.ExternalDNS,
		Title:   "External DNS",
		Does:    "re-creates the cray-externaldns-etcd EtcdCluster",
		Settings: func() settings.Settings {
			return &etcdcluster.EtcdClusterSettings{Namespace: "services", EtcdCluster: "cray-externaldns-etcd", RunningTimeout: settings.Duration(15 * time.Minute)}
		},
		Variants: []Variant{
			{Since: api.CSM10, Procedure: api.RecreateEtcdCluster},
			{Since: api.CSM12, Procedure: api.NotInRelease, Reason: "not in this release: cray-externaldns-etcd was removed in CSM 1.2 (PowerDNS replaced it)"},
		},
		Etcd: []Etcd{operatorEtcd(api.ExternalDNS), noEtcd(api.CSM12)},
	},
	{
		Service: api.FAS,
		Title:   "Firmware Action Service (FAS)",
		Does:    "runs the FAS loader (API, or a site's loader Job)",
		Settings: func() settings.Settings {
			// No Job by default: the loader runs through the API on every
			// release (FAS removed the cray-fas-loader Job before CSM 1.0).
			return &fasloader.FASSettings{Namespace: "services", CompleteTimeout: settings.Duration(30 * time.Minute)}
		},
		Variants:     []Variant{{Since: api.CSM10, Procedure: api.RunFASLoaderAPI}},
		SnapshotPart: func(full, part *api.SnapshotInput) { part.FASActions, part.FASImages = full.FASActions, full.FASImages },
		FollowUps:    fasFollowUps,
		Etcd:         []Etcd{operatorEtcd(api.FAS, DataFASImages, DataFASActions), bitnamiEtcd(api.FAS, DataFASImages, DataFASActions)},
		// The loader finishing says nothing of how many images came back.
		DataCheck: api.CheckFASImages,
	},
	{
		Service: api.HMNFD,
		Title:   "Hardware Management Notification Fanout Daemon (HMNFD)",
		Does:    "restarts orca on computes and NCNs to resubscribe",
		Settings: func() settings.Settings {
			return &orca.HMNFDSettings{BatchSize: orca.MaxBatchSize, BatchesInFlight: orca.DefaultBatchesInFlight, MaxFailedPercent: 2, VerifyTimeout: settings.Duration(5 * time.Minute),
				Pods: restartpods.PodSettings{Namespace: "services", Selector: "app.kubernetes.io/name=cray-hmnfd", ReadyTimeout: settings.Duration(10 * time.Minute)}}
		},
		Variants:     []Variant{{Since: api.CSM10, Procedure: api.RestartOrca}},
		SnapshotPart: func(full, part *api.SnapshotInput) { part.SubscribedXnames = full.SubscribedXnames },
		Etcd:         []Etcd{operatorEtcd(api.HMNFD, DataSubscriptions), bitnamiEtcd(api.HMNFD, DataSubscriptions)},
	},
	{
		Service: api.MEDS,
		Title:   "Mountain Endpoint Discovery Service (MEDS)",
		Does:    "restarts the cray-meds pods",
		Settings: func() settings.Settings {
			return &restartpods.PodSettings{Namespace: "services", Selector: "app.kubernetes.io/name=cray-meds", ReadyTimeout: settings.Duration(10 * time.Minute)}
		},
		Variants: []Variant{{Since: api.CSM10, Procedure: api.RestartPods}},
		Etcd:     []Etcd{unconfirmed(noEtcd(api.CSM10), api.CSM10, "whether MEDS keeps data in etcd is unconfirmed: no cray-meds-etcd appears in docs-csm (CSM-APIS.md §10)")},
	},
	{
		Service: api.REDS,
		Title:   "River Endpoint Discovery Service (REDS)",
		Does:    "restarts the cray-reds pods",
		Settings: func() settings.Settings {
			return &restartpods.PodSettings{Namespace: "services", Selector: "app.kubernetes.io/name=cray-reds", ReadyTimeout: settings.Duration(10 * time.Minute)}
		},
		Variants: []Variant{
			{Since: api.CSM10, Procedure: api.RestartPods},
			{Since: api.CSM15, Procedure: api.NotInRelease, Reason: "not in this release: REDS was removed in CSM 1.5"},
		},
		Etcd: []Etcd{
			operatorEtcd(api.REDS),
			unconfirmed(operatorEtcd(api.REDS), api.CSM13, "CSM-APIS.md §10 does not confirm cray-reds-etcd on CSM 1.3/1.4"),
			unconfirmed(bitnamiEtcd(api.REDS), api.CSM15, "CSM-APIS.md §10 does not confirm REDS's etcd cluster on CSM 1.5"),
			noEtcd(api.CSM16),
		},
	},
}

// fasFollowUps: FAS lost its history of firmware actions; the snapshot
// says which were running.
func fasFollowUps(snap *api.SnapshotInput) []string {
	if snap == nil {
		return []string{"FAS lost its history of firmware actions and snapshots: recreate any action that was running when etcd failed (cray fas actions create); no snapshot was given, so which ones is not known here"}
	}
	if len(snap.FASActions) == 0 {
		return []string{fmt.Sprintf("FAS lost its history of firmware actions and snapshots; the snapshot (%s) had no action in progress, so none needs recreating", snap.Dir)}
	}
	out := []string{fmt.Sprintf("FAS lost its history: recreate the %d firmware actions that were in progress when the snapshot was taken (cray fas actions create with each action's original parameters):", len(snap.FASActions))}
	for _, a := range snap.FASActions {
		line := fmt.Sprintf("  action %s (%s)", a.ActionID, a.State)
		if a.Command != "" {
			line += ": " + a.Command
		}
		out = append(out, line)
	}
	return out
}
