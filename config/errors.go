package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a config file, at a position when it has one.
// Line and Col are 1-based; 0 means unknown (the position is then left
// out of the message).
type Error struct {
	File string
	Line int
	Col  int
	Msg  string
	// Err is the underlying cause (for example an *fs.PathError from a
	// *_file secret), or nil.
	Err error
}

// Error formats the problem as FILE:LINE:COL: message.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, "%d:", e.Col)
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in a config file, in file order. Parse,
// Load and Validate return it as *Errors; it is never empty when returned.
type Errors []*Error

// Error joins the problems with newlines, one FILE:LINE:COL: message each.
func (e *Errors) Error() string {
	lines := make([]string, len(*e))
	for i, err := range *e {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems for errors.Is and errors.As.
func (e *Errors) Unwrap() []error {
	out := make([]error, len(*e))
	for i, err := range *e {
		out[i] = err
	}
	return out
}

// maxErrors bounds how many problems one file reports.
const maxErrors = 200

// finish sorts errs by position and returns them as an error, or nil.
func finish(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line == 0 // positioned errors first
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	if len(errs) > maxErrors {
		last := &Error{File: errs[0].File, Msg: fmt.Sprintf("too many errors (%d more)", len(errs)-maxErrors)}
		errs = append(errs[:maxErrors:maxErrors], last)
	}
	out := Errors(errs)
	return &out
}

// suggest returns ` (did you mean "x"?)` for the candidate closest to s,
// or "" when none is close.
func suggest(s string, candidates []string) string {
	best, bestDist := "", 0
	for _, c := range candidates {
		d := levenshtein(strings.ToLower(s), strings.ToLower(c))
		if best == "" || d < bestDist {
			best, bestDist = c, d
		}
	}
	limit := 2
	if len(s) <= 3 {
		limit = 1
	}
	if best == "" || bestDist > limit {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// levenshtein is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and adjacent transpositions.
func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1) // transposition
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
