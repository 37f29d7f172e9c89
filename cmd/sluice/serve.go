package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/transform"
)

const serveHelp = `Serves the lineage of a pipeline over HTTP for auditors and operators:

  /              the auditor's page: trace a record or an object through its
                 hops, the residency report, the verify status
  /api/v1/trace  ?topic=T&partition=P&offset=O, or ?object=KEY (the key, its
                 URL as trace prints it, or a path ending in the key): the
                 lineage events that account for a record or wrote an object
  /api/v1/report rows per jurisdiction, executor and outcome; decisions per rule
  /api/v1/residency rows per data jurisdiction x executor location, and the
                 rows processed where their decision did not allow it
  /api/v1/verify signatures, hash chains and offset coverage (JSON; ok=false
                 with problems when the trail is broken); ?objects=true also
                 reads every object the trail names and checks its sha256,
                 size and rows (slow on a large store); with --spec also
                 every offset the pipeline's consumer group committed
                 (502 when the broker cannot be read)
  /metrics       Prometheus metrics (admin token only)
  /healthz       liveness: 200 while the process is up
  /readyz        readiness: 200 when the lineage store can be read, else 503

Tokens: a token file holds one bearer token per line (at least 16
characters; '#' starts a comment; several lines let you rotate without
downtime). An admin token (--token-file) reads everything; an auditor token
(--auditor-token-file) reads only the lineage API and the page. /healthz,
/readyz and the page's static files need no token. Without any token file
every endpoint is open, which is allowed only on a loopback address.

'sluice run --http ADDR' serves the same endpoints beside a running
pipeline, with its metrics and readiness (broker, store, policy, executors),
and its /api/v1/verify always checks the group's commits.

Example:
  sluice serve --store file://$PWD/.demo --listen 127.0.0.1:8080
  open http://127.0.0.1:8080/#topic=events&partition=0&offset=42
`

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "serve (--store URL | --spec FILE) [--listen ADDR] [--token-file FILE] [--auditor-token-file FILE] [--key FILE]", serveHelp, stderr)
	store := fs.String("store", "", "lineage store `URL` (file:///abs/path or s3://bucket/prefix?endpoint=host:port; default with --spec: its lineage.url)")
	specFile := fs.String("spec", "", "pipeline spec `FILE`: /api/v1/verify also checks its consumer group's committed offsets against the chains")
	listen := fs.String("listen", "127.0.0.1:8080", "listen `address` (host:port)")
	adminFile := fs.String("token-file", "", "admin bearer tokens, one per line (`file`)")
	auditorFile := fs.String("auditor-token-file", "", "auditor bearer tokens, one per line (`file`)")
	pubFile := fs.String("key", "", "PEM ed25519 public key `file` /api/v1/verify checks against (default: the published one)")
	if err := parse(fs, args); err != nil {
		return err
	}
	opts := httpOptions{Logger: slog.New(slog.NewTextHandler(stderr, nil))}
	var err error
	if opts.AdminTokens, err = readTokens(*adminFile); err != nil {
		return err
	}
	if opts.AuditorTokens, err = readTokens(*auditorFile); err != nil {
		return err
	}
	if len(opts.AdminTokens)+len(opts.AuditorTokens) == 0 && !loopback(*listen) {
		return fmt.Errorf("%w: --listen %s is not a loopback address: give --token-file (and --auditor-token-file) so the lineage is not open to the network", errUsage, *listen)
	}
	if *pubFile != "" {
		pem, err := os.ReadFile(*pubFile)
		if err != nil {
			return err
		}
		if opts.VerifyKey, err = lineage.ParsePublicKey(pem); err != nil {
			return fmt.Errorf("%w: %s: %v", errUsage, *pubFile, err)
		}
	}
	if *specFile != "" {
		spec, err := loadAuditSpec(*specFile, store)
		if err != nil {
			return err
		}
		opts.Commits = specCommits(spec, false)
	}
	st, err := openLineageStore(ctx, *store)
	if err != nil {
		return err
	}
	opts.Store = st
	opts.Ready = []readinessCheck{readyStoreReadable("lineage store", st, lineagePrefix)}
	addr, wait, err := startHTTP(ctx, *listen, newHTTPServer(opts), opts.Logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sluice serve: listening on http://%s\n", addr)
	return wait()
}

// loadAuditSpec loads the pipeline spec an auditor's command checks the
// consumer group's commits with, and defaults *store to its lineage URL.
func loadAuditSpec(path string, store *string) (*transform.Spec, error) {
	spec, err := transform.Load(path)
	if err != nil {
		return nil, err
	}
	if *store == "" {
		*store = spec.Lineage.URL
	}
	return spec, nil
}

