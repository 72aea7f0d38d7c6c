package hostrange

import (
	"errors"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/csmops/etcd-repopulate/internal/badinput"
)

var valid = []struct {
	name, expr string
	want       []string
}{
	{"single host", "nid000001-nmn", []string{"nid000001-nmn"}},
	{"runbook workers", "ncn-w00[0-4]-can.local", []string{
		"ncn-w000-can.local", "ncn-w001-can.local", "ncn-w002-can.local", "ncn-w003-can.local", "ncn-w004-can.local"}},
	{"range and list", "nid[001-003,007]", []string{"nid001", "nid002", "nid003", "nid007"}},
	{"list and range", "x[1,3,5-7]", []string{"x1", "x3", "x5", "x6", "x7"}},
	{"padding kept", "n[01-10]", []string{"n01", "n02", "n03", "n04", "n05", "n06", "n07", "n08", "n09", "n10"}},
	{"no padding from a short bound", "n[8-10]", []string{"n8", "n9", "n10"}},
	{"padding from the lower bound", "n[001-3]", []string{"n001", "n002", "n003"}},
	{"lower bound wider than upper", "x[01-1]", []string{"x01"}},
	{"group alone", "[1-3]", []string{"1", "2", "3"}},
	{"suffix after group", "x[1-2]y", []string{"x1y", "x2y"}},
	{"cartesian product, leftmost slowest", "a[1-2]b[3-4]", []string{"a1b3", "a1b4", "a2b3", "a2b4"}},
	{"three groups", "r[1-2]c[0-1]n[7-8]", []string{"r1c0n7", "r1c0n8", "r1c1n7", "r1c1n8", "r2c0n7", "r2c0n8", "r2c1n7", "r2c1n8"}},
	{"order as written", "x[3,1,2]", []string{"x3", "x1", "x2"}},
	{"top-level list", "b,a,c", []string{"b", "a", "c"}},
	{"commas inside brackets belong to the bracket", "a[1,2],b[3,4]", []string{"a1", "a2", "b3", "b4"}},
	{"duplicates removed, first kept", "b,a,b,c,a", []string{"b", "a", "c"}},
	{"duplicates across ranges", "n[1-3],n2,n[3-4]", []string{"n1", "n2", "n3", "n4"}},
	{"whitespace separates like pdsh", " a , b  c\t", []string{"a", "b", "c"}},
	{"single-number group", "nid[007]", []string{"nid007"}},
	{"exactly the limit", "n[1-100000]", nil}, // length checked below
}

// notPdsh names the valid cases pdsh 2.34 expands differently, and why.
var notPdsh = map[string]string{
	"three groups": "pdsh 2.34 leaves a third group literal: r1c0n[7-8]",
}

func TestExpandValid(t *testing.T) {
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Expand(tc.expr)
			if err != nil {
				t.Fatalf("Expand(%q): %v", tc.expr, err)
			}
			if tc.want == nil {
				if len(got) != MaxHosts || got[0] != "n1" || got[MaxHosts-1] != "n100000" {
					t.Fatalf("Expand(%q): %d hosts, first %q last %q", tc.expr, len(got), got[0], got[len(got)-1])
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Expand(%q)\n got %q\nwant %q", tc.expr, got, tc.want)
			}
		})
	}
}

