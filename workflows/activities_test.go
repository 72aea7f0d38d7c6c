package workflows

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/activities"
	"github.com/csmops/etcd-repopulate/internal/config"
)

// Every activity name internal/api declares is registered exactly once,
// for the method of that name (the name it had when names were implicit):
// recorded histories schedule activities by these strings, wherever the
// method lives now (activities, activities/preflight or a procedure's folder).
func TestEveryActivityIsRegisteredUnderItsHistoricalName(t *testing.T) {
	reg := NamedActivities(Workers{Config: config.Default(), Kube: &activities.Kube{}, CSM: &activities.CSM{}})
	want := declaredActivityNames(t)
	for name, fn := range reg {
		method := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
		method = strings.TrimSuffix(method[strings.LastIndex(method, ".")+1:], "-fm")
		if name != method {
			t.Errorf("activity %q is registered for method %s: a recorded history would schedule the wrong code", name, method)
		}
		if !want[name] {
			t.Errorf("activity %q is not declared in internal/api/activities.go", name)
		}
		delete(want, name)
	}
	for name := range want {
		t.Errorf("activity %s is declared but not registered (add it to its procedure's Activities)", name)
	}
}

// declaredActivityNames are the values of the Activity… constants of
// internal/api/activities.go.
func declaredActivityNames(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../internal/api/activities.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		v, ok := n.(*ast.ValueSpec)
		if !ok || len(v.Values) != 1 || !strings.HasPrefix(v.Names[0].Name, "Activity") {
			return true
		}
		if lit, ok := v.Values[0].(*ast.BasicLit); ok {
			s, _ := strconv.Unquote(lit.Value)
			names[s] = true
		}
		return true
	})
	if len(names) == 0 {
		t.Fatal("no Activity constants found in internal/api/activities.go")
	}
	return names
}