// specCommits reads the committed offsets of spec's consumer group on its
// topic. running says the pipeline runs in this process: a group that has
// committed nothing yet is then simply new; otherwise it is an error
// (a wrong group name must not pass as checked).
func specCommits(spec *transform.Spec, running bool) func(context.Context) (*lineage.Commits, error) {
	return func(ctx context.Context) (*lineage.Commits, error) {
		next, err := kafka.Committed(ctx, spec.Source.Brokers, spec.Source.Security, spec.Source.Group, spec.Source.Topic)
		if err != nil && !(running && errors.Is(err, kafka.ErrNoCommits)) {
			return nil, err
		}
		return &lineage.Commits{Pipeline: spec.Name, Topic: spec.Source.Topic, Group: spec.Source.Group, Next: next}, nil
	}
}

// readTokens reads a token file: one token per line, blank lines and
// '#' comments ignored. "" means no file and no tokens.
func readTokens(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var toks []string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < 16 {
			return nil, fmt.Errorf("%w: %s:%d: a token needs at least 16 characters", errUsage, path, i+1)
		}
		toks = append(toks, line)
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("%w: %s holds no token", errUsage, path)
	}
	return toks, nil
}

// loopback reports whether addr (host:port) binds only a loopback
// interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// startHTTP listens on addr now (so a busy port fails at once), serves h
// in the background and shuts down gracefully when ctx ends. wait blocks
// until the server has stopped and returns why, nil after a clean
// shutdown. `sluice run --http` calls it with the pipeline's context.
func startHTTP(ctx context.Context, addr string, h http.Handler, logger *slog.Logger) (bound net.Addr, wait func() error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("http: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	wait = func() error {
		select {
		case err := <-served:
			return fmt.Errorf("http: %w", err)
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		<-served
		return err
	}
	return ln.Addr(), wait, nil
}

// readinessCheck is one thing /readyz asks. Check returns nil when the
// part can do its job now; it must honour ctx.
type readinessCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// httpOptions configure newHTTPServer. Every field is optional.
type httpOptions struct {
	// Store holds the lineage; nil answers the lineage API with 404.
	Store lineage.Store
	// Prefix is the lineage prefix inside Store. Default: lineagePrefix.
	Prefix string
	// VerifyKey is the key /api/v1/verify checks segments against. Default
	// (nil): each pipeline's published key.
	VerifyKey ed25519.PublicKey
	// Metrics feeds /metrics beside the Go and process metrics. Default
	// (nil): only those.
	Metrics *metricsSource
	// Ready are the /readyz checks, run concurrently. Default (none):
	// always ready.
	Ready []readinessCheck
	// ReadyTimeout bounds each readiness check. Default (<= 0): 3s.
	ReadyTimeout time.Duration
	// AdminTokens read everything; AuditorTokens read only the lineage
	// API and the page. Both empty: no authentication at all (the caller
	// makes sure it listens on loopback only).
	AdminTokens, AuditorTokens []string
	// Logger gets one line per failed API call. Default: slog.Default().
	Logger *slog.Logger
	// Commits reads the pipeline's consumer group's committed offsets,
	// which /api/v1/verify then checks against the chains. Default (nil):
	// commits are not checked.
	Commits func(context.Context) (*lineage.Commits, error)
}

// role is what a bearer token may read.
type role int

const (
	roleNone role = iota
	roleAuditor
	roleAdmin
)

//go:embed web
var webAssets embed.FS

// newHTTPServer returns the handler of `sluice serve` and `sluice run
// --http`: metrics, probes, the lineage API and the auditor's page.
func newHTTPServer(opts httpOptions) http.Handler {
	if opts.Prefix == "" {
		opts.Prefix = lineagePrefix
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 3 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &server{opts: opts, auth: newAuth(opts.AdminTokens, opts.AuditorTokens)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	metrics := promhttp.HandlerFor(newMetricsRegistry(opts.Metrics), promhttp.HandlerOpts{})
	mux.Handle("GET /metrics", s.require(roleAdmin, metrics))
	mux.Handle("GET /api/v1/trace", s.require(roleAuditor, http.HandlerFunc(s.trace)))
	mux.Handle("GET /api/v1/report", s.require(roleAuditor, http.HandlerFunc(s.report)))
	mux.Handle("GET /api/v1/residency", s.require(roleAuditor, http.HandlerFunc(s.residency)))
	mux.Handle("GET /api/v1/verify", s.require(roleAuditor, http.HandlerFunc(s.verify)))
	mux.Handle("GET /api/", s.require(roleAuditor, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})))
	web, _ := fs.Sub(webAssets, "web")
	mux.Handle("GET /", pageHeaders(http.FileServerFS(web)))
	return mux
}

type server struct {
	opts httpOptions
	auth *auth
	// heavy serialises report, verify and object searches, which read
	// every segment: a burst of them queues instead of multiplying the
	// load on the store.
	heavy sync.Mutex
}

// auth matches bearer tokens in constant time per configured token.
type auth struct {
	open     bool
	admin    [][sha256.Size]byte
	auditors [][sha256.Size]byte
}

func newAuth(admin, auditors []string) *auth {
	a := &auth{open: len(admin)+len(auditors) == 0}
	for _, t := range admin {
		a.admin = append(a.admin, sha256.Sum256([]byte(t)))
	}
	for _, t := range auditors {
		a.auditors = append(a.auditors, sha256.Sum256([]byte(t)))
	}
	return a
}

func (a *auth) role(r *http.Request) role {
	if a.open {
		return roleAdmin
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return roleNone
	}
	// Hashing first makes every comparison the same length.
	h := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	got := roleNone
	for _, t := range a.admin {
		if subtle.ConstantTimeCompare(h[:], t[:]) == 1 {
			got = roleAdmin
		}
	}
	for _, t := range a.auditors {
		if subtle.ConstantTimeCompare(h[:], t[:]) == 1 && got == roleNone {
			got = roleAuditor
		}
	}
	return got
}

// require lets a request through when its token's role is at least min.
func (s *server) require(min role, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch got := s.auth.role(r); {
		case got == roleNone:
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			apiError(w, http.StatusUnauthorized, "a bearer token is required (Authorization: Bearer TOKEN)")
		case got < min:
			apiError(w, http.StatusForbidden, "this token may read only the lineage API")
		default:
			h.ServeHTTP(w, r)
		}
	})
}

