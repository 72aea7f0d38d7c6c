package simcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Latencies slow the simulated kubelet (kwok) down to fixed times, for a
// benchmark whose critical path must be known: the zero value is kwok's
// own behaviour (every change at once).
type Latencies struct {
	// PodReady is how long a new pod stays Pending before it runs Ready.
	PodReady time.Duration
	// JobRun is how long a Job's pod runs before it completes, once Ready
	// (a Job takes PodReady + JobRun); JobRunFor overrides it per Job name.
	JobRun    time.Duration
	JobRunFor map[string]time.Duration
}

func (l Latencies) zero() bool { return l.PodReady == 0 && l.JobRun == 0 && len(l.JobRunFor) == 0 }

// stagesWithLatencies rewrites kwok's stage file (stage documents separated
// by "---") so that pod-ready waits l.PodReady and pod-complete waits
// l.JobRun, with one pod-complete stage per Job of l.JobRunFor selected by
// the Job controller's job-name label.
func stagesWithLatencies(stages string, l Latencies) (string, error) {
	docs := strings.Split(stages, "\n---\n")
	var out []string
	found := map[string]bool{}
	names := make([]string, 0, len(l.JobRunFor))
	for name := range l.JobRunFor {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, doc := range docs {
		switch stageName(doc) {
		case "pod-ready":
			found["pod-ready"] = true
			out = append(out, withDelay(doc, l.PodReady))
		case "pod-complete":
			found["pod-complete"] = true
			if len(names) == 0 {
				out = append(out, withDelay(doc, l.JobRun))
				break
			}
			generic := withSelector(doc, "NotIn", names)
			out = append(out, withDelay(generic, l.JobRun))
			for _, name := range names {
				one := strings.Replace(doc, "\n  name: pod-complete\n", "\n  name: pod-complete-"+name+"\n", 1)
				out = append(out, withDelay(withSelector(one, "In", []string{name}), l.JobRunFor[name]))
			}
		default:
			out = append(out, doc)
		}
	}
	for _, want := range []string{"pod-ready", "pod-complete"} {
		if !found[want] {
			return "", fmt.Errorf("kwok stage file has no stage %q to slow down", want)
		}
	}
	return strings.Join(out, "\n---\n"), nil
}

func stageName(doc string) string {
	for _, line := range strings.Split(doc, "\n") {
		if name, ok := strings.CutPrefix(line, "  name: "); ok {
			return strings.TrimSpace(name)
		}
	}
	return ""
}

// withDelay adds spec.delay to a stage document; 0 leaves it as it is.
func withDelay(doc string, d time.Duration) string {
	if d <= 0 {
		return doc
	}
	return strings.Replace(doc, "\nspec:\n", fmt.Sprintf("\nspec:\n  delay:\n    durationMilliseconds: %d\n", d.Milliseconds()), 1)
}

// withSelector adds a match expression on the pod's job-name label.
func withSelector(doc, operator string, values []string) string {
	expr := fmt.Sprintf("    matchExpressions:\n    - key: '.metadata.labels[\"job-name\"]'\n      operator: '%s'\n      values:\n", operator)
	for _, v := range values {
		expr += fmt.Sprintf("      - '%s'\n", v)
	}
	return strings.Replace(doc, "    matchExpressions:\n", expr, 1)
}

// stagesFile is the kwok stage file to run with: the tools' own, or a copy
// slowed down by l written into dir.
func stagesFile(binDir, dir string, l Latencies) (string, error) {
	path := filepath.Join(binDir, "kwok-stages.yaml")
	if l.zero() {
		return path, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	slowed, err := stagesWithLatencies(string(data), l)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	out := filepath.Join(dir, "kwok-stages.yaml")
	return out, os.WriteFile(out, []byte(slowed), 0o644)
}
