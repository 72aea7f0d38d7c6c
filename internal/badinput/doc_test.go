package badinput

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// MinRows is how many rows the document must keep.
const MinRows = 25

// repoRoot is the directory of the module's go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// recordLiterals returns, rendered as table cells, the string literals (and
// string-literal slices joined by spaces) of every _test.go file that calls
// badinput.Record: the only places a row's input may come from.
func recordLiterals(t *testing.T, root string) map[string]bool {
	t.Helper()
	cells := map[string]bool{}
	callers := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		calls, lits := false, []string{}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Record" {
					if x, ok := sel.X.(*ast.Ident); ok && x.Name == "badinput" {
						calls = true
					}
				}
			case *ast.CompositeLit:
				// A command line written as []string{"start", "--id", "x"}
				// counts as the literal "start --id x".
				var words []string
				for _, e := range n.Elts {
					if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
						if w, err := strconv.Unquote(b.Value); err == nil {
							words = append(words, w)
							continue
						}
					}
					words = nil
					break
				}
				if len(words) > 1 {
					lits = append(lits, strings.Join(words, " "))
				}
			case *ast.BasicLit:
				if n.Kind == token.STRING {
					if s, err := strconv.Unquote(n.Value); err == nil {
						lits = append(lits, s)
					}
				}
			}
			return true
		})
		if calls {
			callers++
			for _, s := range lits {
				cells[InputCell(s)] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if callers == 0 {
		t.Fatal("no test file calls badinput.Record")
	}
	return cells
}

// check lists what is wrong with a rendered document.
func check(doc string, literals map[string]bool) []string {
	var problems []string
	rows := Rows(doc)
	if len(rows) < MinRows {
		problems = append(problems, fmt.Sprintf("%d rows, want at least %d", len(rows), MinRows))
	}
	for i, r := range rows {
		if len(r) != 6 {
			problems = append(problems, fmt.Sprintf("row %d has %d cells, want 6: %q", i+1, len(r), r))
			continue
		}
		if !literals[r[1]] {
			problems = append(problems, fmt.Sprintf("row %d: input %s is not a literal in any test that calls badinput.Record: rerun make bad-input-doc", i+1, r[1]))
		}
	}
	return problems
}

// TestDocRowsHaveTheirTests: the committed document is big enough and each
// row's input is still in a test, so a row cannot outlive its test.
func TestDocRowsHaveTheirTests(t *testing.T) {
	root := repoRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "bad-input.md"))
	if err != nil {
		t.Fatalf("%v: run make bad-input-doc", err)
	}
	if !strings.HasPrefix(string(doc), Header) {
		t.Error("docs/bad-input.md does not start with the generator's header: run make bad-input-doc")
	}
	for _, p := range check(string(doc), recordLiterals(t, root)) {
		t.Error(p)
	}
}

// TestCheckFindsOrphansAndShortTables: the check above can fail.
func TestCheckFindsOrphansAndShortTables(t *testing.T) {
	var cases []Case
	literals := map[string]bool{}
	for i := range MinRows {
		in := fmt.Sprintf("--flag %d", i)
		literals[InputCell(in)] = true
		cases = append(cases, Case{Area: CLI, Input: in, Message: "m", Exit: "2", Unchanged: "u", Test: "T"})
	}
	if p := check(string(Render(cases)), literals); len(p) != 0 {
		t.Fatalf("a good document: %v", p)
	}
	orphan := append(cases, Case{Area: Config, Input: "key: | with a pipe", Message: "m", Exit: "1", Unchanged: "u", Test: "T"})
	p := check(string(Render(orphan)), literals)
	if len(p) != 1 || !strings.Contains(p[0], "row 26: input `key: \\| with a pipe`") {
		t.Errorf("orphan row: %q", p)
	}
	if p := check(string(Render(cases[:3])), literals); len(p) != 1 || !strings.Contains(p[0], "3 rows, want at least 25") {
		t.Errorf("short table: %q", p)
	}
}

