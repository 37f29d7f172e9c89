package transform

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalidSpec matches (with errors.Is) every *ValidationError, so a
// caller can tell a bad spec (exit 1, show the problems) from an I/O error.
var ErrInvalidSpec = errors.New("transform: invalid pipeline spec")

// Problem is one thing wrong with a spec, located so an editor can jump to
// it. Line and Column are 1-based; they are 0 when the spec was built in
// code rather than parsed.
type Problem struct {
	File   string
	Line   int
	Column int
	// Field is the path of the offending value, such as
	// "features[2].ops[0].buckets"; empty for problems with the whole file.
	Field string
	Msg   string
}

// String formats the problem as "FILE:LINE:COL: FIELD: MSG", leaving out
// the parts that are unknown.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteByte(':')
	}
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d:", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, "%d:", p.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError carries every problem found in a spec, not just the
// first, ordered by position in the file.
type ValidationError struct {
	Problems []Problem
}

// Error lists the problems one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Is reports whether target is ErrInvalidSpec.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidSpec }

// sortProblems orders located problems by position; unlocated ones keep
// their relative order after them.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		switch {
		case a.Line == 0 || b.Line == 0:
			return a.Line != 0 && b.Line == 0
		case a.Line != b.Line:
			return a.Line < b.Line
		default:
			return a.Column < b.Column
		}
	})
}

// didYouMean returns `; did you mean "x"?` for the candidate closest to
// word, or "" when none is close enough to be a likely typo.
func didYouMean(word string, candidates []string) string {
	if s := closestName(word, candidates); s != "" {
		return fmt.Sprintf("; did you mean %q?", s)
	}
	return ""
}

func closestName(word string, candidates []string) string {
	w := strings.ToLower(word)
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(w, strings.ToLower(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	limit := max(1, len([]rune(word))/3)
	if bestD < 0 || bestD > limit || word == best {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance, counting an adjacent swap as
// one edit because swapped letters are the commonest typo.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		// Not a typo of a key; skip the quadratic work.
		return len(ra) + len(rb)
	}
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
