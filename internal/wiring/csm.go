// Package wiring builds the worker's clients from its configuration: the
// CSM API client with its secret source, and the SSH fan-out runner. Errors
// are kept, not fatal: services that do not need a client still run, and a
// run that does need it fails its preflight with the reason.
package wiring

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/sshfan"
)

// CSMClient builds the API client, or returns (nil, nil) when csm.baseURL is empty.
func CSMClient(cfg config.CSM, core kubernetes.Interface) (*csm.Client, error) {
	if cfg.BaseURL == "" {
		return nil, nil
	}
	return csm.New(csm.Config{
		BaseURL: cfg.BaseURL, TokenURL: cfg.TokenURL, ClientID: cfg.ClientID,
		Secret: secretSource(cfg.ClientSecret, core), CABundle: ExpandHome(cfg.CABundle), Timeout: time.Duration(cfg.Timeout),
	})
}

func secretSource(ref config.SecretRef, core kubernetes.Interface) csm.SecretSource {
	switch {
	case ref.File != "":
		return csm.SecretFromFile(ExpandHome(ref.File))
	case ref.Env != "":
		return csm.SecretFromEnv(ref.Env)
	}
	ks := *ref.Kubernetes
	return func(ctx context.Context) (string, error) {
		s, err := core.CoreV1().Secrets(ks.Namespace).Get(ctx, ks.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			//lint:ignore ST1005 Kubernetes is a proper noun
			return "", fmt.Errorf("Kubernetes secret %s/%s not found: it holds the Keycloak client secret (csm.clientSecret.kubernetes)", ks.Namespace, ks.Name)
		case apierrors.IsForbidden(err):
			// The API's own text names the identity, verb and resource.
			return "", fmt.Errorf("reading Kubernetes secret %s/%s is forbidden (%v): grant the worker get on it (deploy/rbac.yaml)", ks.Namespace, ks.Name, err)
		case err != nil:
			return "", fmt.Errorf("read Kubernetes secret %s/%s: %w", ks.Namespace, ks.Name, err)
		}
		v := strings.TrimSpace(string(s.Data[ks.Key]))
		if v == "" {
			//lint:ignore ST1005 Kubernetes is a proper noun
			return "", fmt.Errorf("Kubernetes secret %s/%s has no key %q (csm.clientSecret.kubernetes.key)", ks.Namespace, ks.Name, ks.Key)
		}
		return v, nil
	}
}

// SSHRunner builds the fan-out runner from the ssh settings.
func SSHRunner(cfg config.SSH) (*sshfan.Runner, error) {
	expand := func(paths []string) []string {
		out := make([]string, len(paths))
		for i, p := range paths {
			out[i] = ExpandHome(p)
		}
		return out
	}
	return sshfan.New(sshfan.Options{
		ConfigFile: ExpandHome(cfg.Config), KnownHosts: expand(cfg.KnownHosts), IdentityFiles: expand(cfg.IdentityFiles),
		UseAgent: cfg.UseAgent, User: cfg.User, Concurrency: cfg.Concurrency,
		ConnectTimeout: time.Duration(cfg.ConnectTimeout), CommandTimeout: time.Duration(cfg.CommandTimeout),
	})
}

// ExpandHome turns a leading ~/ into the user's home directory.
func ExpandHome(p string) string {
	if !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return p
	}
	return filepath.Join(home, p[2:])
}
