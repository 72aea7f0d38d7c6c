// Package simcluster starts a real Kubernetes control plane on loopback for
// tests and the demo: etcd, kube-apiserver, kube-controller-manager (so
// deleted pods come back and Jobs run) and kwok (fake nodes that run pods),
// all built from their Go modules by hack/install-tools.sh. It also seeds the
// cluster like a CSM system and plays the etcd-operator.
package simcluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/csmops/etcd-repopulate/internal/loopback"
)

// Options configure a cluster.
type Options struct {
	// BinDir holds etcd, kube-apiserver, kube-controller-manager, kwok and
	// kwok-stages.yaml.
	BinDir string
	// Dir receives certificates, data, the kubeconfig and each process's log.
	Dir string
	// Controllers starts kube-controller-manager and kwok; without them the
	// cluster stores objects but nothing runs them.
	Controllers bool
	// Latencies slow kwok's pods and Jobs down (benchmarks); zero: at once.
	Latencies Latencies
}

// Cluster is a running control plane.
type Cluster struct {
	Dir        string
	Kubeconfig string
	Config     *rest.Config
	Core       kubernetes.Interface
	Dynamic    dynamic.Interface
	procs      []*process
}

// process is one running component; done closes when it has exited.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start starts the control plane and waits until the API server is ready.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	// The kubeconfig names certificate files; absolute paths keep it usable
	// from any directory.
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return nil, err
	}
	if o.BinDir, err = filepath.Abs(o.BinDir); err != nil {
		return nil, err
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, name)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run make tools (hack/install-tools.sh) first", name, o.BinDir)
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: o.Dir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	pki, err := writePKI(filepath.Join(o.Dir, "pki"))
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	ports, err := loopback.FreePorts(4)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, kcmPort := ports[0], ports[1], ports[2], ports[3]

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	if err := c.spawn(o, "etcd",
		"--data-dir", filepath.Join(o.Dir, "etcd-data"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL,
		"--unsafe-no-fsync", "--log-level", "warn",
	); err != nil {
		return nil, err
	}
	if err := c.spawn(o, "kube-apiserver",
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(apiPort),
		"--endpoint-reconciler-type", "none",
		"--tls-cert-file", pki.serverCert, "--tls-private-key-file", pki.serverKey,
		"--client-ca-file", pki.caCert,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pki.saPub, "--service-account-signing-key-file", pki.saKey,
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--authorization-mode", "RBAC",
		"--disable-admission-plugins", "ServiceAccount",
		"--allow-privileged",
		"--v", "0",
	); err != nil {
		return nil, err
	}
	host := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	c.Kubeconfig = filepath.Join(o.Dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, host, pki); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, host, pki, c); err != nil {
		return nil, err
	}
	c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	c.Config.QPS, c.Config.Burst = 100, 200
	if c.Core, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	if !o.Controllers {
		return c, nil
	}
	if err := c.spawn(o, "kube-controller-manager",
		"--kubeconfig", c.Kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(kcmPort),
		"--cert-dir", filepath.Join(o.Dir, "kcm-certs"),
		"--leader-elect=false", "--use-service-account-credentials=false",
		"--service-account-private-key-file", pki.saKey,
		"--root-ca-file", pki.caCert,
		// kwok's fake nodes have no kubelet to bring pods back to Ready
		// once the node controller has marked them NotReady (it does after
		// any pause in heartbeats, e.g. under heavy load): leave it out.
		"--controllers", "*,-node-lifecycle-controller,-taint-eviction-controller",
	); err != nil {
		return nil, err
	}
	kwokPorts, err := loopback.FreePorts(1)
	if err != nil {
		return nil, err
	}
	stages, err := stagesFile(o.BinDir, o.Dir, o.Latencies)
	if err != nil {
		return nil, err
	}
	if err := c.spawn(o, "kwok",
		"--kubeconfig", c.Kubeconfig,
		"--config", stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector", FakeNodeAnnotation+"=fake",
		"--server-address", fmt.Sprintf("127.0.0.1:%d", kwokPorts[0]),
	); err != nil {
		return nil, err
	}
	return c, nil
}

// FakeNodeAnnotation marks the nodes kwok runs.
const FakeNodeAnnotation = "kwok.x-k8s.io/node"

// spawn starts one component with its output in Dir/<name>.log. The
// component dies with this process, so a crashed test leaves nothing behind.
func (c *Cluster) spawn(o Options, name string, args ...string) error {
	logFile, err := os.Create(filepath.Join(o.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(o.BinDir, name), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	c.procs = append(c.procs, p)
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return nil
}

// Stop ends every component, newest first: SIGTERM, then SIGKILL after 5 s.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		_ = c.procs[i].cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(5 * time.Second)
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		select {
		case <-p.done:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	c.procs = nil
}

func waitReady(ctx context.Context, host string, pki *pki, c *Cluster) error {
	cert, err := tls.LoadX509KeyPair(pki.adminCert, pki.adminKey)
	if err != nil {
		return err
	}
	pool, err := loadPool(pki.caCert)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		for _, p := range c.procs {
			if p.exited() {
				return fmt.Errorf("%s exited: see %s", p.name, filepath.Join(c.Dir, p.name+".log"))
			}
		}
		resp, err := hc.Get(host + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("readyz: %s", resp.Status)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("kube-apiserver not ready after 60s (%v): see %s", last, filepath.Join(c.Dir, "kube-apiserver.log"))
}

func writeKubeconfig(path, host string, p *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["sim"] = &clientcmdapi.Cluster{Server: host, CertificateAuthority: p.caCert}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: p.adminCert, ClientKey: p.adminKey}
	cfg.Contexts["sim"] = &clientcmdapi.Context{Cluster: "sim", AuthInfo: "admin"}
	cfg.CurrentContext = "sim"
	return clientcmd.WriteToFile(*cfg, path)
}

// Signal sends sig to one component ("kwok", "kube-apiserver", ...); tests
// use SIGSTOP and SIGCONT on kwok to hold pods where they are.
func (c *Cluster) Signal(name string, sig syscall.Signal) error {
	for _, p := range c.procs {
		if p.name == name {
			return p.cmd.Process.Signal(sig)
		}
	}
	return fmt.Errorf("no component %s is running", name)
}