// pageHeaders keeps the page to its own origin's scripts and styles.
func pageHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

func apiJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		fmt.Fprintf(&buf, "{\"error\": %q}\n", err.Error())
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func apiError(w http.ResponseWriter, status int, msg string) {
	apiJSON(w, status, map[string]string{"error": msg})
}

// storeFailed answers a failed store read: 504 when the client or the
// deadline gave up, 500 otherwise.
func (s *server) storeFailed(w http.ResponseWriter, r *http.Request, err error) {
	s.opts.Logger.Warn("lineage API", "path", r.URL.Path, "err", err)
	status := http.StatusInternalServerError
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		status = http.StatusGatewayTimeout
	}
	apiError(w, status, err.Error())
}

// traceResponse is the answer of /api/v1/trace.
type traceResponse struct {
	Topic     string          `json:"topic,omitempty"`
	Partition *int            `json:"partition,omitempty"`
	Offset    *int64          `json:"offset,omitempty"`
	Object    string          `json:"object,omitempty"`
	Events    []lineage.Event `json:"events"`
	Error     string          `json:"error,omitempty"`
}

func (s *server) trace(w http.ResponseWriter, r *http.Request) {
	if s.opts.Store == nil {
		apiError(w, http.StatusNotFound, "no lineage store is configured")
		return
	}
	q := r.URL.Query()
	var resp traceResponse
	var err error
	if obj := q.Get("object"); obj != "" {
		if len(obj) > 2048 {
			apiError(w, http.StatusBadRequest, "object: too long")
			return
		}
		resp.Object = obj
		s.heavy.Lock()
		resp.Events, err = lineage.TraceObject(r.Context(), s.opts.Store, s.opts.Prefix, obj)
		s.heavy.Unlock()
	} else {
		topic := q.Get("topic")
		part, perr := strconv.Atoi(q.Get("partition"))
		off, oerr := strconv.ParseInt(q.Get("offset"), 10, 64)
		if topic == "" || perr != nil || oerr != nil || part < 0 || off < 0 {
			apiError(w, http.StatusBadRequest, "trace needs topic, partition and offset (non-negative integers), or object")
			return
		}
		resp.Topic, resp.Partition, resp.Offset = topic, &part, &off
		resp.Events, err = lineage.Trace(r.Context(), s.opts.Store, s.opts.Prefix, topic, part, off)
	}
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	status := http.StatusOK
	if len(resp.Events) == 0 {
		resp.Events = []lineage.Event{}
		resp.Error = "no lineage event covers this record or object"
		status = http.StatusNotFound
	}
	apiJSON(w, status, resp)
}

func (s *server) report(w http.ResponseWriter, r *http.Request) {
	if s.opts.Store == nil {
		apiError(w, http.StatusNotFound, "no lineage store is configured")
		return
	}
	s.heavy.Lock()
	rep, err := lineage.Report(r.Context(), s.opts.Store, s.opts.Prefix)
	s.heavy.Unlock()
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	apiJSON(w, http.StatusOK, rep)
}

func (s *server) residency(w http.ResponseWriter, r *http.Request) {
	if s.opts.Store == nil {
		apiError(w, http.StatusNotFound, "no lineage store is configured")
		return
	}
	s.heavy.Lock()
	m, err := lineage.Residency(r.Context(), s.opts.Store, s.opts.Prefix, lineage.Window{})
	s.heavy.Unlock()
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	apiJSON(w, http.StatusOK, m)
}

