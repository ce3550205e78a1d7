package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/farmedge/edge/config"
)

// commands lists each command with what follows its flags and a line
// about it, in the order edge help shows them.
var commands = []struct{ name, args, about string }{
	{"run", "", "serve until SIGTERM (SIGHUP or a change of the file reloads)"},
	{"validate", "", "check a config file; every problem as FILE:LINE:COL"},
	{"certs", "", "list managed certificates (from the admin API)"},
	{"renew", "NAME", "renew a certificate now"},
	{"revoke", "NAME", "revoke a certificate at its CA (-reason keyCompromise...) and obtain a replacement"},
	{"export", "[NAME...]", "deliver certificates to the export targets now; -dry-run tests each target"},
	{"drain", "POOL BACKEND", "take a backend out of new traffic (its requests in flight finish), for maintenance"},
	{"undrain", "POOL BACKEND", "put a drained backend back"},
	{"preflight", "", "check that HTTP-01 requests reach an edge for every name, CNAME delegations"},
	{"config", "", "print the effective configuration (defaults applied, ${ENV} expanded, secrets redacted)"},
	{"version", "", "print the version (-json for scripts)"},
	{"completion", "bash|zsh|fish", "print a shell completion script (built from this table and each command's flags)"},
	{"help", "[COMMAND]", "this text, or a command's flags"},
}

func usageText() string {
	var b strings.Builder
	b.WriteString("usage: edge <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.about)
	}
	b.WriteString("\n`edge COMMAND -h` lists a command's flags. -config defaults to $EDGE_CONFIG,\nthen ./edge.yaml, then /etc/edge/edge.yaml.\n")
	return b.String()
}

// helpError is a request for help (-h, --help): Run prints its text to
// stdout and succeeds.
type helpError struct {
	text string
	fs   *flag.FlagSet // the command's flags (edge completion lists them)
}

func (e *helpError) Error() string { return e.text }

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// commandHelp is the usage of one command: its line and every flag with
// its default.
func commandHelp(fs *flag.FlagSet) string {
	var b strings.Builder
	args, about := "", ""
	for _, c := range commands {
		if c.name == fs.Name() {
			args, about = c.args, c.about
		}
	}
	fmt.Fprintf(&b, "usage: edge %s [flags] %s\n\n%s\n", fs.Name(), args, about)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		b.WriteString("\nflags:\n")
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return b.String()
}

// parseFlags parses args; -h asks for the command's help, and a wrong
// flag is a usage error that shows it.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return &helpError{text: commandHelp(fs), fs: fs}
	case err != nil:
		return fmt.Errorf("%w %s: %v\n\n%s", errUsage, fs.Name(), err, commandHelp(fs))
	}
	return nil
}

// parseNoArgs is parseFlags for a command that takes no arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return noArgs(fs)
}

// noArgs refuses arguments after the flags of a command that takes none,
// naming what was likely meant.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() == 0 {
		return nil
	}
	hint := ""
	if fs.Lookup("config") != nil && (strings.HasSuffix(fs.Arg(0), ".yaml") || strings.HasSuffix(fs.Arg(0), ".yml")) {
		hint = fmt.Sprintf(" (did you mean -config %s?)", fs.Arg(0))
	}
	return fmt.Errorf("%w %s takes no arguments, got %q%s", errUsage, fs.Name(), fs.Args(), hint)
}

// buildInfo is what edge version prints: the module version, the VCS
// revision and time the binary was built from, and the Go version.
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Time      string `json:"time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
}

func readBuildInfo() buildInfo {
	bi := buildInfo{Version: version}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return bi
	}
	bi.GoVersion = info.GoVersion
	if version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		bi.Version = info.Main.Version // go install …/cmd/edge@vX.Y.Z
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			bi.Commit = s.Value
		case "vcs.time":
			bi.Time = s.Value
		case "vcs.modified":
			bi.Modified = s.Value == "true"
		}
	}
	return bi
}

func cmdVersion(args []string, stdout io.Writer) error {
	fs := newFlagSet("version")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	bi := readBuildInfo()
	if *asJSON {
		return json.NewEncoder(stdout).Encode(bi)
	}
	line := "edge " + bi.Version
	if bi.Commit != "" {
		c := bi.Commit[:min(12, len(bi.Commit))]
		if bi.Modified {
			c += "+modified"
		}
		line += " (" + c + " " + bi.Time + ")"
	}
	_, err := fmt.Fprintf(stdout, "%s %s\n", line, bi.GoVersion)
	return err
}

// cmdConfig prints the effective configuration with its secrets redacted.
func cmdConfig(args []string, stdout io.Writer) error {
	fs := newFlagSet("config")
	path := fs.String("config", defaultConfigPath(), "config file")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	out, err := cfg.Redact().Effective()
	if err != nil {
		return err
	}
	if *asJSON {
		var v any
		if err := yaml.Unmarshal(out, &v); err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	_, err = stdout.Write(out)
	return err
}

// cmdHelp prints the usage, or a command's help.
func cmdHelp(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		_, err := io.WriteString(stdout, usageText())
		return err
	}
	for _, c := range commands {
		if c.name == args[0] && c.name != "help" {
			return run(context.Background(), []string{c.name, "-h"}, stdout, io.Discard) // -h runs nothing
		}
	}
	return fmt.Errorf("%w help: no command %q\n\n%s", errUsage, args[0], usageText())
}
