package temporalconn_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.temporal.io/api/workflowservice/v1"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/csmops/etcd-repopulate/internal/cli"
	"github.com/csmops/etcd-repopulate/internal/logging"
	"github.com/csmops/etcd-repopulate/internal/temporalconn"
	"github.com/csmops/etcd-repopulate/internal/tlstest"
)

// TestValidate: every bad TLS input is refused before dialing, with the
// flag, the file and the fix in the message.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	pki, err := tlstest.NewPKI(dir, "a", "temporal.test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlstest.NewPKI(t.TempDir(), "b", "temporal.test")
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	unreadable := filepath.Join(dir, "unreadable.pem")
	if err := os.WriteFile(unreadable, nil, 0o000); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		o    temporalconn.Options
		want string
	}{
		{"cert without key", temporalconn.Options{TLSCert: pki.ClientCert},
			"--tls-cert is set but --tls-key is not: give the client certificate's private key with --tls-key (env TEMPORAL_TLS_KEY)"},
		{"key without cert", temporalconn.Options{TLSKey: pki.ClientKey},
			"--tls-key is set but --tls-cert is not: give the client certificate with --tls-cert (env TEMPORAL_TLS_CERT)"},
		{"missing cert file", temporalconn.Options{TLSCert: missing, TLSKey: pki.ClientKey},
			"--tls-cert " + missing + ": cannot read the file (no such file or directory): check the path given by --tls-cert or env TEMPORAL_TLS_CERT, and that this user may read it"},
		{"missing CA file", temporalconn.Options{TLSCA: missing},
			"--tls-ca " + missing + ": cannot read the file (no such file or directory)"},
		{"key file is the cert", temporalconn.Options{TLSCert: pki.ClientCert, TLSKey: pki.ClientCert},
			"--tls-key " + pki.ClientCert + ": no usable private key"},
		{"cert file is the key", temporalconn.Options{TLSCert: pki.ClientKey, TLSKey: pki.ClientKey},
			"--tls-cert " + pki.ClientKey + ": no PEM certificate in the file (want a -----BEGIN CERTIFICATE----- block): give the client certificate, not its key"},
		{"cert file not PEM", temporalconn.Options{TLSCert: notPEM, TLSKey: pki.ClientKey},
			"--tls-cert " + notPEM + ": no PEM certificate in the file"},
		{"key of another certificate", temporalconn.Options{TLSCert: pki.ClientCert, TLSKey: other.ClientKey},
			"--tls-key " + other.ClientKey + " does not match the certificate in --tls-cert " + pki.ClientCert + ": give the private key issued with that certificate"},
		{"CA file without certificates", temporalconn.Options{TLSCA: pki.ClientKey},
			"--tls-ca " + pki.ClientKey + ": no PEM certificate in the file (want -----BEGIN CERTIFICATE----- blocks): give the CA certificate that signed the Temporal server's certificate"},
	}
	if os.Geteuid() != 0 { // root reads a mode-000 file
		cases = append(cases, struct {
			name string
			o    temporalconn.Options
			want string
		}{"unreadable key", temporalconn.Options{TLSCert: pki.ClientCert, TLSKey: unreadable}, "--tls-key " + unreadable + ": cannot read the file (permission denied)"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Address, tc.o.DialTimeout = "127.0.0.1:1", time.Second
			err := tc.o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !temporalconn.IsFlagError(err) {
				t.Fatalf("got %v\nwant a flag error containing %q", err, tc.want)
			}
			t.Log(err)
			// Dial refuses the same input before any connection is tried.
			if _, derr := tc.o.Dial(context.Background(), logging.NewTemporal(zap.NewNop())); derr == nil || derr.Error() != err.Error() {
				t.Fatalf("Dial: %v", derr)
			}
		})
	}

	good := temporalconn.Options{TLSCert: pki.ClientCert, TLSKey: pki.ClientKey, TLSCA: pki.CA}
	if err := good.Validate(); err != nil {
		t.Fatalf("good files refused: %v", err)
	}

	// The CLI reports it as bad input (exit 2), not as an unreachable server.
	var out, errOut bytes.Buffer
	code := cli.Execute(context.Background(), []string{"status", "run-1", "--tls-cert", pki.ClientCert}, cli.Streams{Out: &out, Err: &errOut})
	want := "repopulate: --tls-cert is set but --tls-key is not: give the client certificate's private key with --tls-key (env TEMPORAL_TLS_KEY)\n"
	if code != cli.ExitBadInput || errOut.String() != want {
		t.Fatalf("CLI exit %d, stderr %q", code, errOut.String())
	}
}

