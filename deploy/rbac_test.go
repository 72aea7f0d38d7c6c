package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csmops/etcd-repopulate/internal/api"
	"github.com/csmops/etcd-repopulate/internal/kube"
)

// allKube is every service that is pure Kubernetes or Kubernetes plus the
// CSM API (crus); hmnfd also needs SSH to nodes and asks nothing more of
// the API server.
const allKube = "bss,fas,meds,reds,externaldns,crus"

// exercisedBy names, for each resource the chart's Roles grant, the services whose
// run uses it. A rule for a resource not listed here fails the table test:
// the Role must grant nothing the code does not use.
var exercisedBy = map[string]string{
	"namespaces":                 "bss",
	"configmaps":                 "bss", // every run detects the release
	kube.JobGVR.Resource:         "bss",
	"pods":                       "meds",
	kube.EtcdClusterGVR.Resource: "externaldns",
	"secrets":                    "crus",
}

// exercisedElsewhere names, for a resource only a CSM 1.5+ run uses (this
// stack is CSM 1.0), the test that proves the worker needs it and says so
// when it is refused.
var exercisedElsewhere = map[string]string{
	"cronjobs": "procedures/bssrestore TestEtcdBackupAgeForbidden (bss reads its etcd backup CronJob on CSM 1.5+ with a snapshot only)",
}

func TestWorkerRunsAsTheServiceAccount(t *testing.T) {
	s := env(t)
	queue := "rbac-full"
	s.startWorker(t, queue)
	out, code := s.repopulate(t, queue, "start", "--services", allKube, "--wait", "--id", "rbac-full", "-o", "json")
	if code != 0 {
		t.Fatalf("run as %s with the chart's Roles: exit %d\n%s", saUser, code, out)
	}
	var report api.Report
	if err := json.Unmarshal([]byte(out[max(strings.Index(out, "{"), 0):]), &report); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if report.State != api.Done || len(report.Services) != len(strings.Split(allKube, ",")) {
		t.Fatalf("report: %+v", report)
	}
	for _, svc := range report.Services {
		if svc.State != api.Done {
			t.Errorf("service %s: %s", svc.Service, svc.State)
		}
	}
}

// roles reads the Roles the chart installed (release etcd-repopulate), in
// every namespace.
func (s *stack) roles(t *testing.T) []rbacv1.Role {
	t.Helper()
	list, err := s.cluster.Core.RbacV1().Roles("").List(context.Background(),
		metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) == 0 {
		t.Fatalf("the chart's release %s installed no Role", release)
	}
	return list.Items
}

// without returns role less one verb on one resource of rule i; the rule's
// other resources keep the verb.
func without(role rbacv1.Role, i int, resource, verb string) *rbacv1.Role {
	r := role.DeepCopy()
	rule := r.Rules[i]
	var rules []rbacv1.PolicyRule
	if others := slices.DeleteFunc(slices.Clone(rule.Resources), func(x string) bool { return x == resource }); len(others) > 0 {
		keep := *rule.DeepCopy()
		keep.Resources = others
		rules = append(rules, keep)
	}
	if verbs := slices.DeleteFunc(slices.Clone(rule.Verbs), func(x string) bool { return x == verb }); len(verbs) > 0 {
		less := *rule.DeepCopy()
		less.Resources, less.Verbs = []string{resource}, verbs
		rules = append(rules, less)
	}
	r.Rules = append(append(slices.Clone(r.Rules[:i]), rules...), r.Rules[i+1:]...)
	return r
}

// TestEveryVerbIsNeeded removes one verb of one resource from the Roles at
// a time: the run of a service that needs it must fail, and say Forbidden
// with the verb and the resource. A verb whose removal changes nothing is
// one the Role should not grant.
func TestEveryVerbIsNeeded(t *testing.T) {
	s := env(t)
	queue := "rbac-table"
	s.startWorker(t, queue)
	n := 0
	for _, role := range s.roles(t) {
		for i, rule := range role.Rules {
			for _, resource := range rule.Resources {
				for _, verb := range rule.Verbs {
					n++
					name := fmt.Sprintf("%s:%s:%s:%s", role.Namespace, role.Name, resource, verb)
					t.Run(name, func(t *testing.T) {
						if where, ok := exercisedElsewhere[resource]; ok {
							t.Skipf("%s on %s: exercised by %s", verb, resource, where)
						}
						services, ok := exercisedBy[resource]
						if !ok {
							t.Fatalf("the chart's Role grants %s on %s but no service here uses it: drop it from the Role, or add the service that needs it to exercisedBy", verb, resource)
						}
						attrs := authorizationv1.ResourceAttributes{Namespace: role.Namespace, Verb: verb, Group: first(rule.APIGroups), Resource: resource, Name: first(rule.ResourceNames)}
						s.setRole(t, without(role, i, resource, verb), attrs, false)
						defer s.restore(t, role, attrs)

						id := fmt.Sprintf("rbac-%d-%s-%s", n, resource, verb)
						runQueue := queue
						if resource == "secrets" {
							// The worker reads the client secret for a token and
							// keeps the token until it expires; every run's
							// release probes fetch one. Only a worker started
							// without the right reads the secret again.
							runQueue = fmt.Sprintf("%s-%d", queue, n)
							s.startWorker(t, runQueue)
						}
						out, code := s.repopulate(t, runQueue, "start", "--services", services, "--wait", "--id", id)
						if code != 1 {
							t.Fatalf("without %s on %s, the run of %s: exit %d, want 1 (a service failed); if it succeeded, the Role grants a verb nothing uses\n%s", verb, resource, services, code, out)
						}
						report, _ := s.repopulate(t, runQueue, "report", id)
						want := fmt.Sprintf("cannot %s resource %q", verb, resource)
						for what, text := range map[string]string{"start --wait": out, "report": report} {
							if !strings.Contains(text, want) || !strings.Contains(text, "forbidden") {
								t.Errorf("%s output does not say forbidden and %q:\n%s", what, want, text)
							}
						}
					})
				}
			}
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// setRole replaces the Role and waits until the API server's authorizer
// answers attrs for the ServiceAccount with allowed (RBAC reads Roles from
// a cache that lags an update a little).
func (s *stack) setRole(t *testing.T, role *rbacv1.Role, attrs authorizationv1.ResourceAttributes, allowed bool) {
	t.Helper()
	ctx := context.Background()
	roles := s.cluster.Core.RbacV1().Roles(role.Namespace)
	cur, err := roles.Get(ctx, role.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Rules = role.Rules
	if _, err := roles.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               saUser,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + workerNS, "system:authenticated"},
		ResourceAttributes: &attrs,
	}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := s.cluster.Core.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status.Allowed == allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s by %s: allowed %v after the Role update, want %v", attrs.Verb, attrs.Resource, saUser, res.Status.Allowed, allowed)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restore puts the Role back as the chart installed it and re-seeds what a failed
// run left deleted (a create that was forbidden after its delete).
func (s *stack) restore(t *testing.T, role rbacv1.Role, attrs authorizationv1.ResourceAttributes) {
	t.Helper()
	s.setRole(t, &role, attrs, true)
	if err := s.cluster.Seed(context.Background()); err != nil {
		t.Fatalf("re-seed after the case: %v", err)
	}
}
