package bssrestore

import (
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/settings"
	"github.com/csmops/etcd-repopulate/procedures/rerunjob"
)

// BSSSettings are bss's settings: the cray-reds-init Job it re-runs up to
// CSM 1.4 (rerun-job); from 1.5 the same namespace holds the etcd backup
// CronJob whose age the bss-restore gate shows.
type BSSSettings struct {
	rerunjob.JobSettings
}

// Validate implements settings.Settings.
func (s *BSSSettings) Validate(field string) []error { return s.JobSettings.Validate(field) }

// restoreTimeout bounds comparing and writing the boot parameters: a few
// thousand hosts, one PUT per group of identical entries, across retries.
const restoreTimeout = 10 * time.Minute

// Plan implements settings.Settings.
func (s *BSSSettings) Plan(c settings.PlanContext) api.ServicePlan {
	if c.Procedure != api.RestoreBSSFromSnapshot {
		return s.JobSettings.Plan(c)
	}
	return api.ServicePlan{Service: c.Service, Procedure: c.Procedure, Timings: c.Timings(settings.Duration(restoreTimeout)), Gates: c.Gates,
		EtcdBackup: api.ObjectRef{Namespace: s.Namespace, Name: EtcdBackupCronJob(c.Service)}}
}

// EtcdBackupCronJob is the CronJob that backs up svc's etcd cluster every
// hour from CSM 1.5: the bitnami etcd chart's disasterRecovery snapshotter
// of cray-<svc>-bitnami-etcd, which Cray-HPE/cray-etcd@release/1.5 enables
// (charts/cray-etcd-base/values.yaml: disasterRecovery.enabled, schedule
// "0 */1 * * *", snapshots on PVC bitnami-etcd-snapshotter) and names
// (charts/cray-etcd-base/templates/migration-jobs.yaml patches cronjob
// ${cluster}-bitnami-etcd-snapshotter). The copies in S3 (bucket
// etcd-backup, CronJob etcd-backup-pvc-snapshots-to-s3) are made from these
// snapshots and are not readable through Kubernetes.
func EtcdBackupCronJob(svc api.Service) string {
	return "cray-" + string(svc) + "-bitnami-etcd-snapshotter"
}
