package catalog

import "github.com/csmops/etcd-repopulate/internal/api"

// EtcdNamespace is where CSM runs the services' etcd clusters.
const EtcdNamespace = "services"

// EtcdKind is the Kubernetes kind that runs a service's etcd cluster.
type EtcdKind string

const (
	// EtcdNone: the service has no etcd cluster on the release.
	EtcdNone EtcdKind = ""
	// EtcdOperator: etcd-operator's EtcdCluster (etcd.database.coreos.com/v1beta2,
	// kube.EtcdClusterGVR), CSM 1.0–1.4.
	EtcdOperator EtcdKind = "EtcdCluster"
	// EtcdBitnami: the cray-etcd-base chart's StatefulSet, CSM 1.5 on.
	EtcdBitnami EtcdKind = "StatefulSet"
)

// Data is a kind of data a service keeps in its etcd cluster and that
// repopulate plan counts through the CSM API.
type Data string

const (
	DataBootParameters   Data = "BSS boot parameters"
	DataSubscriptions    Data = "HMNFD subscriptions"
	DataSessionTemplates Data = "BOS session templates"
	DataFASImages        Data = "FAS images"
	DataFASActions       Data = "FAS actions"
	DataCRUSSessions     Data = "CRUS sessions"
)

// Etcd is a service's etcd cluster from a release on
// (../shared/runbook/CSM-APIS.md §10).
type Etcd struct {
	Since api.Release
	Kind  EtcdKind
	Name  string
	// Unconfirmed says why the name (or the absence of a cluster) is not
	// confirmed by HPE's sources; empty when it is.
	Unconfirmed string
	// Holds is the data plan counts to tell whether the cluster lost it;
	// none: whether the service needs a run follows the cluster's age.
	Holds []Data
}

// Ref is the cluster's namespace and name.
func (e Etcd) Ref() api.ObjectRef { return api.ObjectRef{Namespace: EtcdNamespace, Name: e.Name} }

// EtcdOn returns the service's etcd cluster on release r: the last of
// e.Etcd that r has reached (Kind EtcdNone before the first).
func (e Entry) EtcdOn(r api.Release) Etcd {
	return reached(e.Etcd, func(c Etcd) api.Release { return c.Since }, r, Etcd{Since: r})
}

// operatorEtcd is cray-<svc>-etcd, the cray-service chart's EtcdCluster.
func operatorEtcd(svc api.Service, holds ...Data) Etcd {
	return Etcd{Since: api.CSM10, Kind: EtcdOperator, Name: "cray-" + string(svc) + "-etcd", Holds: holds}
}

// bitnamiEtcd is cray-<svc>-bitnami-etcd, the cray-etcd-base chart's StatefulSet.
func bitnamiEtcd(svc api.Service, holds ...Data) Etcd {
	return Etcd{Since: api.CSM15, Kind: EtcdBitnami, Name: "cray-" + string(svc) + "-bitnami-etcd", Holds: holds}
}

// noEtcd: the service has no etcd cluster from release since on.
func noEtcd(since api.Release) Etcd { return Etcd{Since: since} }

// unconfirmed marks c's cell of the table as [UNCONFIRMED].
func unconfirmed(c Etcd, since api.Release, why string) Etcd {
	c.Since, c.Unconfirmed = since, why
	return c
}

// since moves c to release r.
func (c Etcd) since(r api.Release) Etcd {
	c.Since = r
	return c
}
