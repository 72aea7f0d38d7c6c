// Command sshnodes runs the demo's nodes: a fleet of real sshd processes on
// loopback (internal/sshtest) serving the compute nodes nid000001-nmn ..
// nidNNNNNN-nmn and the NCN host ranges given as arguments, with the OpenSSH
// client config, known_hosts and key the worker uses written to -dir.
//
// Every node's sshd forces a stand-in for `systemctl restart <orca unit>`.
// When it runs on a compute node, sshnodes plays orca starting there: it
// tells the CSM API emulator (-csm, hack/csmemu) to subscribe that node in
// HMNFD, as the real daemon does on start. It runs until SIGTERM or SIGINT
// and stops every sshd it started.
//
//	sshnodes -dir .demo/nodes -computes 16 -csm https://127.0.0.1:PORT -csm-ca ca.pem 'ncn-w00[1-3]' 'ncn-s00[1-3]'
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/csmops/etcd-repopulate/internal/hostrange"
	"github.com/csmops/etcd-repopulate/internal/sshtest"
)

func main() {
	dir := flag.String("dir", "", "directory for keys, sshd and client configs, known_hosts and logs (required)")
	computes := flag.Int("computes", 16, "compute nodes nid000001-nmn .. (the emulator's Ready computes by NID)")
	csmURL := flag.String("csm", "", "CSM API emulator base URL whose /_csmemu/orca-restarted subscribes a restarted compute (empty: nobody subscribes)")
	csmCA := flag.String("csm-ca", "", "CA certificate of an https -csm")
	delay := flag.Duration("restart-delay", 100*time.Millisecond, "how long the stand-in restart takes on a node")
	readyFile := flag.String("ready-file", "", "file to write the client config path to once every node answers")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s -dir DIR [flags] [NCN host range...]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *dir == "" {
		fatalf("-dir is required")
	}
	ncns, err := hostrange.ExpandAll(flag.Args())
	if err != nil {
		fatalf("NCN host ranges: %v", err)
	}
	hc, err := httpClient(*csmCA)
	if err != nil {
		fatalf("%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	fleet, err := sshtest.Start(startCtx, sshtest.Options{Dir: *dir, Nodes: *computes, RestartDelay: *delay})
	if err == nil && len(ncns) > 0 {
		if err = fleet.AddNodes(startCtx, ncns...); err != nil {
			fleet.Stop()
		}
	}
	cancel()
	if err != nil {
		fatalf("%v", err)
	}
	defer fleet.Stop()
	fmt.Printf("sshnodes: %d compute nodes and %d NCNs answer SSH; client config %s, known_hosts %s, key %s\n",
		*computes, len(ncns), fleet.ConfigFile, fleet.KnownHosts, fleet.IdentityFile)
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte(fleet.ConfigFile+"\n"), 0o644); err != nil {
			fleet.Stop()
			fatalf("write -ready-file: %v", err)
		}
	}
	if *csmURL == "" {
		<-ctx.Done()
		return
	}
	playOrca(ctx, fleet, hc, strings.TrimSuffix(*csmURL, "/"))
}

// playOrca watches the stand-in's log and, for each new restart on a
// compute node, has the emulator subscribe it. A failed notice is retried
// on the next pass, so a subscription is never lost to a hiccup.
func playOrca(ctx context.Context, fleet *sshtest.Fleet, hc *http.Client, base string) {
	told := map[string]int{} // host -> restarts already reported
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		restarts, err := fleet.Restarts()
		if err != nil {
			fmt.Fprintln(os.Stderr, "sshnodes:", err)
			continue
		}
		for host, n := range restarts {
			if n <= told[host] {
				continue
			}
			if !strings.HasPrefix(host, "nid") {
				told[host] = n // an NCN: orca there subscribes no compute
				fmt.Printf("sshnodes: orca restarted on %s\n", host)
				continue
			}
			x, err := notify(ctx, hc, base, host)
			if err != nil {
				fmt.Fprintf(os.Stderr, "sshnodes: orca restarted on %s, but telling the emulator failed (retrying): %v\n", host, err)
				continue
			}
			told[host] = n
			fmt.Printf("sshnodes: orca restarted on %s: HMNFD subscription for %s\n", host, x)
		}
	}
}

// notify posts /_csmemu/orca-restarted/HOST and returns the xname the
// emulator subscribed.
func notify(ctx context.Context, hc *http.Client, base, host string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/_csmemu/orca-restarted/"+url.PathEscape(host), nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var out struct {
		Subscribed string `json:"subscribed"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", err
	}
	return out.Subscribed, nil
}

func httpClient(caFile string) (*http.Client, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	if caFile == "" {
		return hc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("-csm-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("-csm-ca: no PEM certificate in " + caFile)
	}
	hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return hc, nil
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sshnodes: "+format+"\n", args...)
	os.Exit(2)
}
