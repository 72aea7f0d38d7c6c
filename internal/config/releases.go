package config

import (
	"github.com/csmops/etcd-repopulate/internal/api"
)

// ReleaseFacts is what one CSM release's runbook and APIs say about the
// nine services (../shared/runbook/CSM-APIS.md §8–§10). docs/csm-releases.md
// is checked against this table.
type ReleaseFacts struct {
	Release api.Release
	// Absent are the services the release does not have, with the reason.
	Absent map[api.Service]string
	// ByHand are services whose procedure the worker leaves to a person,
	// with the reason and the exact commands.
	ByHand map[api.Service]ByHand
	// BOS is RestoreBOSTemplates while templates live in etcd (1.0, 1.2)
	// and CheckBOSTemplates once they live in Redis (1.3 on).
	BOS api.Procedure
	// OrcaUnits are tried in order on each node.
	OrcaUnits []string
	// NCNGroups are the pdsh host ranges of the NCNs that run orca.
	NCNGroups []string
}

// ByHand is a procedure the worker reports as a follow-up instead of doing it.
type ByHand struct {
	Reason    string
	FollowUps []string
}

// bssFromBackup is the CSM 1.5 runbook's BSS section: "Restore BSS from the
// ETCD backup", whose procedure (Restore_an_etcd_Cluster_from_a_Backup.md,
// docs-csm release/1.5 and 1.6) is this script on a master or worker NCN.
var bssFromBackup = ByHand{
	Reason: "from CSM 1.5 REDS is gone and BSS is restored from its own etcd backup, a step this worker leaves to a person",
	FollowUps: []string{
		"restore BSS from its etcd backup (CSM 1.5+ runbook, BSS section; docs-csm operations/kubernetes/Restore_an_etcd_Cluster_from_a_Backup.md): on a master or worker NCN run /opt/cray/platform-utils/etcd/etcd_restore_rebuild.sh -s cray-bss",
	},
}

// ReleaseTable lists every known release, oldest first.
var ReleaseTable = []ReleaseFacts{
	{
		Release: api.CSM10,
		BOS:     api.RestoreBOSTemplates,
		// The 1.0 runbook names cray-dvs-orca; every later text and the NCN
		// package lists name cray-orca, so both are tried (CSM-APIS.md §8).
		OrcaUnits: []string{"cray-dvs-orca", "cray-orca"},
		// The 1.0 runbook says ncn-w00[0-4]; ncn-w000 and ncn-s000 do not
		// exist (1.2 corrected it), so the ranges start at 1.
		NCNGroups: []string{"ncn-w00[1-4]-can.local", "ncn-s00[1-4]-can.local"},
	},
	{
		Release:   api.CSM12,
		Absent:    map[api.Service]string{api.ExternalDNS: externalDNSGone},
		BOS:       api.RestoreBOSTemplates,
		OrcaUnits: []string{"cray-orca"},
		NCNGroups: []string{"ncn-w00[1-4]-can.local", "ncn-s00[1-4]-can.local"},
	},
	{
		Release:   api.CSM13,
		Absent:    map[api.Service]string{api.ExternalDNS: externalDNSGone},
		BOS:       api.CheckBOSTemplates,
		OrcaUnits: []string{"cray-orca"},
		NCNGroups: []string{"ncn-w00[1-4]-can.local"},
	},
	{
		Release:   api.CSM15,
		Absent:    absentFrom15,
		ByHand:    map[api.Service]ByHand{api.BSS: bssFromBackup},
		BOS:       api.CheckBOSTemplates,
		OrcaUnits: []string{"cray-orca"},
		NCNGroups: []string{"ncn-w00[1-4]-can.local"},
	},
	{
		Release:   api.CSM16,
		Absent:    absentFrom15,
		ByHand:    map[api.Service]ByHand{api.BSS: bssFromBackup},
		BOS:       api.CheckBOSTemplates,
		OrcaUnits: []string{"cray-orca"},
		NCNGroups: []string{"ncn-w00[1-4]-can.local"},
	},
}

const externalDNSGone = "not in this release: cray-externaldns-etcd was removed in CSM 1.2 (PowerDNS replaced it)"

var absentFrom15 = map[api.Service]string{
	api.ExternalDNS: externalDNSGone,
	api.CRUS:        "not in this release: CRUS was removed in CSM 1.5 (BOS v2 replaces it)",
	api.REDS:        "not in this release: REDS was removed in CSM 1.5",
	api.CPS:         "not in this release: the CSM 1.5 runbook has no CPS section (CPS ships with COS/USS)",
}

// Facts returns the table row of r; ok is false for auto or an unknown name.
func Facts(r api.Release) (ReleaseFacts, bool) {
	for _, f := range ReleaseTable {
		if f.Release == r {
			return f, true
		}
	}
	return ReleaseFacts{}, false
}