func (s *server) verify(w http.ResponseWriter, r *http.Request) {
	if s.opts.Store == nil {
		apiError(w, http.StatusNotFound, "no lineage store is configured")
		return
	}
	opts := lineage.VerifyOptions{Key: s.opts.VerifyKey}
	if s.opts.Commits != nil {
		// Before the lineage: a commit follows its batch's lineage.
		c, err := s.opts.Commits(r.Context())
		if err != nil {
			s.opts.Logger.Warn("lineage API", "path", r.URL.Path, "err", err)
			apiError(w, http.StatusBadGateway, err.Error())
			return
		}
		opts.Commits = c
	}
	if r.URL.Query().Get("objects") == "true" {
		// Reads every feature and quarantine object the trail names.
		opts.Objects = openObjectStore
		opts.Rows = storage.CountRows
	}
	s.heavy.Lock()
	rep, err := lineage.VerifyWith(r.Context(), s.opts.Store, s.opts.Prefix, opts)
	s.heavy.Unlock()
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	if rep.Problems == nil {
		rep.Problems = []string{}
	}
	apiJSON(w, http.StatusOK, rep)
}

// readyResult is the answer of /readyz.
type readyResult struct {
	Ready  bool          `json:"ready"`
	Checks []checkResult `json:"checks"`
}

type checkResult struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Error is shown to admin tokens only (and when no tokens are set):
	// probes are unauthenticated and errors name hosts.
	Error string `json:"error,omitempty"`
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	res := readyResult{Ready: true, Checks: make([]checkResult, len(s.opts.Ready))}
	var wg sync.WaitGroup
	for i, c := range s.opts.Ready {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), s.opts.ReadyTimeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.Check(ctx) }()
			var err error
			select {
			case err = <-done:
			case <-ctx.Done():
				err = fmt.Errorf("no answer within %s", s.opts.ReadyTimeout)
			}
			res.Checks[i] = checkResult{Name: c.Name, OK: err == nil}
			if err != nil {
				res.Checks[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	admin := s.auth.role(r) == roleAdmin
	for i := range res.Checks {
		if !res.Checks[i].OK {
			res.Ready = false
		}
		if !admin {
			res.Checks[i].Error = ""
		}
	}
	status := http.StatusOK
	if !res.Ready {
		status = http.StatusServiceUnavailable
	}
	apiJSON(w, status, res)
}

// errStop ends an Iter early once it has seen a key.
var errStop = errors.New("stop")

// readyStoreReadable checks that the store lists prefix.
func readyStoreReadable(name string, st lineage.Store, prefix string) readinessCheck {
	return readinessCheck{Name: name, Check: func(ctx context.Context) error {
		err := st.Iter(ctx, prefix, func(string) error { return errStop })
		if errors.Is(err, errStop) {
			return nil
		}
		return err
	}}
}

// readyStoreWritable checks that the store takes a small object at key
// (overwritten each time). Point it at a sink, not at a lineage bucket
// under Object Lock, where every write is retained.
func readyStoreWritable(name string, st lineage.Store, key string) readinessCheck {
	return readinessCheck{Name: name, Check: func(ctx context.Context) error {
		body := []byte(time.Now().UTC().Format(time.RFC3339) + "\n")
		return st.Put(ctx, key, bytes.NewReader(body), int64(len(body)))
	}}
}

// readyBrokers checks that at least one Kafka broker accepts a TCP
// connection.
func readyBrokers(brokers []string) readinessCheck {
	return readinessCheck{Name: "kafka brokers", Check: func(ctx context.Context) error {
		var d net.Dialer
		var errs []error
		for _, b := range brokers {
			c, err := d.DialContext(ctx, "tcp", b)
			if err == nil {
				return c.Close()
			}
			errs = append(errs, err)
		}
		if len(errs) == 0 {
			return errors.New("no broker configured")
		}
		return errors.Join(errs...)
	}}
}

// readyPolicy checks that a policy is loaded (its revision is known).
func readyPolicy(revision func() string) readinessCheck {
	return readinessCheck{Name: "policy", Check: func(context.Context) error {
		if revision() == "" {
			return errors.New("no policy loaded")
		}
		return nil
	}}
}

// readyExecutors checks that at least one of execs (the executors the
// spec allows) is healthy.
func readyExecutors(execs []gpuexec.Executor) readinessCheck {
	return readinessCheck{Name: "executors", Check: func(ctx context.Context) error {
		var errs []error
		for _, e := range execs {
			err := e.Healthy(ctx)
			if err == nil {
				return nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", e.ID(), err))
		}
		if len(errs) == 0 {
			return errors.New("no executor configured")
		}
		return errors.Join(errs...)
	}}
}
