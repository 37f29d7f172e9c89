package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/gpuexec/flight"
)

const executorUsage = `Usage: sluice executor serve [flags]

Commands for platform operators:
  serve   run an executor behind an Arrow Flight endpoint
`

func cmdExecutor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, executorUsage)
		return fmt.Errorf("%w: executor needs a sub-command", errUsage)
	}
	switch args[0] {
	case "serve":
		return cmdExecutorServe(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, executorUsage)
		return nil
	}
	fmt.Fprint(stderr, executorUsage)
	return fmt.Errorf("%w: unknown executor sub-command %q", errUsage, args[0])
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

func cmdExecutorServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("executor serve", "executor serve --id ID --location-kind onprem|cloud --jurisdiction CC --listen HOST:PORT [flags]",
		`Runs one executor behind an Arrow Flight DoExchange endpoint until SIGINT or
SIGTERM, then stops taking new batches and lets running ones finish
(--shutdown-grace). A pipeline (sluice run) sends it batches with their plan
and routing decision; it refuses, with PermissionDenied, any batch whose
policy decision does not allow this executor's --id, so a misrouted batch
never touches its data. Prints "listening on ADDR" on stdout once it accepts
connections (with --listen 127.0.0.1:0 the port is chosen for you).

The --id and location flags must match the executor entry in the pipeline
spec: policy decides on them, and the client checks them on every health
probe. Location kinds: "onprem" (your own site) or "cloud".

Resilience testing: --inject-errors RATE fails that share (0 to 1) of
batches on purpose with gRPC Internal, before touching their data, and logs
each at warn level; the error message says it was injected. It is for chaos
and resilience tests of the pipelines using this executor (they should
route each failed batch again, losing and duplicating nothing); never set it
in production. --inject-seed makes the sequence of failures repeatable.

Security: every call must carry the bearer token in --token-file (one line;
required unless --listen is a loopback address). Use --tls-cert and --tls-key
for anything that leaves the host; without them traffic is plaintext.

Example (an on-prem executor in Frankfurt, and a cloud one in Virginia):
  sluice executor serve --id dc-fra --location-name fra --location-kind onprem \
      --jurisdiction DE --site fra-1 --cert iso27001 --listen 10.0.0.5:8815 \
      --token-file /etc/sluice/executor.token --tls-cert fra.pem --tls-key fra.key
  sluice executor serve --id aws-us-east-1 --location-name us-east-1 \
      --location-kind cloud --provider aws --region us-east-1 --jurisdiction US \
      --cert soc2 --listen 127.0.0.1:8816
`, stderr)
	id := fs.String("id", "", "executor `id`, as the pipeline spec and policy name it (required)")
	kind := fs.String("kind", "cpu", "executor `kind`: cpu")
	var loc gpuexec.Location
	fs.StringVar(&loc.Name, "location-name", "", "short location `label` used in object keys (default: --region, --site, or --id)")
	fs.StringVar(&loc.Kind, "location-kind", "", "`onprem` or cloud (required)")
	fs.StringVar(&loc.Jurisdiction, "jurisdiction", "", "ISO country `code` of where it runs, e.g. DE (required)")
	fs.StringVar(&loc.Provider, "provider", "", "cloud `provider`, e.g. aws")
	fs.StringVar(&loc.Region, "region", "", "cloud `region`, e.g. us-east-1")
	fs.StringVar(&loc.Site, "site", "", "on-prem `site`, e.g. fra-1")
	var certs listFlag
	fs.Var(&certs, "cert", "a `certification` the location holds, e.g. hipaa (repeatable)")
	listen := fs.String("listen", "127.0.0.1:8815", "`address` to listen on")
	tokenFile := fs.String("token-file", "", "`file` holding the bearer token clients must send")
	tlsCert := fs.String("tls-cert", "", "TLS certificate `file` (PEM); with --tls-key")
	tlsKey := fs.String("tls-key", "", "TLS private key `file` (PEM)")
	workers := fs.Int("workers", 0, "kernel goroutines (default: GOMAXPROCS)")
	maxMsg := fs.Int("max-message-bytes", flight.DefaultMaxMessageBytes, "largest gRPC message; clients must use the same")
	timeout := fs.Duration("timeout", 5*time.Minute, "longest one batch may take")
	grace := fs.Duration("shutdown-grace", 30*time.Second, "on SIGTERM, how long running batches may take to finish")
	injectRate := fs.Float64("inject-errors", 0, "for chaos and resilience tests only: fail this `share` (0 to 1) of batches on purpose")
	injectSeed := fs.Uint64("inject-seed", 0, "`seed` of which batches --inject-errors fails, to repeat a run (default: random)")
	if err := parse(fs, args); err != nil {
		return err
	}
	loc.Certifications = certs
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case *id == "":
		return fmt.Errorf("%w: executor serve needs --id", errUsage)
	case loc.Kind != "onprem" && loc.Kind != "cloud":
		return fmt.Errorf("%w: --location-kind is %q; want onprem or cloud", errUsage, loc.Kind)
	case loc.Jurisdiction == "":
		return fmt.Errorf("%w: executor serve needs --jurisdiction (where it runs, e.g. DE)", errUsage)
	case *kind != "cpu":
		return fmt.Errorf("%w: --kind %q: this build serves cpu executors", errUsage, *kind)
	case (*tlsCert == "") != (*tlsKey == ""):
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	case !(*injectRate >= 0 && *injectRate <= 1):
		return fmt.Errorf("%w: --inject-errors is %v; want a share from 0 to 1, e.g. 0.3", errUsage, *injectRate)
	}
	if loc.Name == "" {
		loc.Name = firstNonEmpty(loc.Region, loc.Site, *id)
	}

	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	opts := flight.ServerOptions{MaxMessageBytes: *maxMsg, Timeout: *timeout, Logger: logger,
		InjectErrorRate: *injectRate, InjectSeed: *injectSeed}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return err
		}
		opts.Token = strings.TrimSpace(string(b))
		if opts.Token == "" {
			return fmt.Errorf("%w: %s is empty", errUsage, *tokenFile)
		}
	}
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("load TLS key pair: %w", err)
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if opts.Token == "" && !isLoopback(lis.Addr()) {
		lis.Close()
		return fmt.Errorf("%w: listening on %s, beyond loopback, needs --token-file", errUsage, lis.Addr())
	}
	if opts.TLS == nil && !isLoopback(lis.Addr()) {
		logger.Warn("serving plaintext beyond loopback: the token and the data cross the network unencrypted; set --tls-cert and --tls-key")
	}
	if opts.InjectErrorRate > 0 {
		logger.Warn("failing batches on purpose for resilience testing (--inject-errors)", "rate", opts.InjectErrorRate)
	}

	cpu := gpuexec.NewCPU(*id, loc, gpuexec.CPUOptions{Workers: *workers})
	srv, err := flight.NewServer(cpu, opts)
	if err != nil {
		lis.Close()
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	logger.Info("executor serving", "id", *id, "kind", *kind, "location", loc.Name, "location_kind", loc.Kind,
		"jurisdiction", loc.Jurisdiction, "addr", lis.Addr().String(), "tls", opts.TLS != nil, "token", opts.Token != "")
	fmt.Fprintf(stdout, "listening on %s\n", lis.Addr())

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("stopping: finishing running batches", "grace", *grace)
	cpu.Close() // health probes now say unavailable, so routers move on
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	srv.Shutdown(sctx)
	if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
