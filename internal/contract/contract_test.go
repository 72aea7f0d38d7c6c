package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"sigs.k8s.io/yaml"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/csm"
	"github.com/csmops/etcd-repopulate/internal/csmemu"
)

// specDir is ../shared/csm-specs seen from this package's directory (CI
// has ../shared beside the clone). A missing file fails the test.
const specDir = "../../../shared/csm-specs"

// spec is one definition file and the gateway prefix its paths are under.
type spec struct {
	file, prefix string
}

// Prefixes of the API gateway (CSM-APIS.md: each service's ingress).
const (
	bosPrefix     = "/apis/bos"
	hmnfdV1Prefix = "/apis/hmnfd/hmi/v1"
	hmnfdV2Prefix = "/apis/hmnfd/hmi/v2"
	hsmPrefix     = "/apis/smd/hsm/v2"
	crusPrefix    = "/apis/crus"
	fasPrefix     = "/apis/fas/v1"
	cpsPrefix     = "/apis/v2/cps"
	bssPrefix     = "/apis/bss/boot/v1"
)

// Release → definitions (csm-specs/README.md). Where the release's exact
// version is not among the files:
//   - HMNFD on CSM 1.2–1.5 (1.14.0, 1.18.0, 1.21.0): 1.24.0, the newest;
//     CSM-APIS.md §3.1 finds the routes unchanged from 1.14.0 to 1.21.0.
//   - FAS on CSM 1.2–1.5 (1.19.0 … 1.33.0): 1.42.0, not 1.7.15: the five
//     loader endpoints are the same in both, but actions carry errors[]
//     from 1.19.0 on (CSM-APIS.md §6.2), which only 1.42.0 describes.
//   - CRUS on 1.2–1.4: 1.6.24; its API is unchanged through 1.11.2 (§5).
//   - HSM: smd 1.28.25 on every release; the Components query is unchanged
//     (§4).
//   - BSS on CSM 1.2–1.6 (1.14.0, 1.21.0, 1.22.0, 1.26.0, 1.28.0; charts
//     2.0.4 … 3.2.4 in csm@v1.2.0 … v1.6.0-rc.3 manifests/sysmgmt.yaml,
//     hms-bss-charts cray-hms-bss.compatibility.yaml): 1.7.7's definition;
//     the bootparameters handlers keep their verbs, statuses and BootParams
//     shape through 1.28.0 (hms-bss default_api.go, pkg/bssTypes).
//
// CSM 1.6 (BOS 2.30.5) is not covered: its BOS definition is not among
// the files.
var releases = map[api.Release][]spec{
	api.CSM10: {
		{"bos-1.7.103-openapi.yaml", bosPrefix}, {"hmnfd-1.8.5-swagger.yaml", hmnfdV1Prefix},
		{"fas-1.7.15-swagger.yaml", fasPrefix}, {"crus-1.6.24-openapi.yaml", crusPrefix},
		{"smd-1.28.25-swagger-v2.yaml", hsmPrefix}, {"cps-2.2.0-openapi.yaml", cpsPrefix},
		{"bss-1.7.7-swagger.yaml", bssPrefix},
	},
	api.CSM12: {
		{"bos-1.10.23-openapi.yaml", bosPrefix}, {"hmnfd-1.24.0-swagger-v1.yaml", hmnfdV1Prefix},
		{"hmnfd-1.24.0-swagger-v2.yaml", hmnfdV2Prefix}, {"fas-1.42.0-swagger.yaml", fasPrefix},
		{"crus-1.6.24-openapi.yaml", crusPrefix}, {"smd-1.28.25-swagger-v2.yaml", hsmPrefix},
		{"cps-2.2.0-openapi.yaml", cpsPrefix}, {"bss-1.7.7-swagger.yaml", bssPrefix},
	},
	api.CSM13: {
		{"bos-2.0.5-openapi.yaml", bosPrefix}, {"hmnfd-1.24.0-swagger-v1.yaml", hmnfdV1Prefix},
		{"hmnfd-1.24.0-swagger-v2.yaml", hmnfdV2Prefix}, {"fas-1.42.0-swagger.yaml", fasPrefix},
		{"crus-1.6.24-openapi.yaml", crusPrefix}, {"smd-1.28.25-swagger-v2.yaml", hsmPrefix},
		{"cps-2.2.0-openapi.yaml", cpsPrefix}, {"bss-1.7.7-swagger.yaml", bssPrefix},
	},
	api.CSM15: {
		{"bos-2.10.2-openapi.yaml", bosPrefix}, {"hmnfd-1.24.0-swagger-v1.yaml", hmnfdV1Prefix},
		{"hmnfd-1.24.0-swagger-v2.yaml", hmnfdV2Prefix}, {"fas-1.42.0-swagger.yaml", fasPrefix},
		{"smd-1.28.25-swagger-v2.yaml", hsmPrefix}, {"bss-1.7.7-swagger.yaml", bssPrefix},
	},
}