// TestFlagsFromEnv: the Temporal CLI's environment variables fill the
// flags, and the API key never shows in --help or in the logs.
func TestFlagsFromEnv(t *testing.T) {
	const key = "secret-api-key-4b1d"
	t.Setenv("TEMPORAL_TLS_CERT", "/c.pem")
	t.Setenv("TEMPORAL_TLS_KEY", "/k.pem")
	t.Setenv("TEMPORAL_TLS_CA", "/ca.pem")
	t.Setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.example")
	t.Setenv("TEMPORAL_TLS", "true")
	t.Setenv("TEMPORAL_API_KEY", key)
	var o temporalconn.Options
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if o.TLSCert != "/c.pem" || o.TLSKey != "/k.pem" || o.TLSCA != "/ca.pem" || o.TLSServerName != "temporal.example" || !o.TLS {
		t.Fatalf("env not applied: %+v", o)
	}
	if strings.Contains(fs.FlagUsages(), key) {
		t.Fatal("--help shows the API key")
	}

	// A dial with the key that fails logs nothing that contains it.
	var logs bytes.Buffer
	z := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&logs), zapcore.DebugLevel))
	o = temporalconn.Options{Address: "127.0.0.1:1", Namespace: "default", DialTimeout: time.Second}
	_, err := o.Dial(context.Background(), logging.NewTemporal(z))
	if err == nil || strings.Contains(err.Error(), key) || strings.Contains(logs.String(), key) {
		t.Fatalf("dial error or logs carry the API key:\n%v\n%s", err, logs.String())
	}
	if !o.TLSEnabled() {
		t.Fatal("an API key must imply TLS")
	}

	t.Setenv("TEMPORAL_TLS", "yes please")
	o = temporalconn.Options{}
	o.AddFlags(pflag.NewFlagSet("y", pflag.ContinueOnError))
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), `TEMPORAL_TLS="yes please": want true or false`) {
		t.Fatalf("bad TEMPORAL_TLS: %v", err)
	}
}

// TestAPIKey: the key goes to the frontend as a bearer token over TLS, and a
// refusal says which credentials to check. The frontend here is a gRPC
// server that refuses every call, as Temporal Cloud does a revoked key.
func TestAPIKey(t *testing.T) {
	pki, err := tlstest.NewPKI(t.TempDir(), "cloud", "temporal.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []string, 1)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})),
		grpc.UnaryInterceptor(func(ctx context.Context, _ any, _ *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			select {
			case got <- md.Get("authorization"):
			default:
			}
			return nil, status.Error(codes.Unauthenticated, "Request unauthorized.")
		}))
	workflowservice.RegisterWorkflowServiceServer(srv, &workflowservice.UnimplementedWorkflowServiceServer{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	o := temporalconn.Options{Address: ln.Addr().String(), Namespace: "prod.acct", DialTimeout: 5 * time.Second,
		TLSCA: pki.CA, TLSServerName: pki.ServerName, APIKey: "k-123"}
	_, err = o.Dial(context.Background(), logging.NewTemporal(zap.NewNop()))
	if err == nil || !strings.Contains(err.Error(), "the server refused the credentials: check --api-key / TEMPORAL_API_KEY") {
		t.Fatalf("got %v", err)
	}
	if auth := <-got; len(auth) != 1 || auth[0] != "Bearer k-123" {
		t.Fatalf("authorization sent: %q", auth)
	}
}
