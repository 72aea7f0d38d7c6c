package badinput

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Header opens docs/bad-input.md.
const Header = `# Bad input: what is refused, what is shown, what is left alone

GENERATED FILE, do not edit: ` + "`make bad-input-doc`" + ` runs the tests that feed
each kind of bad input to the real parts (CLI, worker, workflows, activities
against a real kube-apiserver, the CSM API client against the emulator, SSH
against real sshd) with ` + "`" + EnvLog + "`" + ` set. Each of those tests calls
` + "`badinput.Record`" + ` (internal/badinput) after its assertions, and a row is only
written when the test passed; hack/badinputdoc then turns the lines into this
table. ` + "`go test ./internal/badinput`" + ` checks that every row's input is still a
literal (a string, or a command line's []string) in a test file that calls
` + "`badinput.Record`" + `.

Columns: **Message** is the text the test observed (line breaks shown as ⏎;
temporary paths and ports are those of the run that generated the file).
**Exit** is the CLI exit code (0 ok, 1 failed, 2 bad input / nothing started /
gate decision refused, 3 unfinished run), or what stands for it where no CLI
is involved. **Nothing changed** is what the test checked to prove it.
**Test** is where to look.

`

// Read parses the JSON lines Record wrote, drops repeats (same area, input,
// message and exit; their tests are merged) and sorts by area, then input.
func Read(r io.Reader) ([]Case, error) {
	var out []Case
	seen := map[[4]string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var c Case
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		key := [4]string{c.Area, c.Input, c.Message, c.Exit}
		if i, ok := seen[key]; ok {
			if !slices.Contains(strings.Split(out[i].Test, ", "), c.Test) {
				out[i].Test += ", " + c.Test
			}
			continue
		}
		seen[key] = len(out)
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b Case) int {
		if d := areaRank(a.Area) - areaRank(b.Area); d != 0 {
			return d
		}
		if d := strings.Compare(a.Input, b.Input); d != 0 {
			return d
		}
		return strings.Compare(a.Test, b.Test)
	})
	return out, nil
}

func areaRank(a string) int {
	if i := slices.Index(Areas, a); i >= 0 {
		return i
	}
	return len(Areas)
}

// Render writes the document: the header, a count per area and the table.
func Render(cases []Case) []byte {
	var b bytes.Buffer
	b.WriteString(Header)
	count := map[string]int{}
	for _, c := range cases {
		count[c.Area]++
	}
	fmt.Fprintf(&b, "%d rows:", len(cases))
	for i, a := range Areas {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %d", a, count[a])
	}
	b.WriteString(".\n\n| Area | Bad input | Message shown | Exit | Nothing changed | Test |\n|---|---|---|---|---|---|\n")
	for _, c := range cases {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", cell(c.Area), InputCell(c.Input), Code(c.Message), cell(c.Exit), cell(c.Unchanged), Code(c.Test))
	}
	return b.Bytes()
}

// InputCell is how an input appears in the table; the check compares it
// with the same rendering of the test files' literals.
func InputCell(s string) string { return Code(s) }

// Code is s as a code span that survives a table cell: line breaks become
// ⏎, pipes are escaped, and the fence is longer than any run of backticks
// inside.
func Code(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\r", "")
	s = strings.ReplaceAll(s, "\n", " ⏎ ")
	s = strings.ReplaceAll(s, "|", `\|`)
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

// cell is plain text in a table cell.
func cell(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// Rows returns the cells of the table's data rows in a rendered document.
func Rows(doc string) [][]string {
	var rows [][]string
	inTable := false
	for _, l := range strings.Split(doc, "\n") {
		switch {
		case strings.HasPrefix(l, "|---"):
			inTable = true
		case inTable && strings.HasPrefix(l, "| "):
			rows = append(rows, splitRow(l))
		case inTable:
			inTable = false
		}
	}
	return rows
}

// splitRow splits "| a | b |" on the pipes that are not escaped.
func splitRow(l string) []string {
	l = strings.TrimSuffix(strings.TrimPrefix(l, "| "), " |")
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(l); i++ {
		switch {
		case l[i] == '\\' && i+1 < len(l) && l[i+1] == '|':
			cur.WriteString(`\|`)
			i++
		case strings.HasPrefix(l[i:], " | "):
			cells = append(cells, cur.String())
			cur.Reset()
			i += 2
		default:
			cur.WriteByte(l[i])
		}
	}
	return append(cells, cur.String())
}
