// Command sluice is the one binary of sluice: it runs pipelines, the demo,
// and the tools compliance officers and auditors use. main only wires; the
// work happens in the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes, the same for every sub-command.
const (
	exitOK    = 0
	exitFail  = 1 // a failed check or invalid input
	exitUsage = 2 // a usage error
)

// errUsage marks an error the user fixes by reading --help.
var errUsage = errors.New("usage")

// errFailed marks a check that ran and failed; its output was printed.
var errFailed = errors.New("check failed")

const usage = `sluice — a compliance-aware feature pipeline.

Kafka records become Arrow batches; Open Policy Agent decides where each slice
may legally be processed; an allowed executor computes the features; the
features land in object storage as Parquet; every hop is recorded as signed,
hash-chained OpenLineage events. An offset is committed only after its output
and lineage are durable.

Usage:
  sluice <command> [flags]

Commands for data engineers:
  demo        run the main job end to end on embedded defaults (Kafka, store, OPA)
  run         run a pipeline spec against a real Kafka cluster and object store
  validate    check a pipeline spec and print a summary or every problem
  bench       measure the pipeline end to end against a minimal baseline
  simulate    a day of routing on simulated executors: utilization, latency, cost, legality
  training-set   point-in-time training set from stored features (residency-checked)
  quality report data-quality facts per window, drift flagged by PSI

Commands for platform operators:
  executor serve   run an executor behind an Arrow Flight endpoint
  serve            HTTP: /metrics, /healthz, /readyz, the lineage API and the auditor's page

Commands for compliance officers:
  policy test   run the Rego unit tests of a policy directory
  policy eval   print the decision for one input document
  policy diff   show how a policy change re-routes recorded inputs

Commands for auditors:
  lineage verify   check signatures, hash chains and offset coverage
  lineage trace    show where one Kafka record went
  lineage report   rows per jurisdiction, executor and outcome (--residency: violations)
  lineage export   send the events to an OpenLineage endpoint (Marquez)

Run 'sluice <command> -h' for the flags of a command. Queries take -o json.
Exit status: 0 success, 1 a failed check or invalid input, 2 a usage error.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches a command line and maps its error to an exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "sluice:", err)
		return exitUsage
	case errors.Is(err, errFailed):
		return exitFail
	default:
		fmt.Fprintln(stderr, "sluice:", err)
		return exitFail
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr)
	case "run":
		return cmdRun(ctx, rest, stdout, stderr)
	case "bench":
		return cmdBench(ctx, rest, stdout, stderr)
	case "validate":
		return cmdValidate(rest, stdout, stderr)
	case "policy":
		return cmdPolicy(ctx, rest, stdout, stderr)
	case "lineage":
		return cmdLineage(ctx, rest, stdout, stderr)
	case "training-set":
		return cmdTrainingSet(ctx, rest, stdout, stderr)
	case "quality":
		return cmdQuality(ctx, rest, stdout, stderr)
	case "simulate":
		return cmdSimulate(ctx, rest, stdout, stderr)
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "executor":
		return cmdExecutor(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "sluice", version())
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

// newFlags makes a FlagSet whose -h prints a teaching usage text.
func newFlags(name, synopsis, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sluice %s\n\n%s\nFlags:\n", synopsis, help)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, turning a flag error into a usage error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// parseOutput parses args for a command that takes -o and reports whether
// JSON output was asked for.
func parseOutput(fs *flag.FlagSet, o *outputFlag, args []string) (bool, error) {
	if err := parse(fs, args); err != nil {
		return false, err
	}
	return o.json()
}

// outputFlag registers -o and checks its value after parsing.
type outputFlag struct{ v string }

func (o *outputFlag) register(fs *flag.FlagSet) {
	fs.StringVar(&o.v, "o", "text", "output format: text or json")
}

func (o *outputFlag) json() (bool, error) {
	switch o.v {
	case "text", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, fmt.Errorf("%w: -o %q: want text or json", errUsage, o.v)
}
