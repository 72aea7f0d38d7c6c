// Package productcatalog reads the CSM version from the Cray product catalog:
// ConfigMap services/cray-product-catalog, key csm, a YAML map keyed by
// every CSM version ever imported (CSM-APIS.md §9.1).
package productcatalog

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Where the catalog is.
const (
	Namespace = "services"
	ConfigMap = "cray-product-catalog"
	Key       = "csm"
)

// Catalog is what the product catalog says about CSM.
type Catalog struct {
	// Highest is the highest CSM version imported; empty when there is none.
	Highest string
	// Versions is how many CSM versions the catalog lists.
	Versions int
	// Note says why Highest is empty.
	Note string
}

// ErrForbidden is returned when the worker may not read the ConfigMap.
type ErrForbidden struct{ Err error }

func (e ErrForbidden) Error() string {
	return fmt.Sprintf("reading ConfigMap %s/%s is forbidden (%v): grant the worker get on it (deploy/rbac.yaml) or set release: in the worker config", Namespace, ConfigMap, e.Err)
}

// Read reads the catalog. A missing ConfigMap, key or parsable version is
// not an error: the Catalog's Note says what was missing. Other API errors
// are returned (forbidden as ErrForbidden).
func Read(ctx context.Context, core kubernetes.Interface) (Catalog, error) {
	cm, err := core.CoreV1().ConfigMaps(Namespace).Get(ctx, ConfigMap, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return Catalog{Note: fmt.Sprintf("ConfigMap %s/%s not found", Namespace, ConfigMap)}, nil
	case apierrors.IsForbidden(err):
		return Catalog{}, ErrForbidden{err}
	case err != nil:
		return Catalog{}, fmt.Errorf("read ConfigMap %s/%s: %w", Namespace, ConfigMap, err)
	}
	return Parse(cm.Data[Key]), nil
}

// Parse reads the value of key csm.
func Parse(data string) Catalog {
	if data == "" {
		return Catalog{Note: fmt.Sprintf("ConfigMap %s/%s has no key %s", Namespace, ConfigMap, Key)}
	}
	var entries map[string]any
	if err := yaml.Unmarshal([]byte(data), &entries); err != nil {
		return Catalog{Note: fmt.Sprintf("key %s of ConfigMap %s/%s is not a YAML map: %v", Key, Namespace, ConfigMap, err)}
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	c := Catalog{Highest: api.HighestVersion(keys), Versions: len(keys)}
	if c.Highest == "" {
		c.Note = fmt.Sprintf("key %s of ConfigMap %s/%s lists no CSM version", Key, Namespace, ConfigMap)
	}
	return c
}

// Entry is one catalog entry as CSM writes it; tests and the simulated
// cluster use it to seed a catalog.
func Entry(version string) string {
	return fmt.Sprintf("%s:\n  configuration:\n    clone_url: https://vcs.cmn.example/vcs/cray/csm-config-management.git\n    import_branch: cray/csm/%s\n", version, version)
}