func TestReadDeduplicatesAndSorts(t *testing.T) {
	log := `{"area":"remote answers","input":"b","message":"m","exit":"1","unchanged":"u","test":"T1"}
{"area":"CLI flags","input":"z","message":"m","exit":"2","unchanged":"u","test":"T2"}

{"area":"remote answers","input":"b","message":"m","exit":"1","unchanged":"u","test":"T3"}
{"area":"remote answers","input":"a","message":"m","exit":"1","unchanged":"u","test":"T1"}
{"area":"remote answers","input":"b","message":"m","exit":"1","unchanged":"u","test":"T1"}
`
	got, err := Read(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, c := range got {
		keys = append(keys, c.Area+"/"+c.Input+"/"+c.Test)
	}
	if want := "CLI flags/z/T2 remote answers/a/T1 remote answers/b/T1, T3"; strings.Join(keys, " ") != want {
		t.Errorf("got %q, want %q", strings.Join(keys, " "), want)
	}
	if _, err := Read(strings.NewReader("{not json\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad line: %v", err)
	}
}

func TestCellsSurviveTheTable(t *testing.T) {
	c := Case{Area: Config, Input: "a: `x`\nb: |", Message: "``y`` | z", Exit: "1", Unchanged: "x|y", Test: "T"}
	rows := Rows(string(Render([]Case{c})))
	if len(rows) != 1 || len(rows[0]) != 6 {
		t.Fatalf("rows %q", rows)
	}
	if want := "``a: `x` ⏎ b: \\|``"; rows[0][1] != want {
		t.Errorf("input cell %q, want %q", rows[0][1], want)
	}
	if want := "``` ``y`` \\| z ```"; rows[0][2] != want {
		t.Errorf("message cell %q, want %q", rows[0][2], want)
	}
	if rows[0][4] != `x\|y` {
		t.Errorf("unchanged cell %q", rows[0][4])
	}
}

// fakeTB stands in for a test that passes or fails, to see what Record
// writes in either case.
type fakeTB struct {
	testing.TB
	failed   bool
	errors   []string
	cleanups []func()
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Name() string      { return "TestFake" }
func (f *fakeTB) Failed() bool      { return f.failed }
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}
func (f *fakeTB) finish() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestRecordWritesOnlyForPassingTests(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log.jsonl")
	t.Setenv(EnvLog, log)
	good := Case{Area: Cluster, Input: "job missing", Message: "Job services/x not found", Exit: "1", Unchanged: "UIDs unchanged"}
	passing, failing := &fakeTB{}, &fakeTB{failed: true}
	Record(passing, good)
	Record(failing, Case{Area: Cluster, Input: "should not appear", Message: "m", Exit: "1", Unchanged: "u"})
	passing.finish()
	failing.finish()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	good.Test = "TestFake"
	if len(got) != 1 || got[0] != good {
		t.Errorf("log %s, want only the passing test's case", data)
	}
	bad := &fakeTB{}
	Record(bad, Case{Area: "elsewhere", Input: "x", Message: "", Exit: "1", Unchanged: "u"})
	if len(bad.errors) != 2 {
		t.Errorf("a case with an unknown area and no message: errors %q, want 2", bad.errors)
	}
}

func TestLine(t *testing.T) {
	out := "Run r: failed\n  bss  failed  Job services/x not found  \nmore"
	if got := Line(out, "not found"); got != "bss  failed  Job services/x not found" {
		t.Errorf("Line: %q", got)
	}
	if got := Line(" only \n", "absent"); got != "only" {
		t.Errorf("Line without the text: %q", got)
	}
}

// TestRecordLiteralsOnlyFromRecordingFiles: literals count only in test
// files that call badinput.Record, and a []string command line counts as
// its words joined.
func TestRecordLiteralsOnlyFromRecordingFiles(t *testing.T) {
	root := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(root, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a_test.go", "package a\nvar args = []string{\"start\", \"--id\", \"x\"}\nfunc f() { badinput.Record(nil, badinput.Case{Input: `raw\\n`}) }\n")
	write("b_test.go", "package a\nvar other = \"not recorded\"\n")
	write("c.go", "package a\nfunc g() { badinput.Record(nil, badinput.Case{Input: \"not a test file\"}) }\n")
	got := recordLiterals(t, root)
	for _, want := range []string{"start --id x", `raw\n`} {
		if !got[InputCell(want)] {
			t.Errorf("%q missing from %v", want, got)
		}
	}
	for _, not := range []string{"not recorded", "not a test file"} {
		if got[InputCell(not)] {
			t.Errorf("%q counted", not)
		}
	}
}
