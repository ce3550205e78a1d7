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

// errUsage marks command-line mistakes.
var errUsage = errors.New("usage")

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

const usage = `usage: edge <command> [flags]

commands:
  run       [-config FILE]               serve until SIGTERM
  validate  [-config FILE]               check a config file
  certs     [-admin URL] [-json]         list managed certificates
  renew     [-admin URL] NAME            renew a certificate now
  export    [-admin URL] [-dry-run] [NAME...] deliver certificates to the export targets now; -dry-run tests each target
  preflight [-config FILE] [-connect H:P] check that HTTP-01 requests reach an edge for every name
  version                                print the version

-config defaults to $EDGE_CONFIG, then ./edge.yaml, then /etc/edge/edge.yaml.`

// Run executes one command; main maps its error to an exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w\n%s", errUsage, usage)
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
	case "export":
		return cmdExport(ctx, rest, stdout)
	case "preflight":
		return cmdPreflight(ctx, rest, stdout)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "edge %s\n", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("%w: unknown command %q\n%s", errUsage, cmd, usage)
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