// difference is a place where HPE's running service and its definition
// disagree; the service wins (csm-specs/README.md, CSM-APIS.md), so the
// check named here is not made. Each is listed once, with the definition
// files that have it.
type difference struct {
	files    []string
	method   string
	path     string // the definition's path template
	response bool   // the answer differs (else the request)
	status   int    // of the answer; 0: any
	body     string // the answer's body, trimmed; "": any
	reason   string
}

var (
	bos1x = []string{"bos-1.7.103-openapi.yaml", "bos-1.10.23-openapi.yaml"}
	fas   = []string{"fas-1.7.15-swagger.yaml", "fas-1.42.0-swagger.yaml"}
	hmnfd = []string{"hmnfd-1.8.5-swagger.yaml", "hmnfd-1.24.0-swagger-v2.yaml"}
	bss   = []string{"bss-1.7.7-swagger.yaml"}
)

var differences = []difference{
	{bss, "GET", "/bootparameters", true, 200, "null",
		`BSS lists no boot parameters as null, not an array: BootparametersGetAll encodes a nil list (hms-bss default_api.go, v1.7.7 to v1.28.0)`},
	{hmnfd, "GET", "/subscriptions", true, 0, "",
		`HMNFD lists what it stored in its etcd key, lower-case ("ready", "compute"), outside the spec's enums; an empty list is {"SubscriptionList":null} (observed/README.md)`},
	{fas, "GET", "/loader", true, 0, "",
		`loaderRunList items are {"loaderRunID": ...} objects in FAS's code (internal/presentation/loader.go), plain strings in its swagger`},
	{fas, "GET", "/images", true, 0, "",
		`the swagger's ImageGet requires "type" and "firmware", members it does not define and FAS's code never sends (internal/presentation/images.go)`},
	{fas, "GET", "/loader/{loaderRunID}", true, 404, "",
		`FAS answers errors as application/problem+json (internal/api/api_helpers.go WriteHeaders); its swagger says application/error`},
	{bos1x, "POST", "/v1/sessiontemplate", true, 0, "",
		`BOS 1.x answers 201 with its etcd key "/sessionTemplate/<name>" (controllers/v1/sessiontemplate.py), not 200 with the template`},
	{bos1x, "POST", "/v1/session", true, 0, "",
		`BOS answers 201 and its links carry jobId and type (controllers/v1/session.py); the spec says 200 and Link has only rel and href`},
	{bos1x, "GET", "/v1/session", true, 0, "",
		`GET /v1/session lists session ids (strings), not Session objects (controllers/v1/session.py get_v1_sessions)`},
	{bos1x, "GET", "/v1/session/{session_id}", true, 0, "",
		`get_v1_session returns the stored record plus status metadata (status_link, start_time, complete, in_progress, error_count), members the Session schema forbids`},
}

type exchange struct {
	method, path, query string
	header              http.Header
	body                []byte
	status              int
	respHeader          http.Header
	respBody            []byte
}

