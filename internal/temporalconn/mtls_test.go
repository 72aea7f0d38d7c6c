package temporalconn_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.uber.org/zap"

	"github.com/csmops/etcd-repopulate/internal/cli"
	"github.com/csmops/etcd-repopulate/internal/logging"
	"github.com/csmops/etcd-repopulate/internal/temporalconn"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/internal/tlstest"
)

// TestMTLS puts a TLS front that requires client certificates before a real
// dev server and dials it the way the worker and the CLI do.
func TestMTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	srv, err := testenv.Temporal(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	pki, err := tlstest.NewPKI(dir, "temporal", "temporal.test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlstest.NewPKI(t.TempDir(), "other", "temporal.test")
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tlstest.StartMTLSProxy(pki, srv.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })

	good := temporalconn.Options{Address: proxy.Addr, Namespace: "default", DialTimeout: 5 * time.Second,
		TLSCert: pki.ClientCert, TLSKey: pki.ClientKey, TLSCA: pki.CA, TLSServerName: pki.ServerName}

	t.Run("client certificate accepted", func(t *testing.T) {
		c, err := good.Dial(ctx, quiet())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default"}); err != nil {
			t.Fatalf("list workflows over mTLS: %v", err)
		}
	})

	fails := []struct {
		name string
		edit func(*temporalconn.Options)
		want []string
	}{
		{"wrong CA", func(o *temporalconn.Options) { o.TLSCA = other.CA },
			[]string{"not signed by the CA in --tls-ca " + other.CA}},
		{"no client certificate", func(o *temporalconn.Options) { o.TLSCert, o.TLSKey = "", "" },
			[]string{"the server requires a client certificate (mTLS): give --tls-cert and --tls-key (env TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY)"}},
		{"client certificate from another CA", func(o *temporalconn.Options) { o.TLSCert, o.TLSKey = other.ClientCert, other.ClientKey },
			[]string{"the server requires a client certificate signed by a CA it trusts for clients, and the one in --tls-cert " + other.ClientCert + " is not: give a certificate issued by that CA"}},
		{"no TLS", func(o *temporalconn.Options) { o.TLSCert, o.TLSKey, o.TLSCA, o.TLSServerName = "", "", "", "" },
			[]string{"add --tls (or --tls-ca, --tls-cert/--tls-key) if it requires TLS"}},
		{"TLS to a plaintext port", func(o *temporalconn.Options) { o.Address = srv.Address },
			[]string{"the server does not speak TLS on this port"}},
		{"wrong server name", func(o *temporalconn.Options) { o.TLSServerName = "elsewhere.test" },
			[]string{"set --tls-server-name"}},
	}
	for _, tc := range fails {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			o.DialTimeout = 3 * time.Second
			tc.edit(&o)
			start := time.Now()
			c, err := o.Dial(ctx, quiet())
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			t.Logf("after %v: %v", time.Since(start), err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}

	t.Run("CLI", func(t *testing.T) {
		var out, errOut bytes.Buffer
		t.Setenv("TEMPORAL_TLS_CERT", pki.ClientCert)
		t.Setenv("TEMPORAL_TLS_KEY", pki.ClientKey)
		code := cli.Execute(ctx, []string{"status", "no-such-run", "--address", proxy.Addr,
			"--tls-ca", pki.CA, "--tls-server-name", pki.ServerName}, cli.Streams{Out: &out, Err: &errOut})
		// The frontend answered the describe through the mTLS front: the run
		// is unknown, which is bad input (2), not an unreachable server (1).
		if code != cli.ExitBadInput || !strings.Contains(errOut.String(), `no run "no-such-run"`) {
			t.Fatalf("exit %d, stderr:\n%s", code, errOut.String())
		}
	})
}

func quiet() logging.Temporal { return logging.NewTemporal(zap.NewNop()) }
