package rego

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/sluice-dev/sluice/policy"
)

// DefaultQuery is the query evaluated when Config.Query is empty.
const DefaultQuery = "data.sluice.route"

// DefaultTimeout bounds one evaluation when Config.Timeout is zero.
const DefaultTimeout = 100 * time.Millisecond

// Errors a Decision can be failed closed with. Each is wrapped with the
// cause; match with errors.Is.
var (
	// ErrUndefined means the query produced no result for the input: the
	// policy has no answer, so nothing is allowed.
	ErrUndefined = errors.New("policy/rego: query result is undefined")
	// ErrMalformed means the query answered something that is not a route
	// document ({"allow": bool, "reasons": [...], ...}).
	ErrMalformed = errors.New("policy/rego: malformed query result")
	// ErrEval means OPA failed to evaluate the query (a builtin error, a
	// conflict, a cancellation or timeout).
	ErrEval = errors.New("policy/rego: evaluation failed")
)

// Config says where the policy comes from and how it is evaluated.
type Config struct {
	// FS holds the policy modules (*.rego; *_test.rego are skipped) and
	// JSON data files (*.json, mounted under their directory's data path).
	// Default: none. Exactly one of FS and Dir must be set.
	FS fs.FS
	// Dir is a directory to read instead of FS. Default: none.
	Dir string
	// Query is the Rego query answering a route document.
	// Default: DefaultQuery ("data.sluice.route").
	Query string
	// Timeout bounds each evaluation; the caller's context may end it
	// sooner. Default: DefaultTimeout (100ms).
	Timeout time.Duration
}

// Decider evaluates a compiled Rego policy. It is safe for concurrent use;
// the prepared query is read-only after New.
type Decider struct {
	query    string
	timeout  time.Duration
	revision string
	prepared rego.PreparedEvalQuery
}

var _ policy.Decider = (*Decider)(nil)

// New loads and compiles the policy once. It fails when the configuration
// is contradictory, when no module is found, and when a module does not
// parse or compile; the error names the file and line.
func New(ctx context.Context, cfg Config) (*Decider, error) {
	fsys, err := cfg.source()
	if err != nil {
		return nil, err
	}
	return compile(ctx, cfg, fsys, "")
}

// compile builds a Decider from the policy in fsys. revision, when not
// empty, replaces the hash of the loaded files (a bundle's revision).
func compile(ctx context.Context, cfg Config, fsys fs.FS, revision string) (*Decider, error) {
	if cfg.Query == "" {
		cfg.Query = DefaultQuery
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("policy/rego: negative timeout %v", cfg.Timeout)
	}
	b, err := load(fsys, false)
	if err != nil {
		return nil, err
	}
	if len(b.modules) == 0 {
		return nil, errors.New("policy/rego: no policy modules (*.rego) found")
	}
	opts := []func(*rego.Rego){
		rego.Query(cfg.Query),
		rego.Store(inmem.NewFromObject(b.data)),
		rego.SetRegoVersion(ast.RegoV1),
		// A builtin error inside a deny rule would otherwise make the rule
		// undefined, which is a silent allow.
		rego.StrictBuiltinErrors(true),
	}
	for _, m := range b.modules {
		opts = append(opts, rego.ParsedModule(m))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy/rego: compile %s: %w", cfg.Query, err)
	}
	if revision == "" {
		revision = b.revision
	}
	return &Decider{query: cfg.Query, timeout: cfg.Timeout, revision: revision, prepared: pq}, nil
}

// source resolves FS or Dir.
func (c Config) source() (fs.FS, error) {
	switch {
	case c.FS != nil && c.Dir != "":
		return nil, errors.New("policy/rego: set Config.FS or Config.Dir, not both")
	case c.FS != nil:
		return c.FS, nil
	case c.Dir != "":
		if _, err := os.Stat(c.Dir); err != nil {
			return nil, fmt.Errorf("policy/rego: policy directory: %w", err)
		}
		return os.DirFS(c.Dir), nil
	default:
		return nil, errors.New("policy/rego: no policy source: set Config.FS or Config.Dir")
	}
}