// recorder keeps every request sent to the emulator and its answer.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	log  []exchange
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	rw := httptest.NewRecorder()
	rec.next.ServeHTTP(rw, r)
	res := rw.Result()
	respBody, _ := io.ReadAll(res.Body)
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	w.Write(respBody)
	rec.mu.Lock()
	rec.log = append(rec.log, exchange{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, header: r.Header.Clone(), body: body,
		status: res.StatusCode, respHeader: res.Header, respBody: respBody})
	rec.mu.Unlock()
}

func (rec *recorder) exchanges() []exchange {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.log)
}

type loadedSpec struct {
	spec
	router routers.Router
}

var (
	specMu    sync.Mutex
	specCache = map[string]routers.Router{}
)

// load reads a definition (Swagger 2.0 through kin-openapi's converter)
// and builds a router over its paths, with no servers: the test strips the
// gateway prefix itself.
func load(t *testing.T, file string) routers.Router {
	t.Helper()
	specMu.Lock()
	defer specMu.Unlock()
	if r, ok := specCache[file]; ok {
		return r
	}
	path := filepath.Join(specDir, file)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("HPE's definition %s: %v (CI has ../shared beside the clone; the contract cannot be checked without it)", path, err)
	}
	var doc *openapi3.T
	if bytes.Contains(raw, []byte("swagger: '2.0'")) || bytes.Contains(raw, []byte(`swagger: "2.0"`)) {
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var doc2 openapi2.T
		if err := json.Unmarshal(js, &doc2); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc, err = openapi2conv.ToV3(&doc2); err != nil {
			t.Fatalf("%s: convert Swagger 2.0: %v", path, err)
		}
	} else {
		loader := openapi3.NewLoader()
		if doc, err = loader.LoadFromData(raw); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	doc.Servers = nil
	uniqueOperationIDs(doc)
	r, err := legacy.NewRouter(doc, openapi3.DisableExamplesValidation(), openapi3.DisableSchemaDefaultsValidation(),
		openapi3.DisableSchemaPatternValidation(), openapi3.AllowExtraSiblingFields("description", "example", "x-private"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	specCache[file] = r
	return r
}

// uniqueOperationIDs renames, in memory, an operationId the definition
// repeats: HPE's bss-1.7.7 gives GET /user-data and POST /phone-home the
// same one (user_data_get), which kin-openapi's document check refuses.
// Operation ids play no part in validating requests and answers.
func uniqueOperationIDs(doc *openapi3.T) {
	seen := map[string]bool{}
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		for _, method := range []string{"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"} {
			op := item.GetOperation(method)
			if op == nil || op.OperationID == "" {
				continue
			}
			if seen[op.OperationID] {
				op.OperationID += " " + method + " " + path
			}
			seen[op.OperationID] = true
		}
	}
}

// TestClientAndEmulatorFollowHPEDefinitions: per release, every request
// the client sends validates against that release's definitions, and every
// answer of the emulator against the response schema.
func TestClientAndEmulatorFollowHPEDefinitions(t *testing.T) {
	used := map[int]bool{}
	var usedMu sync.Mutex
	ran := 0
	all := []api.Release{api.CSM10, api.CSM12, api.CSM13, api.CSM15}
	for _, rel := range all {
		t.Run(string(rel), func(t *testing.T) {
			ran++
			specs := make([]loadedSpec, 0, len(releases[rel]))
			for _, s := range releases[rel] {
				specs = append(specs, loadedSpec{s, load(t, s.file)})
			}
			emu := csmemu.New(csmemu.Options{Release: rel, Components: csmemu.ComputeNodes(3)})
			rec := &recorder{next: emu}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			cl, err := csm.New(csm.Config{BaseURL: srv.URL, Secret: csm.SecretValue(csmemu.DefaultClientSecret), Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			exercise(t, emu, cl.WithAPIs(rel.APIs()), rel)
			n := 0
			for _, x := range rec.exchanges() {
				if !strings.HasPrefix(x.path, "/apis/") {
					continue
				}
				n++
				for _, d := range check(t, specs, x) {
					usedMu.Lock()
					used[d] = true
					usedMu.Unlock()
				}
			}
			t.Logf("%s: %d requests checked", rel, n)
		})
	}
	if t.Failed() || ran < len(all) {
		return // a release was left out (-run) or failed early
	}
	for i, d := range differences {
		if !used[i] {
			t.Errorf("difference %s %s in %s (%s) was never met: remove it from the list", d.method, d.path, strings.Join(d.files, ", "), d.reason)
		}
	}
}

// check validates one exchange and returns the differences it skipped.
func check(t *testing.T, specs []loadedSpec, x exchange) []int {
	t.Helper()
	var s *loadedSpec
	for i := range specs {
		if strings.HasPrefix(x.path, specs[i].prefix+"/") || x.path == specs[i].prefix {
			if s == nil || len(specs[i].prefix) > len(s.prefix) {
				s = &specs[i]
			}
		}
	}
	what := x.method + " " + x.path
	if x.query != "" {
		what += "?" + x.query
	}
	if s == nil {
		// An API this release does not have: the emulator must say so.
		if x.status != http.StatusNotFound {
			t.Errorf("%s: no definition of this API in the release, yet the emulator answered %d", what, x.status)
		}
		return nil
	}
	u := strings.TrimPrefix(x.path, s.prefix)
	if u == "" {
		u = "/"
	}
	if x.query != "" {
		u += "?" + x.query
	}
	req := httptest.NewRequest(x.method, u, bytes.NewReader(x.body))
	req.Header = x.header.Clone()
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		// Only a probe of an API version the release lacks may miss the
		// definition, and the emulator must answer it 404.
		if x.status != http.StatusNotFound {
			t.Errorf("%s: not in %s (%v), yet the emulator answered %d", what, s.file, err, x.status)
		}
		return nil
	}
	var skipped []int
	skip := func(response bool) bool {
		for i, d := range differences {
			if slices.Contains(d.files, s.file) && d.method == x.method && d.path == route.Path && d.response == response &&
				(!response || d.status == 0 || d.status == x.status) && (d.body == "" || d.body == strings.TrimSpace(string(x.respBody))) {
				skipped = append(skipped, i)
				return true
			}
		}
		return false
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if !skip(false) {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("request %s does not follow %s %s %s:\n%v\nbody: %s", what, s.file, x.method, route.Path, err, x.body)
		}
	}
	if !skip(true) {
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: x.status, Header: x.respHeader, Options: opts}
		out.SetBodyBytes(x.respBody)
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Errorf("emulator's answer %d to %s does not follow %s %s %s:\n%v\nbody: %s", x.status, what, s.file, x.method, route.Path, err, x.respBody)
		}
	}
	return skipped
}

