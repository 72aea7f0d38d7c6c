package simcluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// TestStagesWithLatencies slows the tools' own kwok stage file down (make
// tools links it into bin/): pod-ready and pod-complete get their delays,
// a Job named apart gets its own pod-complete stage, and every document
// stays valid YAML.
func TestStagesWithLatencies(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "bin", "kwok-stages.yaml"))
	if err != nil {
		t.Fatalf("%v: run hack/install-tools.sh first", err)
	}
	out, err := stagesWithLatencies(string(data), Latencies{PodReady: 1500 * time.Millisecond, JobRun: 2 * time.Second, JobRunFor: map[string]time.Duration{"cray-fas-loader": 8 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	type stage struct {
		Metadata struct{ Name string }
		Spec     struct {
			Delay    struct{ DurationMilliseconds int64 }
			Selector struct {
				MatchExpressions []struct {
					Key, Operator string
					Values        []string
				}
			}
		}
	}
	got := map[string]stage{}
	for _, doc := range strings.Split(out, "\n---\n") {
		var s stage
		if err := yaml.Unmarshal([]byte(doc), &s); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, doc)
		}
		got[s.Metadata.Name] = s
	}
	jobName := func(s stage) string {
		for _, e := range s.Spec.Selector.MatchExpressions {
			if e.Key == `.metadata.labels["job-name"]` {
				return e.Operator + " " + strings.Join(e.Values, ",")
			}
		}
		return ""
	}
	for name, want := range map[string]struct {
		ms  int64
		job string
	}{
		"pod-ready":                    {1500, ""},
		"pod-complete":                 {2000, "NotIn cray-fas-loader"},
		"pod-complete-cray-fas-loader": {8000, "In cray-fas-loader"},
		"pod-delete":                   {0, ""},
	} {
		s, ok := got[name]
		if !ok {
			t.Errorf("no stage %s in\n%s", name, out)
			continue
		}
		if s.Spec.Delay.DurationMilliseconds != want.ms || jobName(s) != want.job {
			t.Errorf("stage %s: delay %d ms, job selector %q; want %d ms, %q", name, s.Spec.Delay.DurationMilliseconds, jobName(s), want.ms, want.job)
		}
	}
	if _, err := stagesWithLatencies("kind: Stage\n", Latencies{PodReady: time.Second}); err == nil {
		t.Error("a stage file without pod-ready and pod-complete was accepted")
	}
}
