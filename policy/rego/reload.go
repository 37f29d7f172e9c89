package rego

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/bundle"

	"github.com/sluice-dev/sluice/policy"
)

// DefaultInterval is how often a Reloader looks for a new policy when
// ReloaderConfig.Interval is zero.
const DefaultInterval = 5 * time.Second

// MaxBundleSize bounds a bundle read from a file or URL.
const MaxBundleSize = 64 << 20

// ErrRejected wraps every reason a new policy revision was not made live:
// it does not parse or compile, a Rego test fails, or a bundle's signature
// does not verify. The revision live before stays live.
var ErrRejected = errors.New("policy/rego: new policy revision rejected")

// ReloaderConfig says where a hot-reloaded policy comes from. Exactly one
// of Dir and Bundle is set.
type ReloaderConfig struct {
	// Dir is a policy directory (*.rego, *_test.rego, *.json) whose
	// contents are compared every Interval. Default: none.
	Dir string `yaml:"dir"`
	// Bundle is an OPA bundle (.tar.gz, as `opa build` writes it): a file
	// path, or an http:// or https:// URL fetched with If-None-Match on the
	// last ETag. The manifest's revision becomes the policy revision
	// ("sha256:" + hash of the files when the manifest has none).
	// Default: none.
	Bundle string `yaml:"bundle"`
	// PublicKey, when set, makes a bundle's signature (.signatures.json)
	// mandatory and verified with this key: a PEM public key for
	// RS*/PS*/ES* algorithms, the shared secret for HS*. Default: none (a
	// signature is not checked).
	PublicKey string `yaml:"public_key"`
	// KeyAlgorithm is the signing algorithm of PublicKey. Default: RS256.
	KeyAlgorithm string `yaml:"key_algorithm"`
	// KeyID names PublicKey; a signature whose keyid claim differs fails.
	// Default: "default", the id `opa build --signing-key` uses.
	KeyID string `yaml:"key_id"`
	// Query and Timeout are as in Config.
	Query   string        `yaml:"query"`
	Timeout time.Duration `yaml:"timeout"`
	// Interval is the time between two looks for a change in Run.
	// Default: DefaultInterval (5s).
	Interval time.Duration `yaml:"interval"`
	// OnReload, when set, is called after each attempt to apply a changed
	// policy, whether it went live or was rejected (metrics hook). It is
	// called from the goroutine that ran Check, one call at a time.
	// Default: none.
	OnReload func(ReloadEvent) `yaml:"-"`
	// Logger receives one record per reload and rejection.
	// Default: slog.Default().
	Logger *slog.Logger `yaml:"-"`
	// HTTPClient fetches a bundle URL. Default: a client with a 30s timeout.
	HTTPClient *http.Client `yaml:"-"`
}

// Validate reports a contradictory or incomplete configuration.
func (c ReloaderConfig) Validate() error {
	switch {
	case c.Dir == "" && c.Bundle == "":
		return errors.New("policy/rego: reloader needs a policy Dir or a Bundle")
	case c.Dir != "" && c.Bundle != "":
		return errors.New("policy/rego: set reloader Dir or Bundle, not both")
	case c.Dir != "" && c.PublicKey != "":
		return errors.New("policy/rego: a public key verifies bundles; a policy directory is not signed")
	case c.Interval < 0:
		return fmt.Errorf("policy/rego: negative reload interval %v", c.Interval)
	case c.Timeout < 0:
		return fmt.Errorf("policy/rego: negative timeout %v", c.Timeout)
	}
	return nil
}

// ReloadEvent reports one attempt to apply a changed policy.
type ReloadEvent struct {
	Time time.Time
	// Revision is the candidate's revision; empty when it could not be
	// read far enough to know it.
	Revision string
	// Previous is the revision live when the attempt started.
	Previous string
	// Err is nil when Revision went live, and wraps ErrRejected when
	// Previous stayed live.
	Err error
}

// Reloader is a policy.Snapshotter whose policy follows a directory or a
// bundle. A changed policy is compiled and its Rego tests run before it
// replaces the live one; a change that fails either is rejected and the
// live revision stays. Decisions are memoized per revision (policy.Memo).
//
// Reloader is safe for concurrent use. Decide, Revision and Snapshot never
// block on a reload in progress.
type Reloader struct {
	cfg  ReloaderConfig
	log  *slog.Logger
	live atomic.Pointer[revision]

	mu       sync.Mutex // serialises Check
	lastSeen string     // hash of the source last looked at, live or rejected
	etag     string     // of the last bundle fetched from a URL
}

// revision is one compiled policy and its memo.
type revision struct {
	d    *Decider
	memo *policy.Memo
}

