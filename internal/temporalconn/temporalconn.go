// Package temporalconn holds the Temporal connection flags both binaries
// share (address, namespace, TLS, mTLS, API key), checks them before
// dialing, and turns a failed dial into an error that says what to do.
package temporalconn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/csmops/etcd-repopulate/internal/api"
)

// Options are the connection settings.
type Options struct {
	Address   string
	Namespace string
	TaskQueue string
	// DialTimeout bounds the first contact with the frontend.
	DialTimeout time.Duration

	// TLS turns TLS on with the system's roots and no client certificate.
	// Any of the TLS files, the server name or an API key turn it on too.
	TLS bool
	// TLSCert and TLSKey are the client certificate and key (PEM) for mTLS.
	TLSCert, TLSKey string
	// TLSCA is the CA bundle (PEM) that signed the server's certificate;
	// empty trusts the system's roots.
	TLSCA string
	// TLSServerName overrides the name checked in the server's certificate.
	TLSServerName string
	// APIKey is sent as a bearer token (Temporal Cloud). It is never logged
	// and never a flag default, so --help cannot print it.
	APIKey string

	// MetricsHandler receives the SDK's metrics; nil drops them.
	MetricsHandler client.MetricsHandler

	// envErr is a bad TEMPORAL_TLS value, reported by Validate.
	envErr error
}

// AddFlags registers the connection flags, with defaults from the
// environment variables the Temporal CLI reads.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Address, "address", envOr("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	fs.StringVar(&o.Namespace, "namespace", envOr("TEMPORAL_NAMESPACE", "default"), "Temporal namespace (env TEMPORAL_NAMESPACE)")
	fs.StringVar(&o.TaskQueue, "task-queue", api.TaskQueue, "task queue the worker polls")
	fs.DurationVar(&o.DialTimeout, "dial-timeout", 10*time.Second, "how long to try reaching the Temporal frontend")

	tlsOn := false
	if v := os.Getenv("TEMPORAL_TLS"); v != "" {
		var err error
		if tlsOn, err = strconv.ParseBool(v); err != nil {
			o.envErr = &FlagError{msg: fmt.Sprintf("TEMPORAL_TLS=%q: want true or false", v)}
		}
	}
	fs.BoolVar(&o.TLS, "tls", tlsOn, "connect with TLS, trusting the system's CAs (env TEMPORAL_TLS); implied by the other --tls-* flags and --api-key")
	fs.StringVar(&o.TLSCert, "tls-cert", os.Getenv("TEMPORAL_TLS_CERT"), "client certificate file (PEM) for mTLS, with --tls-key (env TEMPORAL_TLS_CERT)")
	fs.StringVar(&o.TLSKey, "tls-key", os.Getenv("TEMPORAL_TLS_KEY"), "private key file (PEM) of --tls-cert (env TEMPORAL_TLS_KEY)")
	fs.StringVar(&o.TLSCA, "tls-ca", os.Getenv("TEMPORAL_TLS_CA"), "CA certificate file (PEM) that signed the server's certificate; default the system's CAs (env TEMPORAL_TLS_CA)")
	fs.StringVar(&o.TLSServerName, "tls-server-name", os.Getenv("TEMPORAL_TLS_SERVER_NAME"), "name expected in the server's certificate; default the host of --address (env TEMPORAL_TLS_SERVER_NAME)")
	fs.StringVar(&o.APIKey, "api-key", "", "API key sent as a bearer token, e.g. for Temporal Cloud; prefer the env TEMPORAL_API_KEY (a flag shows in ps)")
}

// apiKey is --api-key, else TEMPORAL_API_KEY.
func (o Options) apiKey() string {
	if o.APIKey != "" {
		return o.APIKey
	}
	return os.Getenv("TEMPORAL_API_KEY")
}

// TLSEnabled reports whether the connection uses TLS.
func (o Options) TLSEnabled() bool {
	return o.TLS || o.TLSCert != "" || o.TLSKey != "" || o.TLSCA != "" || o.TLSServerName != "" || o.apiKey() != ""
}

// Validate reads and checks the TLS files without dialing; a bad one gives a
// *FlagError that names the flag and the fix.
func (o Options) Validate() error {
	_, err := o.ClientOptions(nil)
	return err
}

// ClientOptions are the SDK client options for these settings.
func (o Options) ClientOptions(logger log.Logger) (client.Options, error) {
	if o.envErr != nil {
		return client.Options{}, o.envErr
	}
	tlsConfig, err := o.tlsConfig()
	if err != nil {
		return client.Options{}, err
	}
	opts := client.Options{
		HostPort:          o.Address,
		Namespace:         o.Namespace,
		Logger:            logger,
		MetricsHandler:    o.MetricsHandler,
		ConnectionOptions: client.ConnectionOptions{TLS: tlsConfig},
	}
	if key := o.apiKey(); key != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(key)
	}
	return opts, nil
}

// Dial checks the settings, connects and checks that the frontend answers.
func (o Options) Dial(ctx context.Context, logger log.Logger) (client.Client, error) {
	opts, err := o.ClientOptions(logger)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, o.explain(err)
	}
	return c, nil
}

// FlagError is a connection setting that is wrong before anything is dialed.
type FlagError struct{ msg string }

func (e *FlagError) Error() string { return e.msg }

// IsFlagError reports whether err is (or wraps) a *FlagError.
func IsFlagError(err error) bool {
	var fe *FlagError
	return errors.As(err, &fe)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// History reads the whole history of a workflow's latest run.
func History(ctx context.Context, c client.Client, workflowID string) ([]*historypb.HistoryEvent, error) {
	var events []*historypb.HistoryEvent
	it := c.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", workflowID, err)
		}
		events = append(events, e)
	}
	return events, nil
}
