// Command csmemu runs the CSM API gateway emulator (internal/csmemu) for the
// demo: a Keycloak token endpoint plus the HSM, HMNFD, CRUS, FAS, BOS v2 and
// CPS paths, seeded with Ready compute nodes and, after an etcd rebuild, no
// HMNFD subscriptions. It prints its base URL, writes it to -url-file once
// listening, and runs until SIGTERM or SIGINT.
//
// The unauthenticated control endpoints under /_csmemu/ let the demo stand in
// for what it cannot do for real, e.g. restarting orca on the nodes:
//
//	curl -X POST $URL/_csmemu/subscribe-ready-compute
//	curl -X POST $URL/_csmemu/subscribe/x1000c0s0b0n0
//	curl -X POST "$URL/_csmemu/fail?prefix=/apis/smd&status=503&times=2"
//	curl -X POST "$URL/_csmemu/fas-busy?n=2"
//	curl -X POST "$URL/_csmemu/bos-timing?step=2s"
//	curl -X POST "$URL/_csmemu/bos-stuck?xname=x1000c0s0b0n0&stuck=true"
//	curl $URL/_csmemu/stats
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

// secretEnv is read when -client-secret is not given.
const secretEnv = "CSMEMU_CLIENT_SECRET"

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0 picks a free one)")
	nodes := flag.Int("nodes", 16, "number of Ready compute nodes in HSM (x1000c0s{n}b0n0, NIDs 1..N)")
	clientID := flag.String("client-id", csm.DefaultClientID, "OAuth2 client id the token endpoint accepts")
	secret := flag.String("client-secret", "", "client secret the token endpoint accepts (default $"+secretEnv+", else "+csmemu.DefaultClientSecret+")")
	ttl := flag.Duration("token-ttl", csmemu.DefaultTokenTTL, "expires_in of issued tokens")
	crus := flag.Bool("crus", true, "serve CRUS (false: /apis/crus/* answers 404, as on CSM 1.5+)")
	crusStuck := flag.Bool("crus-stuck", false, "the CRUS session never progresses (default: it progresses one step per GET to completion)")
	subscribed := flag.Bool("subscribed", false, "start with every Ready compute node subscribed in HMNFD (default: none, as after an etcd rebuild)")
	fasBusy := flag.Int("fas-busy", 0, "answer 429 to the first N FAS loader nexus POSTs")
	bosStep := flag.Duration("bos-step", time.Second, "BOS v2 session pacing: pending for one step, node HSM States change one step apart")
	useTLS := flag.Bool("tls", false, "serve HTTPS with a generated CA (see -ca-dir)")
	caDir := flag.String("ca-dir", "", "with -tls: directory to write the CA certificate to (csmemu-ca.pem)")
	urlFile := flag.String("url-file", "", "file to write the base URL to once listening")
	flag.Parse()

	if *secret == "" {
		*secret = os.Getenv(secretEnv)
	}
	if *nodes < 0 {
		fatalf("-nodes must be >= 0")
	}
	if *caDir != "" && !*useTLS {
		fatalf("-ca-dir needs -tls")
	}

	emu := csmemu.New(csmemu.Options{
		ClientID:     *clientID,
		ClientSecret: *secret,
		TokenTTL:     *ttl,
		Components:   csmemu.ComputeNodes(*nodes),
		CRUSDisabled: !*crus,
		BOSStepDelay: *bosStep,
		ControlAPI:   true,
	})
	if *crus {
		s := csmemu.ExampleCRUSSession()
		if *crusStuck {
			emu.AddCRUSSession(s)
		} else {
			// The example is in step 0's BOOTING phase: continue from there.
			emu.AddCRUSSession(s, csmemu.CRUSScript(1)[3:]...)
		}
	}
	if *subscribed {
		emu.SubscribeReadyCompute()
	}
	emu.SetFASLoaderBusy(*fasBusy)
	emu.SetCPSTransports([]csm.CPSTransport{{ReadyForMount: true}})

	url, err := emu.Listen(*listen, *useTLS)
	if err != nil {
		fatalf("%v", err)
	}
	if *caDir != "" {
		p, err := emu.CAFile(*caDir)
		if err != nil {
			fatalf("%v", err)
		}
		fmt.Printf("csmemu: CA certificate: %s\n", p)
	}
	fmt.Printf("csmemu: CSM API gateway emulator listening on %s (client_id %s, %d Ready compute nodes, CRUS %s)\n",
		url, *clientID, *nodes, map[bool]string{true: "on", false: "off"}[*crus])
	if *urlFile != "" {
		if err := os.WriteFile(*urlFile, []byte(url+"\n"), 0o644); err != nil {
			emu.Close()
			fatalf("write -url-file: %v", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := emu.Shutdown(sctx); err != nil {
		emu.Close()
	}
	fmt.Println("csmemu: stopped")
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "csmemu: "+format+"\n", args...)
	os.Exit(2)
}