var _ policy.Snapshotter = (*Reloader)(nil)

// NewReloader loads, compiles and tests the policy once. Unlike a later
// change, a first policy that fails is an error: there is nothing to fall
// back to.
func NewReloader(ctx context.Context, cfg ReloaderConfig) (*Reloader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.KeyAlgorithm == "" {
		cfg.KeyAlgorithm = "RS256"
	}
	if cfg.KeyID == "" {
		cfg.KeyID = "default"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	r := &Reloader{cfg: cfg, log: cfg.Logger}
	if r.log == nil {
		r.log = slog.Default()
	}
	if _, err := r.Check(ctx); err != nil {
		return nil, err
	}
	if r.live.Load() == nil {
		return nil, errors.New("policy/rego: no policy loaded")
	}
	return r, nil
}

// Decide decides with the live revision, memoized.
func (r *Reloader) Decide(ctx context.Context, in policy.Input) (policy.Decision, error) {
	return r.live.Load().memo.Decide(ctx, in)
}

// Revision is the live revision.
func (r *Reloader) Revision() string { return r.live.Load().d.Revision() }

// Snapshot returns the memoized Decider of the live revision. It keeps
// deciding with that revision after a reload, so a batch started before a
// reload finishes under the policy it started with.
func (r *Reloader) Snapshot() policy.Decider { return r.live.Load().memo }

// Run calls Check every Interval until ctx ends, and returns ctx's error.
// A rejected change is logged and reported to OnReload; Run goes on.
func (r *Reloader) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			_, _ = r.Check(ctx) // logged and reported by Check
		}
	}
}

// Check looks at the source once. When it changed, the new policy is
// compiled and tested and, if both succeed, goes live: Check reports
// whether that happened. err says why a changed policy was rejected (it
// wraps ErrRejected) or why the source could not be read; either way the
// live revision stays. A rejected source is not tried again until it
// changes.
func (r *Reloader) Check(ctx context.Context) (reloaded bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var prev string
	if l := r.live.Load(); l != nil {
		prev = l.d.Revision()
	}
	fsys, rev, seen, err := r.fetch(ctx)
	if err != nil {
		// An unreadable source (a network error, a file being replaced)
		// is not a new revision: log it, keep the live one.
		r.log.Warn("policy source unreadable, keeping the live revision", "source", r.source(), "revision", prev, "err", err)
		return false, err
	}
	if fsys == nil || seen == r.lastSeen {
		return false, nil
	}
	r.lastSeen = seen
	d, err := r.prepare(ctx, fsys, rev)
	if d != nil {
		rev = d.Revision()
	}
	if err == nil && d.Revision() == prev {
		return false, nil // the same policy, e.g. only a test file changed back
	}
	ev := ReloadEvent{Time: time.Now(), Revision: rev, Previous: prev, Err: err}
	if err != nil {
		r.log.Error("policy revision rejected, keeping the live revision", "source", r.source(), "candidate", rev, "revision", prev, "err", err)
	} else {
		r.live.Store(&revision{d: d, memo: policy.NewMemo(d)})
		r.log.Info("policy revision live", "source", r.source(), "revision", rev, "previous", prev)
	}
	if r.cfg.OnReload != nil {
		r.cfg.OnReload(ev)
	}
	return err == nil, err
}

func (r *Reloader) source() string { return r.cfg.Dir + r.cfg.Bundle }

// prepare compiles the candidate and runs its Rego tests. A policy without
// tests is accepted; one failing test rejects it.
func (r *Reloader) prepare(ctx context.Context, fsys fs.FS, rev string) (*Decider, error) {
	d, err := compile(ctx, Config{Query: r.cfg.Query, Timeout: r.cfg.Timeout}, fsys, rev)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	var out bytes.Buffer
	_, failed, err := RunTests(ctx, fsys, &out)
	switch {
	case errors.Is(err, ErrNoTests):
	case err != nil:
		return d, fmt.Errorf("%w: tests: %w", ErrRejected, err)
	case failed > 0:
		var lines []string
		for l := range strings.Lines(out.String()) {
			if !strings.HasPrefix(l, "PASS ") {
				lines = append(lines, strings.TrimRight(l, "\n"))
			}
		}
		return d, fmt.Errorf("%w: %d Rego test(s) failed:\n%s", ErrRejected, failed, strings.Join(lines, "\n"))
	}
	return d, nil
}

