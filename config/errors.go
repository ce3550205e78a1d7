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

// ErrorAt returns an *Error for a problem with the value at path, such as
// "pools[web].backends[0]", "sites[1].hosts[0]", "limits.read_timeout" or
// "storage": at that value's FILE:LINE:COL, or at its nearest ancestor in
// the file (for a key left out, the mapping that lacks it). When c has no
// positions (built in code) the message starts with "PATH: ", as
// Validate's do. The message is fmt.Sprintf(format, args...); a %w verb
// makes Err the wrapped error. cmd/edge uses it for problems found while
// translating c into runtime options, and for reload refusals.
func (c *Config) ErrorAt(path string, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	var cause error
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		cause = u.Unwrap()
	case interface{ Unwrap() []error }:
		cause = err
	}
	return c.errorAt(path, cause, err.Error())
}

// errorAt is ErrorAt with a formatted message and a cause.
func (c *Config) errorAt(path string, cause error, msg string) *Error {
	p, ok := c.at(path)
	if !ok && path != "" {
		msg = path + ": " + msg
	}
	return &Error{File: c.File, Line: p.line, Col: p.col, Msg: msg, Err: cause}
}

// at is the position of path, or of its nearest ancestor present in the
// file (for a missing key, the mapping that lacks it).
func (c *Config) at(path string) (pos, bool) {
	if c.vals == nil {
		return pos{}, false
	}
	for p := path; ; p = parent(p) {
		if x, ok := c.vals[p]; ok {
			return x, true
		}
		if p == "" {
			return pos{}, false
		}
	}
}

// finish sorts errs by position and returns them as an error, or nil.
func finish(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	sortErrors(errs)
	if len(errs) > maxErrors {
		last := &Error{File: errs[0].File, Msg: fmt.Sprintf("too many errors (%d more)", len(errs)-maxErrors)}
		errs = append(errs[:maxErrors:maxErrors], last)
	}
	out := Errors(errs)
	return &out
}

// sortErrors sorts errs by position, those without one last, keeping the
// order of equal positions.
func sortErrors(errs []*Error) {
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
