// Command csmemu runs the CSM API gateway emulator (internal/csmemu) for the
// demo: a Keycloak token endpoint plus the HSM, HMNFD, CRUS, FAS, BOS and
// CPS paths, seeded with Ready compute nodes and, after an etcd rebuild, no
// HMNFD subscriptions. It prints its base URL, writes it to -url-file once
// listening, and runs until SIGTERM or SIGINT.
//
// With -seed it is a running CSM system before an etcd rebuild: every Ready
// compute subscribed in HMNFD, BOS v2 session templates (the first
// -cps-nodes computes boot their root file system from CPS), CPS content
// and transports in use, FAS images, BSS boot parameters for every compute.
// Without it BSS, like HMNFD, holds nothing.
//
// The unauthenticated control endpoints under /_csmemu/ let the demo stand in
// for what it cannot do for real, e.g. restarting orca on the nodes or
// rebuilding etcd:
//
//	curl -X POST $URL/_csmemu/subscribe-ready-compute
//	curl -X POST $URL/_csmemu/subscribe/x1000c0s0b0n0
//	curl -X POST $URL/_csmemu/orca-restarted/nid000001-nmn
//	curl -X POST $URL/_csmemu/clear-subscriptions
//	curl -X POST $URL/_csmemu/clear-templates
//	curl -X POST $URL/_csmemu/bss-wipe
//	curl -X POST "$URL/_csmemu/fail?prefix=/apis/smd&status=503&times=2"
//	curl -X POST "$URL/_csmemu/fas-busy?n=2"
//	curl -X POST "$URL/_csmemu/bos-timing?step=2s"
//	curl -X POST "$URL/_csmemu/bos-stuck?xname=x1000c0s0b0n0&stuck=true"
//	curl -X POST $URL/_csmemu/crus-restart-clock
//	curl $URL/_csmemu/stats
//
// The same endpoints without curl (the demo runs where curl may be
// missing): csmemu control -url-file F [-ca CA] clear-templates clear-subscriptions
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

