// Package hostrange expands pdsh host-range expressions ("hostlists"), the
// syntax the runbook's `pdsh -w ncn-w00[0-4]-can.local` uses, into host
// names.
//
// The syntax, as pdsh 2.34 expands it:
//
//   - A list of elements separated by commas (or whitespace) at the top
//     level; commas inside brackets belong to the bracket group.
//   - An element is a name with zero or more bracket groups. A group is a
//     comma-separated list of numbers and ranges LO-HI: "nid[001-003,007]",
//     "x[1,3,5-7]". Numbers keep the zero padding of the range's lower bound,
//     as pdsh does: "[01-10]" gives 01..10, "[8-10]" gives 8, 9, 10, "[001-3]"
//     gives 001, 002, 003.
//   - Several groups in one name expand to their cartesian product, the
//     leftmost group varying slowest: "a[1-2]b[3-4]" gives a1b3 a1b4 a2b3 a2b4.
//     (pdsh 2.34 expands only the first two groups of a name and leaves a
//     third one literal, "r1c0n[1-2]"; this package expands them all.)
//   - Within a group, elements expand in the order written: "x[3,1]" gives x3
//     then x1.
//
// Where this package differs from pdsh, it is stricter or safer, on purpose:
// it removes duplicate hosts (keeping the first occurrence; pdsh -w runs a
// host twice if named twice), and it rejects what pdsh accepts silently or
// takes literally: unbalanced brackets ("x[1-2" is a literal host for pdsh),
// empty top-level elements ("a,,b"), a range without an upper bound ("[1-]",
// which pdsh reads as "[1]"), whitespace inside brackets (pdsh rejects "[1 ,2]"
// but reads "[1, 2]" as 1 and 02). A tool that restarts daemons should not
// guess.
package hostrange

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxHosts is the largest number of hosts one expression (or one ExpandAll
// call) may expand to.
const MaxHosts = 100000

// Error is a malformed expression. Its message names the expression, the
// 1-based byte position of the problem, the problem and how to fix it.
type Error struct {
	Expr    string // the whole expression as given
	Pos     int    // 1-based byte offset of the problem in Expr; 0 if none
	Problem string
	Fix     string
}

func (e *Error) Error() string {
	if e.Pos > 0 {
		return fmt.Sprintf("host range %q: at position %d: %s; %s", e.Expr, e.Pos, e.Problem, e.Fix)
	}
	return fmt.Sprintf("host range %q: %s; %s", e.Expr, e.Problem, e.Fix)
}

// Expand expands one pdsh host-range expression into host names, in order,
// without duplicates.
func Expand(expr string) ([]string, error) {
	return expandInto(expr, nil, map[string]struct{}{})
}

// ExpandAll expands several expressions (as several -w options would) into
// one list, in order, without duplicates across all of them.
func ExpandAll(exprs []string) ([]string, error) {
	if len(exprs) == 0 {
		return nil, &Error{Expr: "", Problem: "no host range expressions given",
			Fix: `give at least one, e.g. "nid[000001-000010]-nmn"`}
	}
	var out []string
	seen := map[string]struct{}{}
	for _, e := range exprs {
		var err error
		if out, err = expandInto(e, out, seen); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// piece is one part of an element: a literal, or a bracket group's values.
type piece struct {
	lit    string
	values []string // nil for a literal
}

func expandInto(expr string, out []string, seen map[string]struct{}) ([]string, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, &Error{Expr: expr, Problem: "empty expression",
			Fix: `give host names or ranges, e.g. "ncn-w00[0-4]-can.local" or "nid[001-003,007]"`}
	}
	elems, err := splitTop(expr)
	if err != nil {
		return nil, err
	}
	// Parse everything and count before expanding, so a huge expression
	// fails fast instead of allocating.
	parsed := make([][]piece, len(elems))
	total := len(out)
	for i, el := range elems {
		ps, n, err := parseElement(expr, el.text, el.pos)
		if err != nil {
			return nil, err
		}
		parsed[i] = ps
		total += n
		if total > MaxHosts {
			return nil, &Error{Expr: expr, Pos: el.pos,
				Problem: fmt.Sprintf("expands to more than %d hosts", MaxHosts),
				Fix:     "split the work into smaller host ranges"}
		}
	}
	for _, ps := range parsed {
		out = product(ps, out, seen)
	}
	return out, nil
}

type element struct {
	text string
	pos  int // 1-based offset of text in the expression
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// splitTop splits at top-level commas and whitespace, checking brackets.
func splitTop(expr string) ([]element, error) {
	var elems []element
	depth, open := 0, 0
	start := -1         // start of the current element, -1 if none
	lastComma := -1     // offset of the last top-level comma
	sawElement := false // an element since the last comma
	flush := func(end int) {
		if start >= 0 {
			elems = append(elems, element{text: expr[start:end], pos: start + 1})
			start = -1
			sawElement = true
		}
	}
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == '[':
			if depth > 0 {
				return nil, &Error{Expr: expr, Pos: i + 1,
					Problem: fmt.Sprintf("nested '[' (the group opened at position %d is still open)", open+1),
					Fix:     "brackets do not nest: write one group per position, e.g. \"x[1-2]y[3-4]\""}
			}
			depth, open = 1, i
			if start < 0 {
				start = i
			}
		case c == ']':
			if depth == 0 {
				return nil, &Error{Expr: expr, Pos: i + 1, Problem: "']' without a matching '['",
					Fix: "add the missing '[' or remove the ']'"}
			}
			depth = 0
		case depth == 0 && c == ',':
			flush(i)
			if !sawElement {
				return nil, emptyElement(expr, i, lastComma)
			}
			lastComma, sawElement = i, false
		case depth == 0 && isSpace(c):
			flush(i)
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if depth > 0 {
		return nil, &Error{Expr: expr, Pos: open + 1, Problem: "'[' is never closed",
			Fix: "add the missing ']', e.g. \"nid[001-003]\""}
	}
	flush(len(expr))
	if lastComma >= 0 && !sawElement {
		return nil, &Error{Expr: expr, Pos: lastComma + 1, Problem: "empty element after the trailing ','",
			Fix: "remove the trailing comma or add the missing host"}
	}
	return elems, nil
}

func emptyElement(expr string, comma, lastComma int) error {
	if lastComma < 0 {
		return &Error{Expr: expr, Pos: comma + 1, Problem: "empty element before the leading ','",
			Fix: "remove the leading comma or add the missing host"}
	}
	return &Error{Expr: expr, Pos: comma + 1, Problem: "empty element between two ','",
		Fix: "remove the extra comma or add the missing host (an empty shell variable?)"}
}

// parseElement splits one element into literals and bracket groups and
// returns how many hosts it expands to (capped just above MaxHosts).
func parseElement(expr, el string, pos int) ([]piece, int, error) {
	var ps []piece
	n := 1
	elPos := pos
	for len(el) > 0 {
		i := strings.IndexByte(el, '[')
		if i < 0 {
			ps = append(ps, piece{lit: el})
			break
		}
		if i > 0 {
			ps = append(ps, piece{lit: el[:i]})
		}
		j := strings.IndexByte(el, ']') // splitTop guarantees it exists after i
		vals, err := parseGroup(expr, el[i+1:j], pos+i+1)
		if err != nil {
			return nil, 0, err
		}
		ps = append(ps, piece{values: vals})
		n *= len(vals)
		if n > MaxHosts {
			return nil, 0, &Error{Expr: expr, Pos: elPos,
				Problem: fmt.Sprintf("%q expands to more than %d hosts", expr[elPos-1:pos+j], MaxHosts),
				Fix:     "split the work into smaller host ranges"}
		}
		pos += j + 1
		el = el[j+1:]
	}
	return ps, n, nil
}

// parseGroup expands the inside of one bracket group; pos is the 1-based
// offset of the group's first byte (after '[') in the expression.
func parseGroup(expr, g string, pos int) ([]string, error) {
	if g == "" {
		return nil, &Error{Expr: expr, Pos: pos - 1, Problem: "empty bracket group \"[]\"",
			Fix: "put numbers or ranges inside, e.g. \"[1-4]\", or remove the brackets"}
	}
	if i := strings.IndexAny(g, " \t\r\n"); i >= 0 {
		return nil, &Error{Expr: expr, Pos: pos + i, Problem: "whitespace inside bracket group [" + g + "]",
			Fix: "remove it, e.g. \"[1,3-4]\" not \"[1, 3-4]\""}
	}
	var vals []string
	off := 0
	for _, part := range strings.Split(g, ",") {
		p := pos + off
		off += len(part) + 1
		if part == "" {
			return nil, &Error{Expr: expr, Pos: p, Problem: "empty element in bracket group [" + g + "]",
				Fix: "remove the extra comma, e.g. \"[1,2]\" not \"[1,,2]\""}
		}
		lo, hi, ranged := strings.Cut(part, "-")
		if ranged && hi == "" {
			return nil, &Error{Expr: expr, Pos: p, Problem: fmt.Sprintf("range %q has no upper bound", part),
				Fix: fmt.Sprintf("write %q or just %q", lo+"-"+lo, lo)}
		}
		if !digits(lo) || (ranged && !digits(hi)) {
			return nil, &Error{Expr: expr, Pos: p,
				Problem: fmt.Sprintf("%q is not a number or a range of non-negative numbers", part),
				Fix:     "bracket groups take only numbers and ranges like \"[1-4,7]\"; write letters outside the brackets"}
		}
		if !ranged {
			hi = lo
		}
		l, err1 := strconv.ParseUint(lo, 10, 64)
		h, err2 := strconv.ParseUint(hi, 10, 64)
		if err1 != nil || err2 != nil {
			return nil, &Error{Expr: expr, Pos: p, Problem: fmt.Sprintf("number in %q is too large", part),
				Fix: "use numbers that fit a host name"}
		}
		if l > h {
			return nil, &Error{Expr: expr, Pos: p, Problem: fmt.Sprintf("reversed range %q (%d > %d)", part, l, h),
				Fix: fmt.Sprintf("write the lower bound first: %q", hi+"-"+lo)}
		}
		if h-l+1 > MaxHosts || len(vals)+int(h-l+1) > MaxHosts {
			return nil, &Error{Expr: expr, Pos: p,
				Problem: fmt.Sprintf("range %q expands to more than %d hosts", part, MaxHosts),
				Fix:     "split the work into smaller host ranges"}
		}
		width := len(lo) // pdsh pads to the lower bound's width
		for v := l; v <= h; v++ {
			s := strconv.FormatUint(v, 10)
			if len(s) < width {
				s = strings.Repeat("0", width-len(s)) + s
			}
			vals = append(vals, s)
		}
	}
	return vals, nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// product appends the cartesian product of ps (leftmost group slowest) to
// out, skipping names already seen.
func product(ps []piece, out []string, seen map[string]struct{}) []string {
	idx := make([]int, len(ps))
	var b strings.Builder
	for {
		b.Reset()
		for k, p := range ps {
			if p.values == nil {
				b.WriteString(p.lit)
			} else {
				b.WriteString(p.values[idx[k]])
			}
		}
		name := b.String()
		if _, dup := seen[name]; !dup {
			seen[name] = struct{}{}
			out = append(out, name)
		}
		// Advance the odometer from the right.
		k := len(ps) - 1
		for ; k >= 0; k-- {
			if ps[k].values == nil {
				continue
			}
			idx[k]++
			if idx[k] < len(ps[k].values) {
				break
			}
			idx[k] = 0
		}
		if k < 0 {
			return out
		}
	}
}
