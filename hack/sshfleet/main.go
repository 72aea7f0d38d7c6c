// Command sshfleet runs a benchmark SSH fleet that behaves like remote
// nodes (internal/sshfleet) as its own process, so that its CPU is measured
// apart from the client's: one x/crypto/ssh server in Go for every node,
// one loopback listener per node. Once it serves, it prints one JSON line
// (sshfleet.Ready: client files, node names and roles, control API address)
// on stdout; it stops on SIGTERM or SIGINT.
//
//	sshfleet -dir /tmp/fleet -nodes 1000 -delay 1s -stragglers 0.01 -straggler-delay 10s
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/csmops/etcd-repopulate/internal/sshfleet"
)

func main() {
	var o sshfleet.Options
	flag.StringVar(&o.Dir, "dir", "", "directory for keys, the client config and known_hosts (required)")
	flag.IntVar(&o.Nodes, "nodes", 1000, "number of nodes (nid000001-nmn ...)")
	flag.DurationVar(&o.RestartDelay, "delay", time.Second, "how long `systemctl restart` takes on a node")
	flag.Float64Var(&o.Stragglers, "stragglers", 0, "share of nodes (0..1) whose restart takes -straggler-delay")
	flag.DurationVar(&o.StragglerDelay, "straggler-delay", 10*time.Second, "the stragglers' restart time")
	flag.Float64Var(&o.Failures, "failures", 0, "share of nodes whose restart exits 1 with a line on stderr")
	flag.Float64Var(&o.Unreachable, "unreachable", 0, "share of nodes nothing listens for (connection refused)")
	flag.Uint64Var(&o.Seed, "seed", 1, "chooses which nodes straggle, fail or are unreachable")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "sshfleet: unexpected arguments %q: every setting is a flag (see -h)\n", flag.Args())
		os.Exit(2)
	}
	f, err := sshfleet.Start(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sshfleet: control API:", err)
		os.Exit(2)
	}
	go func() { _ = http.Serve(l, f.ControlHandler()) }()
	if err := json.NewEncoder(os.Stdout).Encode(sshfleet.Ready{Files: f.Files, Control: l.Addr().String(), Port: f.Port}); err != nil {
		fmt.Fprintln(os.Stderr, "sshfleet:", err)
		os.Exit(2)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	f.Close()
}