// secretEnv is read when -client-secret is not given.
const secretEnv = "CSMEMU_CLIENT_SECRET"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "control" {
		control(os.Args[2:])
		return
	}
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0 picks a free one)")
	nodes := flag.Int("nodes", 16, "number of Ready compute nodes in HSM (x1000c0s{n}b0n0, NIDs 1..N)")
	clientID := flag.String("client-id", csm.DefaultClientID, "OAuth2 client id the token endpoint accepts")
	secret := flag.String("client-secret", "", "client secret the token endpoint accepts (default $"+secretEnv+", else "+csmemu.DefaultClientSecret+")")
	ttl := flag.Duration("token-ttl", csmemu.DefaultTokenTTL, "expires_in of issued tokens")
	release := flag.String("release", string(csmemu.DefaultRelease), "CSM release whose APIs to serve: csm-1.0, csm-1.2, csm-1.3 (csm-1.4), csm-1.5, csm-1.6")
	crus := flag.Bool("crus", true, "serve CRUS (false: /apis/crus/* answers 404, as on CSM 1.5+ whatever this says)")
	crusStuck := flag.Bool("crus-stuck", false, "the CRUS session never progresses (default: it progresses one step per GET to completion)")
	crusStep := flag.Duration("crus-step", 0, "CRUS session pacing: each step of the session's script is due this long after the previous one, the first this long after the session is first read (0: one step per GET)")
	subscribed := flag.Bool("subscribed", false, "start with every Ready compute node subscribed in HMNFD (default: none, as after an etcd rebuild)")
	fasBusy := flag.Int("fas-busy", 0, "answer 429 to the first N FAS loader nexus POSTs")
	bosStep := flag.Duration("bos-step", time.Second, "BOS v2 session pacing: pending for one step, node HSM States change one step apart")
	seed := flag.Bool("seed", false, "seed a running CSM system: HMNFD subscriptions, BOS session templates (in the release's API shape), CPS content, FAS images, BSS boot parameters")
	cpsNodes := flag.Int("cps-nodes", 4, "with -seed: how many computes (the first) boot from CPS (rootfs_provider cpss3)")
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
	if *cpsNodes < 0 || *cpsNodes > *nodes {
		fatalf("-cps-nodes must be 0..-nodes (%d)", *nodes)
	}
	if *caDir != "" && !*useTLS {
		fatalf("-ca-dir needs -tls")
	}

	rel, err := api.ParseRelease(*release)
	if err != nil || rel == api.ReleaseAuto {
		fatalf("-release: %q is not a CSM release: give one of csm-1.0, csm-1.2, csm-1.3, csm-1.5, csm-1.6", *release)
	}
	emu := csmemu.New(csmemu.Options{
		Release:       rel,
		ClientID:      *clientID,
		ClientSecret:  *secret,
		TokenTTL:      *ttl,
		Components:    csmemu.ComputeNodes(*nodes),
		CRUSDisabled:  !*crus,
		BOSStepDelay:  *bosStep,
		CRUSStepDelay: *crusStep,
		ControlAPI:    true,
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
	if *subscribed || *seed {
		emu.SubscribeReadyCompute()
	}
	emu.SetFASLoaderBusy(*fasBusy)
	emu.SetCPSTransports([]csm.CPSTransport{{ReadyForMount: true}})
	if *seed {
		if err := seedSystem(emu, rel, *nodes, *cpsNodes); err != nil {
			fatalf("seed: %v", err)
		}
	} else {
		emu.WipeBSS() // after the rebuild, as HMNFD
	}

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
	fmt.Printf("csmemu: CSM API gateway emulator listening on %s (%s APIs, client_id %s, %d Ready compute nodes, CRUS %s)\n",
		url, emu.Release(), *clientID, *nodes, map[bool]string{true: "on", false: "off"}[*crus])
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

// cpsImage is the COS image the seeded CPS content and templates name.
const cpsImage = "s3://boot-images/5b1a4b7e-cos-2.0.30/manifest.json"

// seedSystem adds what an etcd rebuild wipes or CPS needs: session
// templates as a COS release installs them (compute nodes 1..cpsNodes on
// CPS, the rest on the same image without it) and a UAN template, the CPS
// content of the COS root file system, and FAS's images. Templates have the
// shape the release's BOS stores: BOS v1 boot sets have no arch.
func seedSystem(emu *csmemu.Emulator, rel api.Release, nodes, cpsNodes int) error {
	arch := "X86"
	if rel.APIs().BOSVersion() == api.APIv1 {
		arch = ""
	}
	enable := true
	xnames := func(from, to int) []string {
		var out []string
		for _, c := range csmemu.ComputeNodes(nodes)[from:to] {
			out = append(out, c.ID)
		}
		return out
	}
	set := func(list []string, rootfs, passthrough string) csm.BootSet {
		return csm.BootSet{
			Path: cpsImage, Type: "s3", Etag: "c0ffee3b1e5a9d7f", Arch: arch, NodeList: list,
			KernelParameters:          "console=ttyS0,115200 bad_page=panic crashkernel=340M hugepagelist=2m-2g intel_iommu=off",
			RootfsProvider:            rootfs,
			RootfsProviderPassthrough: passthrough,
		}
	}
	templates := []csm.SessionTemplate{
		{Name: "cos-2.0.30-cps", Description: "COS computes, root file system projected by CPS (DVS)", EnableCFS: &enable,
			CFS:      &csm.CFSParameters{Configuration: "cos-config-2.0.30"},
			BootSets: map[string]csm.BootSet{"compute": set(xnames(0, cpsNodes), "cpss3", "dvs:api-gw-service-nmn.local:300:nmn0")}},
		{Name: "uan-2.3.0", Description: "User access nodes", EnableCFS: &enable,
			CFS:      &csm.CFSParameters{Configuration: "uan-config-2.3.0"},
			BootSets: map[string]csm.BootSet{"uan": set([]string{"x3000c0s19b0n0", "x3000c0s21b0n0"}, "", "")}},
	}
	if cpsNodes < nodes {
		templates = append(templates, csm.SessionTemplate{Name: "cos-2.0.30-local", Description: "COS computes, local root file system", EnableCFS: &enable,
			CFS:      &csm.CFSParameters{Configuration: "cos-config-2.0.30"},
			BootSets: map[string]csm.BootSet{"compute": set(xnames(cpsNodes, nodes), "", "")}})
	}
	for _, t := range templates {
		if err := emu.SetSessionTemplate(t); err != nil {
			return err
		}
	}
	if cpsNodes > 0 {
		emu.SetCPSContents([]csm.CPSContent{{S3Path: "s3://boot-images/5b1a4b7e-cos-2.0.30/rootfs", Etag: "c0ffee3b1e5a9d7f"}})
	}
	emu.SetFASImages(csmemu.DefaultFASImages())
	return nil
}

// control POSTs /_csmemu/NAME for each NAME argument to a running
// emulator and prints each answer.
func control(args []string) {
	fs := flag.NewFlagSet("csmemu control", flag.ExitOnError)
	urlFile := fs.String("url-file", "", "file the emulator wrote its base URL to (-url-file)")
	ca := fs.String("ca", "", "CA certificate of an emulator started with -tls")
	fs.Parse(args)
	if *urlFile == "" || fs.NArg() == 0 {
		fatalf("usage: csmemu control -url-file FILE [-ca PEM] ENDPOINT... (e.g. clear-templates, hmnfd-wipe, hmnfd-restart)")
	}
	b, err := os.ReadFile(*urlFile)
	if err != nil {
		fatalf("%v", err)
	}
	base := strings.TrimSpace(string(b))
	hc := &http.Client{Timeout: 10 * time.Second}
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			fatalf("%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fatalf("-ca %s: no PEM certificate", *ca)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	for _, name := range fs.Args() {
		resp, err := hc.Post(base+"/_csmemu/"+strings.TrimPrefix(name, "/"), "", nil)
		if err != nil {
			fatalf("%s: %v", name, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			fatalf("%s: %s %s", name, resp.Status, strings.TrimSpace(string(body)))
		}
		fmt.Printf("csmemu: %s: %s\n", name, strings.TrimSpace(resp.Status+" "+string(body)))
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "csmemu: "+format+"\n", args...)
	os.Exit(2)
}
