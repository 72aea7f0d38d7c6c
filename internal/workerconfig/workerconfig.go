// Package workerconfig writes the worker configuration of the local systems
// this project runs: the demo (hack/demo.sh, through hack/workerconfig) and
// the e2e, chaos, webui and deploy tests. A configuration is built as a
// config.Config (the worker's own type, so a renamed key breaks the build
// here, not a test run) and written as only the keys that differ from
// config.Default(): a file says what its system changes, and loads through
// config.Load like an operator's.
package workerconfig

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/config"
	"github.com/csmops/etcd-repopulate/procedures/bssrestore"
	"github.com/csmops/etcd-repopulate/procedures/cps"
	"github.com/csmops/etcd-repopulate/procedures/crus"
	"github.com/csmops/etcd-repopulate/procedures/etcdcluster"
	"github.com/csmops/etcd-repopulate/procedures/fasloader"
	"github.com/csmops/etcd-repopulate/procedures/orca"
	"github.com/csmops/etcd-repopulate/procedures/restartpods"
)

// System is what a worker of a local system is pointed at.
type System struct {
	// Release the worker acts for; empty leaves release: auto (read from
	// the cluster's product catalog).
	Release api.Release
	// CSMURL is the CSM API emulator's base URL; CABundle is its CA's PEM
	// file (empty for plain http).
	CSMURL, CABundle string
	// The Keycloak client secret is in SecretFile, or else in the key of
	// SecretKube; neither keeps the default (CSM's admin-client-auth).
	SecretFile string
	SecretKube *config.KubeSecret
	// SSHConfig, KnownHosts and Identity are the sshd fleet's client files
	// (empty SSHConfig: no fleet). Identity may be empty where SSHConfig
	// names the key.
	SSHConfig, KnownHosts, Identity string
}

// Endpoints is the runbook's configuration pointed at s, with every
// timing left at its default.
func Endpoints(s System) config.Config {
	c := config.Default()
	if s.Release != "" {
		c.Release = s.Release
	}
	c.CSM.BaseURL, c.CSM.CABundle = s.CSMURL, s.CABundle
	switch {
	case s.SecretFile != "":
		c.CSM.ClientSecret = config.SecretRef{File: s.SecretFile}
	case s.SecretKube != nil:
		ks := *s.SecretKube
		c.CSM.ClientSecret = config.SecretRef{Kubernetes: &ks}
	}
	if s.SSHConfig != "" {
		c.SSH.Config = s.SSHConfig
		c.SSH.KnownHosts = []string{s.KnownHosts}
		if s.Identity != "" {
			c.SSH.IdentityFiles = []string{s.Identity}
		}
	}
	return c
}

// FASLoaderJob is the simulated cluster's FAS loader Job
// (simcluster.FASLoaderJob; not imported, so that hack/workerconfig stays
// free of the Kubernetes client).
const FASLoaderJob = "cray-fas-loader"

// Short is Endpoints with the timings of a test system, where everything
// answers in seconds: waits poll every 300ms and a lost worker is noticed
// after a 4s heartbeat; each service's wait is bounded by wait. The FAS
// loader is the simulated cluster's Job, as at a site whose FAS still runs
// it as one: the Job procedure has the steps to kill a worker in.
func Short(s System, wait time.Duration) config.Config {
	c := Endpoints(s)
	c.PollInterval = config.Duration(300 * time.Millisecond)
	c.HeartbeatTimeout = config.Duration(4 * time.Second)
	c.DeleteTimeout = config.Duration(time.Minute)
	c.ActivityAttempts = 3
	// Under a third of heartbeatTimeout: config refuses more.
	c.CSM.Timeout = config.Duration(1200 * time.Millisecond)
	c.SSH.Concurrency = 64
	c.SSH.ConnectTimeout = config.Duration(5 * time.Second)
	c.SSH.CommandTimeout = config.Duration(30 * time.Second)
	// By the kind of settings, so that a service added to the catalog
	// gets the tests' waits too.
	w := config.Duration(wait)
	for _, settings := range c.Services {
		switch s := settings.(type) {
		case *bssrestore.BSSSettings:
			s.CompleteTimeout = w
		case *fasloader.FASSettings:
			s.Job, s.CompleteTimeout = FASLoaderJob, w
		case *restartpods.PodSettings:
			s.ReadyTimeout = w
		case *crus.CRUSSettings:
			s.ReadyTimeout, s.SessionPoll, s.StuckAfter = w, config.Duration(200*time.Millisecond), config.Duration(2*time.Second)
		case *etcdcluster.EtcdClusterSettings:
			s.RunningTimeout = w
		case *orca.HMNFDSettings:
			s.VerifyTimeout = config.Duration(time.Minute)
		}
	}
	return c
}

