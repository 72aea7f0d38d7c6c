package activities

import (
	"reflect"
	"runtime"
	"strings"
	"testing"

	"go.temporal.io/sdk/activity"
)

type recordingRegistry map[string]any

func (r recordingRegistry) RegisterActivityWithOptions(a any, o activity.RegisterOptions) {
	r[o.Name] = a
}

// Every exported method of Kube and CSM is registered exactly once, under
// the name it had when names were implicit (the Go method name): recorded
// histories schedule activities by these strings.
func TestEveryActivityIsRegisteredUnderItsHistoricalName(t *testing.T) {
	reg := recordingRegistry{}
	Register(reg, &Kube{}, &CSM{})
	want := map[string]bool{}
	for _, typ := range []reflect.Type{reflect.TypeFor[*Kube](), reflect.TypeFor[*CSM]()} {
		for m := range typ.Methods() {
			want[m.Name] = true
		}
	}
	for name, fn := range reg {
		method := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
		method = strings.TrimSuffix(method[strings.LastIndex(method, ".")+1:], "-fm")
		if name != method {
			t.Errorf("activity %q is registered for method %s: a recorded history would schedule the wrong code", name, method)
		}
		if !want[name] {
			t.Errorf("activity %q is not an exported method of Kube or CSM", name)
		}
		delete(want, name)
	}
	for name := range want {
		t.Errorf("method %s is not registered as an activity (add it to Named and a name to internal/api)", name)
	}
}
