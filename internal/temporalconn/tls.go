package temporalconn

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tlsConfig builds the client TLS configuration, or nil for plaintext.
func (o Options) tlsConfig() (*tls.Config, error) {
	if !o.TLSEnabled() {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: o.TLSServerName, MinVersion: tls.VersionTLS12}
	switch {
	case o.TLSCert != "" && o.TLSKey == "":
		return nil, flagErr("--tls-cert is set but --tls-key is not: give the client certificate's private key with --tls-key (env TEMPORAL_TLS_KEY)")
	case o.TLSKey != "" && o.TLSCert == "":
		return nil, flagErr("--tls-key is set but --tls-cert is not: give the client certificate with --tls-cert (env TEMPORAL_TLS_CERT)")
	case o.TLSCert != "":
		certPEM, err := readFile("--tls-cert", "TEMPORAL_TLS_CERT", o.TLSCert)
		if err != nil {
			return nil, err
		}
		keyPEM, err := readFile("--tls-key", "TEMPORAL_TLS_KEY", o.TLSKey)
		if err != nil {
			return nil, err
		}
		if !hasPEMBlock(certPEM, "CERTIFICATE") {
			return nil, flagErr("--tls-cert %s: no PEM certificate in the file (want a -----BEGIN CERTIFICATE----- block): give the client certificate, not its key", o.TLSCert)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			// crypto/tls says "private key does not match public key" for a
			// key from another pair; anything else is not a usable key.
			if strings.Contains(err.Error(), "does not match") {
				return nil, flagErr("--tls-key %s does not match the certificate in --tls-cert %s: give the private key issued with that certificate", o.TLSKey, o.TLSCert)
			}
			return nil, flagErr("--tls-key %s: no usable private key (%v): give the PEM private key of the certificate in --tls-cert", o.TLSKey, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if o.TLSCA != "" {
		caPEM, err := readFile("--tls-ca", "TEMPORAL_TLS_CA", o.TLSCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, flagErr("--tls-ca %s: no PEM certificate in the file (want -----BEGIN CERTIFICATE----- blocks): give the CA certificate that signed the Temporal server's certificate", o.TLSCA)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func flagErr(format string, args ...any) error {
	return &FlagError{msg: fmt.Sprintf(format, args...)}
}

func readFile(flag, env, path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, flagErr("%s %s: cannot read the file (%v): check the path given by %s or env %s, and that this user may read it", flag, path, err, flag, env)
	}
	return data, nil
}

func hasPEMBlock(data []byte, blockType string) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if b.Type == blockType {
			return true
		}
	}
}

// explain turns a failed dial into what the operator should check. gRPC
// reports TLS failures as text inside an Unavailable status, so the known
// texts are matched; anything else keeps the original error.
func (o Options) explain(err error) error {
	msg := err.Error()
	where := fmt.Sprintf("the Temporal server at %s (namespace %q)", o.Address, o.Namespace)
	needCert := "the server requires a client certificate (mTLS): give --tls-cert and --tls-key (env TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY)"
	if o.TLSCert != "" {
		// Go's client sends no certificate when the server's list of
		// client CAs does not include the certificate's issuer.
		needCert = fmt.Sprintf("the server requires a client certificate signed by a CA it trusts for clients, and the one in --tls-cert %s is not: give a certificate issued by that CA", o.TLSCert)
	}
	const plainHint = "add --tls (or --tls-ca, --tls-cert/--tls-key) if it requires TLS"
	closed := strings.Contains(msg, "server preface: EOF") || strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset by peer")
	var denied *serviceerror.PermissionDenied
	var hint string
	switch {
	case strings.Contains(msg, "certificate signed by unknown authority"):
		if o.TLSCA != "" {
			hint = fmt.Sprintf("the server's certificate is not signed by the CA in --tls-ca %s: give the CA that issued the server's certificate", o.TLSCA)
		} else {
			hint = "the server's certificate is not signed by a CA this system trusts: give its CA with --tls-ca (env TEMPORAL_TLS_CA)"
		}
	case strings.Contains(msg, "certificate is valid for") || strings.Contains(msg, "certificate is not valid for any names"):
		hint = "the server's certificate does not carry the name dialed: set --tls-server-name (env TEMPORAL_TLS_SERVER_NAME) to a name in the certificate"
	case strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate") || strings.Contains(msg, "unknown certificate authority"):
		hint = needCert
	case o.TLSEnabled() && closed:
		// With TLS 1.3 the server checks the client certificate after the
		// client has finished its handshake; when it closes the connection
		// at once, its alert is often lost and the client sees only the close.
		hint = "the server closed the connection right after the TLS handshake; probably " + needCert
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		hint = "the server does not speak TLS on this port: drop --tls and the --tls-* flags (and TEMPORAL_TLS*), or point --address at its TLS port"
	case status.Code(err) == codes.Unauthenticated || errors.As(err, &denied):
		hint = "the server refused the credentials: check --api-key / TEMPORAL_API_KEY, or the client certificate's access to the namespace"
	case !o.TLSEnabled() && closed:
		hint = "the server closed the connection without answering, as a TLS port does to plaintext: " + plainHint
	case !o.TLSEnabled():
		hint = "start one (make demo starts a local dev server) or point --address / TEMPORAL_ADDRESS at it; " + plainHint
	default:
		hint = "check --address / TEMPORAL_ADDRESS and the TLS settings"
	}
	return fmt.Errorf("cannot reach %s: %v\n%s", where, err, hint)
}