func TestExpandErrors(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		pos        int
		problem    string // substring of the problem
	}{
		{"empty expression", "", 0, "empty expression"},
		{"blank expression", "  \t", 0, "empty expression"},
		{"unclosed bracket", "nid[001-003", 4, "never closed"},
		{"unclosed second group", "a[1]b[2", 6, "never closed"},
		{"stray closing bracket", "nid001-003]", 11, "without a matching '['"},
		{"double closing bracket", "x[1-2]]", 7, "without a matching '['"},
		{"nested brackets", "x[[1]]", 3, "nested '['"},
		{"nested deeper", "x[1,[2]]", 5, "nested '['"},
		{"empty element in group", "x[1,,2]", 5, "empty element in bracket group"},
		{"trailing comma in group", "x[1,]", 5, "empty element in bracket group"},
		{"empty group", "x[]", 2, "empty bracket group"},
		{"whitespace in group", "x[1, 2]", 5, "whitespace inside bracket group"},
		{"blank group", "x[ ]", 3, "whitespace inside bracket group"},
		{"empty top-level element", "a,,b", 3, "between two ','"},
		{"leading comma", ",a", 1, "leading ','"},
		{"trailing comma", "a,b,", 4, "trailing ','"},
		{"reversed range", "x[5-1]", 3, `reversed range "5-1"`},
		{"reversed range later in list", "x[1,9-3]", 5, `reversed range "9-3"`},
		{"letters in range", "x[a-c]", 3, "not a number"},
		{"letters in list", "x[1,b]", 5, "not a number"},
		{"negative number", "x[-1]", 3, "not a number"},
		{"double dash", "x[1--3]", 3, "not a number"},
		{"missing upper bound", "x[1-]", 3, "no upper bound"},
		{"huge number", "x[99999999999999999999]", 3, "too large"},
		{"one range over the limit", "n[1-100001]", 3, "more than 100000 hosts"},
		{"product over the limit", "r[1-1000]n[1-1000]", 1, "more than 100000 hosts"},
		{"product over the limit, second element", "a,r[1-1000]n[1-1000]", 3, `"r[1-1000]n[1-1000]" expands to more than 100000 hosts`},
		{"sum over the limit", "a[1-60000],b[1-60000]", 12, "more than 100000 hosts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Expand(tc.expr)
			if err == nil {
				t.Fatalf("Expand(%q) = %d hosts, want an error about %q", tc.expr, len(got), tc.problem)
			}
			var he *Error
			if !errors.As(err, &he) {
				t.Fatalf("Expand(%q): error %T %v, want *Error", tc.expr, err, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("%q", tc.expr)) {
				t.Errorf("error does not name the expression: %s", msg)
			}
			if !strings.Contains(he.Problem, tc.problem) {
				t.Errorf("problem %q, want it to contain %q", he.Problem, tc.problem)
			}
			if he.Pos != tc.pos {
				t.Errorf("position %d, want %d (%s)", he.Pos, tc.pos, msg)
			}
			if tc.pos > 0 && !strings.Contains(msg, fmt.Sprintf("at position %d", tc.pos)) {
				t.Errorf("error does not give the position: %s", msg)
			}
			if he.Fix == "" || !strings.Contains(msg, he.Fix) {
				t.Errorf("error gives no fix: %s", msg)
			}
			if len(got) != 0 {
				t.Errorf("%d hosts returned with the error", len(got))
			}
			// A blank expression has nothing to show in a table cell.
			if strings.TrimSpace(tc.expr) != "" {
				badinput.Record(t, badinput.Case{Area: badinput.Config, Input: tc.expr, Message: msg,
					Exit: fmt.Sprintf("hostrange.Error at position %d", he.Pos), Unchanged: "Expand returned no host: no node is contacted"})
			}
		})
	}
}

func TestExpandAll(t *testing.T) {
	got, err := ExpandAll([]string{"ncn-w00[0-1]-can.local", "ncn-s00[0-1]-can.local,ncn-w001-can.local", "nid[000001-000002]-nmn"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ncn-w000-can.local", "ncn-w001-can.local", "ncn-s000-can.local", "ncn-s001-can.local",
		"nid000001-nmn", "nid000002-nmn"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}

	if _, err := ExpandAll(nil); err == nil {
		t.Fatal("ExpandAll(nil): want an error")
	}
	_, err = ExpandAll([]string{"a[1-2]", "b[3-1]"})
	if err == nil || !strings.Contains(err.Error(), `"b[3-1]"`) {
		t.Fatalf("ExpandAll with a bad second expression: %v, want an error naming it", err)
	}
	_, err = ExpandAll([]string{"a[1-60000]", "b[1-60000]"})
	if err == nil || !strings.Contains(err.Error(), "more than 100000") {
		t.Fatalf("ExpandAll over the limit in total: %v", err)
	}
}

// TestMatchesRealPdsh runs the installed pdsh (its exec module, no network)
// on every valid expression and checks that Expand gives the same hosts in
// the same order, once duplicates are removed from pdsh's list.
func TestMatchesRealPdsh(t *testing.T) {
	pdsh, err := exec.LookPath("pdsh")
	if err != nil {
		t.Fatalf("pdsh is not installed: run `hack/install-tools.sh ssh-peers` (apt-get install pdsh)")
	}
	for _, tc := range valid {
		if tc.want == nil || len(tc.want) > 20 || notPdsh[tc.name] != "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(pdsh, "-R", "exec", "-f", "1", "-N", "-w", tc.expr, "echo", "%h")
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("pdsh -w %q: %v\n%s", tc.expr, err, out)
			}
			var fromPdsh []string
			seen := map[string]bool{}
			for _, h := range strings.Fields(string(out)) {
				if !seen[h] {
					seen[h] = true
					fromPdsh = append(fromPdsh, h)
				}
			}
			got, err := Expand(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, fromPdsh) {
				t.Fatalf("Expand(%q) = %q, pdsh expands it to %q", tc.expr, got, fromPdsh)
			}
		})
	}
}