// fetch reads the source. fsys is nil when a URL answered 304 Not
// Modified. seen hashes what was read, so an unchanged source is skipped
// without compiling. rev is the bundle's revision, if any.
func (r *Reloader) fetch(ctx context.Context) (fsys fs.FS, rev, seen string, err error) {
	if r.cfg.Dir != "" {
		fsys = os.DirFS(r.cfg.Dir)
		seen, err = hashFiles(fsys)
		return fsys, "", seen, err
	}
	raw, err := r.readBundle(ctx)
	if err != nil || raw == nil {
		return nil, "", "", err
	}
	sum := sha256.Sum256(raw)
	seen = hex.EncodeToString(sum[:])
	if seen == r.lastSeen {
		return fsys, "", seen, nil
	}
	fsys, rev, err = r.openBundle(raw)
	if err != nil {
		// A bundle that does not open or verify is a rejected revision,
		// not an unreadable source: report it once per content.
		r.lastSeen = seen
		ev := ReloadEvent{Time: time.Now(), Err: fmt.Errorf("%w: %w", ErrRejected, err)}
		if l := r.live.Load(); l != nil {
			ev.Previous = l.d.Revision()
		}
		r.log.Error("policy bundle rejected, keeping the live revision", "source", r.source(), "revision", ev.Previous, "err", err)
		if r.cfg.OnReload != nil {
			r.cfg.OnReload(ev)
		}
		return nil, "", "", ev.Err
	}
	return fsys, rev, seen, nil
}

// readBundle returns the bundle's bytes, or nil when a URL says it has not
// changed since the last fetch.
func (r *Reloader) readBundle(ctx context.Context) ([]byte, error) {
	src := r.cfg.Bundle
	if !strings.HasPrefix(src, "http://") && !strings.HasPrefix(src, "https://") {
		f, err := os.Open(src)
		if err != nil {
			return nil, fmt.Errorf("policy/rego: bundle: %w", err)
		}
		defer f.Close()
		return readLimited(f, src)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, fmt.Errorf("policy/rego: bundle: %w", err)
	}
	if r.etag != "" && r.live.Load() != nil {
		req.Header.Set("If-None-Match", r.etag)
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("policy/rego: bundle: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, nil
	case http.StatusOK:
	default:
		return nil, fmt.Errorf("policy/rego: bundle %s: HTTP %s", src, resp.Status)
	}
	raw, err := readLimited(resp.Body, src)
	if err != nil {
		return nil, err
	}
	r.etag = resp.Header.Get("ETag")
	return raw, nil
}

func readLimited(rd io.Reader, name string) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(rd, MaxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy/rego: bundle %s: %w", name, err)
	}
	if len(raw) > MaxBundleSize {
		return nil, fmt.Errorf("policy/rego: bundle %s is larger than %d bytes", name, MaxBundleSize)
	}
	return raw, nil
}

// openBundle reads an OPA bundle, verifying its signature when a key is
// configured, into the file layout load reads: its modules (tests
// included) at their paths and its data document as data.json at the root.
func (r *Reloader) openBundle(raw []byte) (fs.FS, string, error) {
	rd := opabundle.NewReader(bytes.NewReader(raw)).
		WithRegoVersion(ast.RegoV1).
		WithSizeLimitBytes(MaxBundleSize)
	if r.cfg.PublicKey != "" {
		key := &opabundle.KeyConfig{Key: r.cfg.PublicKey, Algorithm: r.cfg.KeyAlgorithm}
		vc := opabundle.NewVerificationConfig(map[string]*opabundle.KeyConfig{r.cfg.KeyID: key}, r.cfg.KeyID, "", nil)
		rd = rd.WithBundleVerificationConfig(vc)
	}
	b, err := rd.Read()
	if err != nil {
		return nil, "", fmt.Errorf("read bundle: %w", err)
	}
	if r.cfg.PublicKey != "" && len(b.Signatures.Signatures) == 0 {
		return nil, "", errors.New("bundle is not signed, and a public key is configured")
	}
	fsys := fstest.MapFS{}
	for _, m := range b.Modules {
		p := strings.TrimPrefix(path.Clean("/"+m.Path), "/")
		fsys[p] = &fstest.MapFile{Data: m.Raw}
	}
	if len(b.Data) > 0 {
		data, err := json.Marshal(b.Data)
		if err != nil {
			return nil, "", fmt.Errorf("bundle data: %w", err)
		}
		fsys["data.json"] = &fstest.MapFile{Data: data}
	}
	return fsys, b.Manifest.Revision, nil
}

// hashFiles hashes the paths and contents of the *.rego and *.json files
// of fsys, tests included, so that any edit is noticed.
func hashFiles(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".rego") || strings.HasSuffix(p, ".json")) {
			return err
		}
		raw, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%d:%s%d:", len(p), p, len(raw))
		h.Write(raw)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("policy/rego: read policy directory: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