// exercise makes every call the activities and the snapshot make, through
// the API versions of rel, and fails on any error.
func exercise(t *testing.T, emu *csmemu.Emulator, c *csm.Client, rel api.Release) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %s: %v", rel, what, err)
		}
	}
	_, err := c.Probe(ctx)
	must("Probe", err)
	_, err = c.ReadyComputeNodes(ctx)
	must("ReadyComputeNodes", err)
	_, err = c.Components(ctx, csm.ComponentQuery{IDs: []string{"x1000c0s0b0n0", "x1000c0s1b0n0"}})
	must("Components", err)
	// The xnames of the computes VerifyComputeSubscriptions checks, any state.
	_, err = c.Components(ctx, csm.ComponentQuery{Types: []string{"Node"}, Roles: []string{"Compute"}})
	must("Components of role Compute", err)

	emu.Subscribe("x1000c0s0b0n0")
	_, err = c.Subscriptions(ctx)
	must("Subscriptions", err)
	_, err = c.HMNFDReady(ctx)
	must("HMNFDReady", err)

	if rel != api.CSM15 {
		id := emu.AddCRUSSession(csmemu.ExampleCRUSSession())
		_, err = c.CRUSSessions(ctx)
		must("CRUSSessions", err)
		_, err = c.CRUSSession(ctx, id)
		must("CRUSSession", err)
	}

	_, err = c.FASLoaderStatus(ctx)
	must("FASLoaderStatus", err)
	run, err := c.FASLoadNexus(ctx)
	must("FASLoadNexus", err)
	_, err = c.FASLoaderStatus(ctx)
	must("FASLoaderStatus after a run", err)
	_, err = c.FASLoaderRun(ctx, run)
	must("FASLoaderRun", err)
	_, err = c.FASImages(ctx)
	must("FASImages", err)
	emu.SetFASActions([]csm.FASAction{{ActionID: "a-1", State: "running", Command: csm.FASCommand{Version: "latest", Tag: "default", OverrideDryrun: true}}})
	_, err = c.FASActions(ctx)
	must("FASActions", err)

	var tmpl csm.SessionTemplate
	must("template", json.Unmarshal([]byte(`{"name":"compute","description":"computes","enable_cfs":true,"cfs":{"configuration":"cos-config"},
	  "boot_sets":{"compute":{"path":"s3://boot-images/abc/manifest.json","type":"s3","etag":"e1","kernel_parameters":"console=ttyS0",
	  "node_list":["x1000c0s0b0n0","x1000c0s1b0n0"],"rootfs_provider":"cpss3","rootfs_provider_passthrough":"dvs:api-gw-service-nmn.local:300:nmn0"}},
	  "links":[{"rel":"self","href":"/v2/sessiontemplates/compute"}]}`), &tmpl))
	_, err = c.PutSessionTemplate(ctx, tmpl)
	must("PutSessionTemplate", err)
	tmpls, err := c.SessionTemplates(ctx)
	must("SessionTemplates", err)
	if len(tmpls) != 1 {
		t.Fatalf("%s: %d templates, want 1", rel, len(tmpls))
	}
	_, err = c.SessionTemplate(ctx, "compute")
	must("SessionTemplate", err)
	// Refusals are answers too: their bodies are checked like the rest.
	if _, err := c.SessionTemplate(ctx, "missing"); csm.KindOf(err) != csm.NotFound {
		t.Errorf("%s: SessionTemplate(missing): %v, want NotFound", rel, err)
	}
	if _, err := c.FASLoaderRun(ctx, "00000000-0000-4000-8000-000000000000"); csm.KindOf(err) != csm.NotFound {
		t.Errorf("%s: FASLoaderRun(unknown): %v, want NotFound", rel, err)
	}
	if rel.APIs().BOSVersion() == api.APIv2 {
		_, err = c.ValidateSessionTemplate(ctx, "compute")
		must("ValidateSessionTemplate", err)
	} else {
		_, err = c.BOSSessionIDs(ctx)
		must("BOSSessionIDs", err)
	}
	s, err := c.CreateBOSSession(ctx, csm.BOSSessionRequest{Name: "contract-shutdown", TemplateName: "compute", Operation: "shutdown", Limit: "x1000c0s0b0n0"})
	must("CreateBOSSession", err)
	_, err = c.BOSSession(ctx, s.Name)
	must("BOSSession", err)

	// BSS: the snapshot lists the boot parameters, the rebuild empties
	// them, a restore puts node entries back.
	bps, err := c.BootParameters(ctx)
	must("BootParameters", err)
	emu.WipeBSS()
	_, err = c.BootParameters(ctx)
	must("BootParameters after the rebuild", err)
	for _, b := range bps {
		if b.Host() != "" {
			must("PutBootParameters", c.PutBootParameters(ctx, b))
		}
	}

	if rel != api.CSM15 {
		emu.SetCPSContents([]csm.CPSContent{{S3Path: "s3://boot-images/abc/rootfs", Etag: "e1", Transports: []string{"dvs"}}})
		contents, err := c.CPSContents(ctx)
		must("CPSContents", err)
		for _, ct := range contents {
			_, err = c.CPSTransports(ctx, ct.S3Path, "dvs", ct.Etag)
			must("CPSTransports", err)
		}
	}
}
