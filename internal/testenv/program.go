package testenv

import (
	"fmt"
	"os"
	"path/filepath"
)

// Program is a TB for a main package (the demo, the benchmark's edgeup):
// Fatalf prints and unwinds to Run, which runs the cleanups in reverse order
// and returns the exit code. Not safe for concurrent use.
type Program struct {
	// Root is a temporary directory removed by the cleanups.
	Root string

	name     string
	verbose  bool
	cleanups []func()
	failed   bool
	n        int
}

type programFatal struct{}

// NewProgram makes a Program named name (the prefix of its messages and of
// its temporary directory). verbose shows Logf output even without failure.
func NewProgram(name string, verbose bool) *Program {
	root, err := os.MkdirTemp("", "edge-"+name+"-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	p := &Program{Root: root, name: name, verbose: verbose}
	p.Cleanup(func() { os.RemoveAll(root) })
	return p
}

// Run calls f, turns a Fatalf into exit code 1, runs the cleanups and
// returns the exit code.
func (p *Program) Run(f func()) (code int) {
	defer p.cleanup()
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(programFatal); !ok {
					panic(r)
				}
				code = 1
			}
		}()
		f()
	}()
	return code
}

// Helper implements TB.
func (p *Program) Helper() {}

// Logf implements TB: shown when verbose or after a failure.
func (p *Program) Logf(format string, args ...any) {
	if p.verbose || p.failed {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// Fatalf implements TB: prints and unwinds to Run.
func (p *Program) Fatalf(format string, args ...any) {
	p.failed = true
	fmt.Fprintf(os.Stderr, p.name+" FAILED: "+format+"\n", args...)
	panic(programFatal{})
}

// Failed implements TB.
func (p *Program) Failed() bool { return p.failed }

// Cleanup implements TB.
func (p *Program) Cleanup(f func()) { p.cleanups = append(p.cleanups, f) }

// TempDir implements TB: a new directory under Root.
func (p *Program) TempDir() string {
	p.n++
	dir := filepath.Join(p.Root, fmt.Sprintf("%03d", p.n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.Fatalf("%v", err)
	}
	return dir
}

func (p *Program) cleanup() {
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
	p.cleanups = nil
}

var _ TB = (*Program)(nil)
