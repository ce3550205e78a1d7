// Command edge is a reverse proxy that terminates TLS for a web farm with
// certificates it obtains and renews by ACME.
//
//	edge run [-config FILE]        serve (SIGHUP or a file change reloads; SIGTERM drains)
//	edge validate [-config FILE]   check a config file
//	edge certs [-admin URL] [-json] list managed certificates
//	edge renew [-admin URL] NAME   renew a certificate now
//	edge preflight [-config FILE]  check that HTTP-01 requests reach an edge, through the load balancer
//	edge version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // runtime failure or invalid config
	exitUsage = 2
)

// errUsage marks command-line mistakes; its text leads the message.
var errUsage = errors.New("edge")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
		os.Exit(exitOK)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitUsage)
	default:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitError)
	}
}

// Run executes one command; main maps its error to an exit code. A
// request for help (-h) prints to stdout and returns nil.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := run(ctx, args, stdout, stderr)
	var he *helpError
	if errors.As(err, &he) {
		_, err = io.WriteString(stdout, he.text)
	}
	return err
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: a command is needed\n\n%s", errUsage, usageText())
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, stderr)
	case "validate":
		return cmdValidate(rest, stdout)
	case "certs":
		return cmdCerts(ctx, rest, stdout)
	case "renew":
		return cmdRenew(ctx, rest, stdout)
	case "revoke":
		return cmdRevoke(ctx, rest, stdout)
	case "export":
		return cmdExport(ctx, rest, stdout)
	case "drain", "undrain":
		return cmdDrain(ctx, cmd, rest, stdout)
	case "preflight":
		return cmdPreflight(ctx, rest, stdout)
	case "config":
		return cmdConfig(rest, stdout)
	case "version", "-version", "--version":
		return cmdVersion(rest, stdout)
	case "completion":
		return cmdCompletion(rest, stdout)
	case "help", "-h", "-help", "--help":
		return cmdHelp(rest, stdout)
	}
	return fmt.Errorf("%w: unknown command %q\n\n%s", errUsage, cmd, usageText())
}

// defaultConfigPath follows DESIGN.md: $EDGE_CONFIG, ./edge.yaml, /etc/edge/edge.yaml.
func defaultConfigPath() string {
	if p := os.Getenv("EDGE_CONFIG"); p != "" {
		return p
	}
	if _, err := os.Stat("edge.yaml"); err == nil {
		return "edge.yaml"
	}
	return "/etc/edge/edge.yaml"
}