// Demo is the demo's configuration (hack/demo.sh): a person watches it, so
// waits poll less often than the tests' and CRUS calls a session stuck
// after 20s. The nine services' run restarts orca on the computes and on
// ncnGroups in batches of 8; cps reboots cpsNodes with cpsTemplate, named
// here rather than derived from BOS: the run restores BOS's templates in
// parallel, so at its start BOS may not list them yet.
func Demo(s System, ncnGroups, cpsNodes []string, cpsTemplate string) config.Config {
	c := Short(s, 2*time.Minute)
	c.PollInterval = config.Duration(500 * time.Millisecond)
	c.HeartbeatTimeout = config.Duration(10 * time.Second)
	c.CSM.Timeout = config.Duration(3 * time.Second)
	c.SSH.Concurrency = 32
	crus := CRUS(c)
	crus.SessionPoll, crus.StuckAfter = config.Duration(500*time.Millisecond), config.Duration(20*time.Second)
	h := HMNFD(c)
	h.NCNGroups, h.BatchSize = ncnGroups, 8
	cps := CPS(c)
	cps.Nodes, cps.Template = cpsNodes, cpsTemplate
	cps.ShutdownTimeout, cps.BootTimeout = config.Duration(2*time.Minute), config.Duration(2*time.Minute)
	return c
}

// Render writes c as YAML: the keys whose values differ from
// config.Default(). It refuses a c that does not validate, or that would
// not read back as c.
func Render(c config.Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("workerconfig: the configuration does not validate: %w", err)
	}
	have, err := asMap(c)
	if err != nil {
		return nil, err
	}
	defaults, err := asMap(config.Default())
	if err != nil {
		return nil, err
	}
	data, err := yaml.Marshal(changed(have, defaults, ""))
	if err != nil {
		return nil, fmt.Errorf("workerconfig: %w", err)
	}
	back, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("workerconfig: the written configuration does not load: %w\n%s", err, data)
	}
	back.Warnings = c.Warnings
	if !reflect.DeepEqual(back, c) {
		return nil, fmt.Errorf("workerconfig: the written configuration reads back different:\n%s", data)
	}
	return data, nil
}

// Write renders c into the file path.
func Write(path string, c config.Config) error {
	data, err := Render(c)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// Clone is a copy of c that shares nothing with it: a Config's services are
// pointers, so an assigned copy changes the original's. c must validate.
func Clone(c config.Config) config.Config {
	data, err := json.Marshal(c)
	if err == nil {
		var out config.Config
		if out, err = parse(data); err == nil {
			out.Warnings = slices.Clone(c.Warnings)
			return out
		}
	}
	panic(fmt.Sprintf("workerconfig: clone: %v", err)) // c did not validate: the caller's bug
}

// parse reads a file's data over the defaults, as config.Load does.
func parse(data []byte) (config.Config, error) {
	c := config.Default()
	return c, config.Parse(data, &c)
}

// wholeKeys are written whole when they differ: the file replaces the
// default secret source rather than merging into it (config.Parse).
var wholeKeys = map[string]bool{"csm.clientSecret": true}

// changed returns the entries of have that differ from defaults, descending
// into objects; path is have's key path.
func changed(have, defaults map[string]any, path string) map[string]any {
	out := map[string]any{}
	for k, v := range have {
		key := k
		if path != "" {
			key = path + "." + k
		}
		d := defaults[k]
		if reflect.DeepEqual(v, d) {
			continue
		}
		vm, vok := v.(map[string]any)
		dm, dok := d.(map[string]any)
		if vok && dok && !wholeKeys[key] {
			if sub := changed(vm, dm, key); len(sub) > 0 {
				out[k] = sub
			}
			continue
		}
		out[k] = v
	}
	return out
}

// asMap is c as the file's keys: the JSON the YAML is decoded through.
func asMap(c config.Config) (map[string]any, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("workerconfig: %w", err)
	}
	var m map[string]any
	return m, json.Unmarshal(data, &m)
}

// HMNFD, CRUS, CPS and FAS are the settings of the services the local
// systems change most: pointers into c's services.
func HMNFD(c config.Config) *orca.HMNFDSettings {
	return config.SettingsOf[*orca.HMNFDSettings](c, api.HMNFD)
}

func CRUS(c config.Config) *crus.CRUSSettings {
	return config.SettingsOf[*crus.CRUSSettings](c, api.CRUS)
}

func CPS(c config.Config) *cps.CPSSettings {
	return config.SettingsOf[*cps.CPSSettings](c, api.CPS)
}

func FAS(c config.Config) *fasloader.FASSettings {
	return config.SettingsOf[*fasloader.FASSettings](c, api.FAS)
}
