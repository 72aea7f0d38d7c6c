// Package tlstest makes the certificates and the TLS front a test needs to
// show the binaries talking to a Temporal frontend that requires mTLS: the
// dev server speaks plaintext only, so a proxy terminates TLS in front of it,
// as a load balancer or Temporal's own TLS listener would.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// PKI is a CA with one server and one client certificate, written as PEM
// files in Dir.
type PKI struct {
	Dir string
	// CA is the CA certificate file; ServerCert/ServerKey and
	// ClientCert/ClientKey are certificates it signed and their keys.
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	// ServerName is the DNS name in the server certificate (with 127.0.0.1).
	ServerName string

	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// NewPKI creates a CA named name in dir and issues a server certificate
// for serverName and 127.0.0.1, and a client certificate.
func NewPKI(dir, name, serverName string) (*PKI, error) {
	p := &PKI{Dir: dir, ServerName: serverName}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	p.caKey = key
	if p.CA, err = writePEM(dir, name+"-ca.pem", "CERTIFICATE", der); err != nil {
		return nil, err
	}
	if p.ServerCert, p.ServerKey, err = p.issue(name+"-server", x509.ExtKeyUsageServerAuth, serverName); err != nil {
		return nil, err
	}
	if p.ClientCert, p.ClientKey, err = p.issue(name+"-client", x509.ExtKeyUsageClientAuth, ""); err != nil {
		return nil, err
	}
	return p, nil
}

// issue signs a new key's certificate and writes both files.
func (p *PKI) issue(name string, usage x509.ExtKeyUsage, dnsName string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if dnsName != "" {
		tmpl.DNSNames = []string{dnsName}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if certFile, err = writePEM(p.Dir, name+".pem", "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	keyFile, err = writePEM(p.Dir, name+"-key.pem", "PRIVATE KEY", keyDER)
	return certFile, keyFile, err
}

func writePEM(dir, name, blockType string, der []byte) (string, error) {
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600)
}

// Proxy accepts TLS connections that present a client certificate signed by
// the PKI's CA and forwards the plaintext to a backend.
type Proxy struct {
	Addr  string
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
}

// StartMTLSProxy listens on a free loopback port with p's server
// certificate, requires and verifies client certificates against p's CA,
// and forwards each connection to backend.
func StartMTLSProxy(p *PKI, backend string) (*Proxy, error) {
	cert, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		return nil, err
	}
	clients := x509.NewCertPool()
	clients.AddCert(p.caCert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clients,
		// gRPC refuses a TLS server that does not offer h2.
		NextProtos: []string{"h2"},
	})
	if err != nil {
		return nil, err
	}
	x := &Proxy{Addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}}
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			x.wg.Add(1)
			go func() {
				defer x.wg.Done()
				x.forward(c, backend)
			}()
		}
	}()
	return x, nil
}

func (x *Proxy) forward(c net.Conn, backend string) {
	x.track(c, true)
	defer x.track(c, false)
	// The handshake (and so the client-certificate check) happens here, not
	// lazily on the first read, so a refused client is refused at once.
	if err := c.(*tls.Conn).Handshake(); err != nil {
		return
	}
	b, err := net.DialTimeout("tcp", backend, 5*time.Second)
	if err != nil {
		return
	}
	x.track(b, true)
	defer x.track(b, false)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Half-close so the other direction finishes too.
		if hc, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = hc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(b, c)
	go pipe(c, b)
	<-done
	<-done
}

// track records an open connection so Close can end it, or closes and
// forgets it.
func (x *Proxy) track(c net.Conn, open bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if open {
		x.conns[c] = true
		return
	}
	c.Close()
	delete(x.conns, c)
}

// Close stops accepting and ends every forwarded connection.
func (x *Proxy) Close() error {
	err := x.ln.Close()
	x.mu.Lock()
	for c := range x.conns {
		c.Close()
	}
	x.mu.Unlock()
	x.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("close proxy: %w", err)
	}
	return nil
}