// Revision is "sha256:" + the hash of the sorted paths and contents of the
// loaded modules and data files (test modules excluded).
func (d *Decider) Revision() string { return d.revision }

// Decide evaluates the policy for in. A policy deny is a Decision with
// Allow == false and a nil error; a failure to decide is a Decision with
// Allow == false, Reasons saying why, and a non-nil error.
func (d *Decider) Decide(ctx context.Context, in policy.Input) (policy.Decision, error) {
	dec := policy.Decision{DecisionID: newID(), Revision: d.revision}
	fail := func(err error) (policy.Decision, error) {
		dec.Allow = false
		dec.Reasons = []string{"policy evaluation failed, denied (fail-closed): " + err.Error()}
		dec.Obligations = policy.Obligations{}
		dec.Rules = nil
		return dec, err
	}

	if err := ctx.Err(); err != nil {
		return fail(fmt.Errorf("%w: %s: %w", ErrEval, d.query, err))
	}
	input := inputValue(in)
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	rs, err := d.prepared.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			// OPA reports a cancellation as its own error type; keep the
			// context's too so errors.Is(err, context.DeadlineExceeded) holds.
			return fail(fmt.Errorf("%w: %s: %w (%w)", ErrEval, d.query, err, cerr))
		}
		return fail(fmt.Errorf("%w: %s: %w", ErrEval, d.query, err))
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return fail(fmt.Errorf("%w: %s", ErrUndefined, d.query))
	}
	if len(rs) > 1 {
		return fail(fmt.Errorf("%w: %s has %d results, want 1", ErrMalformed, d.query, len(rs)))
	}
	if err := parseRoute(rs[0].Expressions[0].Value, &dec); err != nil {
		return fail(fmt.Errorf("%w: %s: %w", ErrMalformed, d.query, err))
	}
	return dec, nil
}

// parseRoute reads {"allow": bool, "reasons": [string], "obligations":
// {"mask"|"drop"|"hash": [string]}, "rules": [string]} into dec. allow is
// required; the rest may be absent. Anything of the wrong type is an error,
// never a guess.
func parseRoute(v any, dec *policy.Decision) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("result is %T, want an object", v)
	}
	allow, ok := obj["allow"].(bool)
	if !ok {
		return fmt.Errorf(`"allow" is %T, want a boolean`, obj["allow"])
	}
	var err error
	if dec.Reasons, err = stringList(obj, "reasons"); err != nil {
		return err
	}
	if dec.Rules, err = stringList(obj, "rules"); err != nil {
		return err
	}
	if raw, ok := obj["obligations"]; ok {
		ob, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf(`"obligations" is %T, want an object`, raw)
		}
		for k := range ob {
			if k != "mask" && k != "drop" && k != "hash" {
				// An obligation sluice cannot honour must not be ignored.
				return fmt.Errorf("unknown obligation %q", k)
			}
		}
		if dec.Obligations.Mask, err = stringList(ob, "mask"); err != nil {
			return err
		}
		if dec.Obligations.Drop, err = stringList(ob, "drop"); err != nil {
			return err
		}
		if dec.Obligations.Hash, err = stringList(ob, "hash"); err != nil {
			return err
		}
	}
	dec.Allow = allow
	return nil
}

// stringList reads obj[key] as a list of strings; absent is nil.
func stringList(obj map[string]any, key string) ([]string, error) {
	raw, ok := obj[key]
	if !ok || raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%q is %T, want a list of strings", key, raw)
	}
	if len(list) == 0 {
		return nil, nil
	}
	out := make([]string, len(list))
	for i, x := range list {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("%q[%d] is %T, want a string", key, i, x)
		}
		out[i] = s
	}
	return out, nil
}

// newID returns a random RFC 4122 version 4 UUID. OPA sets a decision id
// only when a decision logger is configured, so sluice makes its own.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}
