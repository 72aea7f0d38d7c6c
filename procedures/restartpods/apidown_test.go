package restartpods_test

import (
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"k8s.io/client-go/rest"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/activitytest"
	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/badinput"
	"github.com/csmops/etcd-repopulate/internal/simcluster"
	"github.com/csmops/etcd-repopulate/internal/testenv"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
)

// tcpProxy forwards connections to the API server until cut, when it stops
// listening and drops every open connection: to the worker, the API server
// is gone. (Stopping the shared kube-apiserver would break the other tests.)
type tcpProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// TestAPIServerDownMidStep: the API server goes away while the pod wait is
// polling it. The step fails at once with a retryable error that names the
// address (so the retry policy, not the wait's budget, decides), and the
// pods it was waiting on are left as they were.
func TestAPIServerDownMidStep(t *testing.T) {
	u, err := url.Parse(cluster.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Host = "https://" + p.addr() // the serving certificate is for 127.0.0.1, any port
	cfg.Timeout = 2 * time.Second
	k := pods(cfg)
	var a *restartpods.Activities
	set := api.PodSet{Namespace: simcluster.Namespace, Selector: simcluster.NameLabel + "=cray-meds"}
	snap, err := run[restartpods.PodSnapshot](t, k, a.SnapshotPods, set)
	if err != nil {
		t.Fatal(err)
	}
	before := activitytest.Fingerprint(t, cluster)
	// The pods are not deleted, so the wait would poll for its whole budget
	// (a minute); the API server disappears a second into it.
	cutAt := time.Now().Add(time.Second)
	time.AfterFunc(time.Second, p.cut)
	_, err = run[activities.Outcome](t, k, a.WaitPodsReplaced, restartpods.WaitPodsRequest{Pods: set, Snapshot: snap, Timings: activitytest.Timings()})
	failedAfter := time.Since(cutAt)
	var appErr *temporal.ApplicationError
	if err == nil || !errors.As(err, &appErr) || appErr.NonRetryable() || !strings.Contains(err.Error(), p.addr()) {
		t.Fatalf("error %v, want a retryable error naming %s", err, p.addr())
	}
	if failedAfter < 0 || failedAfter > 15*time.Second {
		t.Errorf("the wait failed %s after the API server went away, want soon after", failedAfter)
	}
	if after := activitytest.Fingerprint(t, cluster); !testenv.EqualJSON(before, after) {
		t.Fatalf("the cluster changed:\n%v\n%v", before, after)
	}
	badinput.Record(t, badinput.Case{Area: badinput.Cluster, Input: "API server goes away mid-step (while waiting for pods)", Message: activitytest.Message(err),
		Exit:      "activity fails, retryable: the retry policy (activityAttempts) tries again",
		Unchanged: "UIDs and resourceVersions of every Job/EtcdCluster/pod unchanged"})
}
