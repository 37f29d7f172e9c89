package rego_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/policy/rego"
)

// casesFile holds testdata/policy/cases.yaml.
type casesFile struct {
	Executors map[string]any `yaml:"executors"`
	Cases     []struct {
		Name     string `yaml:"name"`
		Executor string `yaml:"executor"`
		Purpose  string `yaml:"purpose"`
		Data     any    `yaml:"data"`
		Want     struct {
			Allow          *bool    `yaml:"allow"`
			Rules          []string `yaml:"rules"`
			ReasonContains []string `yaml:"reason_contains"`
			Hash           []string `yaml:"hash"`
		} `yaml:"want"`
	} `yaml:"cases"`
}

// viaJSON converts a YAML-decoded value into a policy type through its JSON
// tags, the same shape a policy input file has.
func viaJSON(t *testing.T, v any, out any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

// newDecider builds a Decider; without a timeout in cfg it allows a
// generous one, so that a loaded machine running -race does not turn a
// slow evaluation into a failed test.
func newDecider(t *testing.T, cfg rego.Config) *rego.Decider {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	d, err := rego.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

// TestCases checks the shipped policies against testdata/policy/cases.yaml,
// once through the Decider and once through a Memo in front of it.
func TestCases(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/policy/cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cf casesFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatal(err)
	}
	if len(cf.Cases) == 0 {
		t.Fatal("no cases")
	}
	d := newDecider(t, rego.Config{FS: policies.FS})
	memo := policy.NewMemo(d)
	deciders := map[string]policy.Decider{"rego": d, "memo": memo}
	for _, name := range []string{"rego", "memo", "memo"} {
		dec := deciders[name]
		for _, c := range cf.Cases {
			t.Run(name+"/"+c.Name, func(t *testing.T) {
				if c.Want.Allow == nil {
					t.Fatal("case has no want.allow")
				}
				var in policy.Input
				ex, ok := cf.Executors[c.Executor]
				if !ok {
					t.Fatalf("unknown executor %q", c.Executor)
				}
				viaJSON(t, ex, &in.Executor)
				viaJSON(t, c.Data, &in.Data)
				in.Data.Region = policy.Region(in.Data.Jurisdiction)
				in.Pipeline = policy.Pipeline{Name: "card-fraud", Purpose: c.Purpose}
				if in.Pipeline.Purpose == "" {
					in.Pipeline.Purpose = "ml-training"
				}

				got, err := dec.Decide(context.Background(), in)
				if err != nil {
					t.Fatalf("Decide: %v", err)
				}
				if got.Allow != *c.Want.Allow {
					t.Errorf("allow = %v, want %v (reasons %q)", got.Allow, *c.Want.Allow, got.Reasons)
				}
				if c.Want.Rules != nil && !slices.Equal(nonNil(got.Rules), c.Want.Rules) {
					t.Errorf("rules = %q, want %q", got.Rules, c.Want.Rules)
				}
				for _, s := range c.Want.ReasonContains {
					if !slices.ContainsFunc(got.Reasons, func(r string) bool { return strings.Contains(r, s) }) {
						t.Errorf("no reason contains %q: %q", s, got.Reasons)
					}
				}
				if !got.Allow && len(got.Reasons) == 0 {
					t.Error("a deny without reasons")
				}
				if !got.Allow && len(got.Rules) == 0 {
					t.Error("a deny without a rule label")
				}
				if c.Want.Hash != nil && !slices.Equal(nonNil(got.Obligations.Hash), c.Want.Hash) {
					t.Errorf("hash = %q, want %q", got.Obligations.Hash, c.Want.Hash)
				}
				if got.Revision != d.Revision() || got.DecisionID == "" {
					t.Errorf("revision %q id %q, want revision %q and an id", got.Revision, got.DecisionID, d.Revision())
				}
			})
		}
	}
	if hits, misses := memo.Stats(); misses != uint64(len(cf.Cases)) || hits != uint64(len(cf.Cases)) {
		t.Errorf("memo hits=%d misses=%d, want %d each", hits, misses, len(cf.Cases))
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// TestDemoMatrix is the residency picture the demo shows: EU and PHI data
// only on onprem-fra, US data on both, IN and BR data nowhere.
func TestDemoMatrix(t *testing.T) {
	d := newDecider(t, rego.Config{FS: policies.FS})
	execs := map[string]policy.Executor{
		"onprem-fra":    {ID: "onprem-fra", Kind: "onprem", Site: "fra1", Region: "eu-central", Jurisdiction: "DE", Certifications: []string{"hipaa", "iso27001", "soc2"}},
		"aws-us-east-1": {ID: "aws-us-east-1", Kind: "cloud", Provider: "aws", Region: "us-east-1", Jurisdiction: "US", Certifications: []string{"soc2"}},
	}
	cols := []policy.Column{{Name: "user_id", Classes: []string{"pii"}}, {Name: "amount", Classes: []string{"financial"}}}
	tests := []struct {
		jurisdiction string
		classes      []string
		want         []string // executors allowed, sorted
	}{
		{"DE", []string{"financial", "pii"}, []string{"onprem-fra"}},
		{"FR", []string{"financial", "pii"}, []string{"onprem-fra"}},
		{"US", []string{"financial", "pii"}, []string{"aws-us-east-1", "onprem-fra"}},
		{"US", []string{"phi"}, []string{"onprem-fra"}},
		{"IN", []string{"financial", "pii"}, nil},
		{"BR", []string{"financial", "pii"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.jurisdiction+"/"+strings.Join(tt.classes, "+"), func(t *testing.T) {
			var allowed []string
			for _, id := range []string{"aws-us-east-1", "onprem-fra"} {
				in := policy.Input{
					Pipeline: policy.Pipeline{Name: "card-fraud", Purpose: "ml-training"},
					Data:     policy.Data{Jurisdiction: tt.jurisdiction, Region: policy.Region(tt.jurisdiction), Classes: tt.classes, Columns: cols},
					Executor: execs[id],
				}
				dec, err := d.Decide(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				if dec.Allow {
					allowed = append(allowed, id)
				}
			}
			if !slices.Equal(allowed, tt.want) {
				t.Errorf("allowed on %q, want %q", allowed, tt.want)
			}
		})
	}
}

// TestEveryRuleHasLabel keeps the audit trail complete: each shipped deny
// and obligation rule names the law it enforces in custom.label.
func TestEveryRuleHasLabel(t *testing.T) {
	n := 0
	err := fs.WalkDir(policies.FS, ".", func(p string, _ fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".rego") || strings.HasSuffix(p, "_test.rego") {
			return err
		}
		raw, err := fs.ReadFile(policies.FS, p)
		if err != nil {
			return err
		}
		m, err := ast.ParseModuleWithOpts(p, string(raw), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			return err
		}
		for _, r := range m.Rules {
			name := r.Head.Name.String()
			if name == "" {
				name = r.Head.Reference.String()
			}
			if name != "deny" && name != "obligation" {
				continue
			}
			n++
			var label string
			for _, a := range r.Annotations {
				if s, ok := a.Custom["label"].(string); ok {
					label = s
				}
			}
			if label == "" {
				t.Errorf("%s:%d: %s rule has no METADATA custom.label", p, r.Location.Row, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 6 {
		t.Errorf("found %d deny/obligation rules, want at least 6", n)
	}
}

const routeHead = "package sluice\n\n"

// TestFailClosed checks that every way of not getting an answer is a deny
// with a reason and an error.
func TestFailClosed(t *testing.T) {
	in := policy.Input{Data: policy.Data{Jurisdiction: "DE"}, Executor: policy.Executor{ID: "e", Kind: "onprem", Jurisdiction: "DE"}}
	tests := []struct {
		name    string
		module  string
		timeout time.Duration
		ctx     func() (context.Context, context.CancelFunc)
		wantErr []error
	}{
		{
			name:    "undefined",
			module:  `route := {"allow": true} if input.never`,
			wantErr: []error{rego.ErrUndefined},
		},
		{
			name:    "not an object",
			module:  `route := "yes"`,
			wantErr: []error{rego.ErrMalformed},
		},
		{
			name:    "allow not a boolean",
			module:  `route := {"allow": "true"}`,
			wantErr: []error{rego.ErrMalformed},
		},
		{
			name:    "allow missing",
			module:  `route := {"reasons": []}`,
			wantErr: []error{rego.ErrMalformed},
		},
		{
			name:    "obligation sluice cannot honour",
			module:  `route := {"allow": true, "obligations": {"encrypt": ["user_id"]}}`,
			wantErr: []error{rego.ErrMalformed},
		},
		{
			name:    "reason not a string",
			module:  `route := {"allow": false, "reasons": [1]}`,
			wantErr: []error{rego.ErrMalformed},
		},
		{
			// Without strict builtin errors the deny would be undefined and
			// the route would allow.
			name: "builtin error in a deny",
			module: `route := {"allow": count(deny) == 0}
deny contains "bad" if to_number(input.data.jurisdiction) > 0`,
			wantErr: []error{rego.ErrEval},
		},
		{
			name: "conflicting values",
			module: `route := {"allow": true} if input.data.jurisdiction == "DE"
route := {"allow": false} if input.executor.id == "e"`,
			wantErr: []error{rego.ErrEval},
		},
		{
			name: "timeout",
			module: `route := {"allow": n > 0} if {
	n := count([x | some i in numbers.range(1, 1000); some j in numbers.range(1, 1000); x := i * j])
}`,
			timeout: 5 * time.Millisecond,
			wantErr: []error{rego.ErrEval, context.DeadlineExceeded},
		},
		{
			name:   "caller cancelled",
			module: `route := {"allow": true}`,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			},
			wantErr: []error{rego.ErrEval, context.Canceled},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecider(t, rego.Config{
				FS:      fstest.MapFS{"route.rego": {Data: []byte(routeHead + tt.module)}},
				Timeout: cmp.Or(tt.timeout, time.Second),
			})
			ctx := context.Background()
			if tt.ctx != nil {
				var cancel context.CancelFunc
				ctx, cancel = tt.ctx()
				defer cancel()
			}
			start := time.Now()
			dec, err := d.Decide(ctx, in)
			if err == nil {
				t.Fatalf("no error; decision %+v", dec)
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("error %v is not %v", err, want)
				}
			}
			if dec.Allow {
				t.Error("allowed on failure")
			}
			if len(dec.Reasons) == 0 || !strings.Contains(dec.Reasons[0], "fail-closed") {
				t.Errorf("reasons %q do not say why", dec.Reasons)
			}
			if dec.DecisionID == "" || dec.Revision != d.Revision() {
				t.Errorf("audit fields missing: id %q revision %q", dec.DecisionID, dec.Revision)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("failing took %v", took)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  rego.Config
		want []string // substrings of the error
	}{
		{
			name: "parse error",
			cfg:  rego.Config{FS: fstest.MapFS{"broken.rego": {Data: []byte(routeHead + "route := {\n")}}},
			want: []string{"broken.rego", "parse"},
		},
		{
			name: "compile error",
			cfg:  rego.Config{FS: fstest.MapFS{"unsafe.rego": {Data: []byte(routeHead + "route := x if { x > 1 }\n")}}},
			want: []string{"unsafe.rego:3", "compile", "unsafe"},
		},
		{
			name: "broken data file",
			cfg:  rego.Config{FS: fstest.MapFS{"route.rego": {Data: []byte(routeHead + "route := {\"allow\": true}")}, "data.json": {Data: []byte("{")}}},
			want: []string{"data.json"},
		},
		{
			name: "no modules",
			cfg:  rego.Config{FS: fstest.MapFS{"only_test.rego": {Data: []byte("package x\ntest_a if true")}}},
			want: []string{"no policy modules"},
		},
		{name: "no source", cfg: rego.Config{}, want: []string{"no policy source"}},
		{name: "both sources", cfg: rego.Config{FS: policies.FS, Dir: "."}, want: []string{"not both"}},
		{name: "missing dir", cfg: rego.Config{Dir: "does-not-exist"}, want: []string{"does-not-exist"}},
		{name: "negative timeout", cfg: rego.Config{FS: policies.FS, Timeout: -time.Second}, want: []string{"timeout"}},
		{name: "bad query", cfg: rego.Config{FS: policies.FS, Query: "data.sluice.[route"}, want: []string{"compile"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := rego.New(context.Background(), tt.cfg)
			if err == nil {
				t.Fatalf("New succeeded (revision %s)", d.Revision())
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestRevision(t *testing.T) {
	base := func() fstest.MapFS {
		return fstest.MapFS{
			"route.rego":      {Data: []byte(routeHead + `route := {"allow": data.flag}`)},
			"route_test.rego": {Data: []byte("package t\ntest_a if true")},
			"data.json":       {Data: []byte(`{"flag": true}`)},
		}
	}
	rev := func(fsys fs.FS) string { return newDecider(t, rego.Config{FS: fsys}).Revision() }

	r1, r2 := rev(base()), rev(base())
	if r1 != r2 {
		t.Fatalf("two loads of the same policy: %s != %s", r1, r2)
	}
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(r1) {
		t.Errorf("revision %q is not sha256:<hex>", r1)
	}
	changed := map[string]func(fstest.MapFS){
		"module": func(m fstest.MapFS) {
			m["route.rego"] = &fstest.MapFile{Data: []byte(routeHead + `route := {"allow": false}`)}
		},
		"data":         func(m fstest.MapFS) { m["data.json"] = &fstest.MapFile{Data: []byte(`{"flag": false}`)} },
		"module added": func(m fstest.MapFS) { m["extra.rego"] = &fstest.MapFile{Data: []byte(routeHead + `x := 1`)} },
		"module moved": func(m fstest.MapFS) { m["sub/route.rego"] = m["route.rego"]; delete(m, "route.rego") },
	}
	for name, change := range changed {
		t.Run(name, func(t *testing.T) {
			m := base()
			change(m)
			if r := rev(m); r == r1 {
				t.Errorf("revision unchanged: %s", r)
			}
		})
	}
	t.Run("test module changed", func(t *testing.T) {
		m := base()
		m["route_test.rego"] = &fstest.MapFile{Data: []byte("package t\ntest_b if true")}
		if r := rev(m); r != r1 {
			t.Errorf("a test change moved the revision: %s != %s", r, r1)
		}
	})
	t.Run("dir equals fs", func(t *testing.T) {
		if a, b := rev(policies.FS), newDecider(t, rego.Config{Dir: "../../policies"}).Revision(); a != b {
			t.Errorf("embedded %s != directory %s", a, b)
		}
	})
}

func TestDecisionID(t *testing.T) {
	d := newDecider(t, rego.Config{FS: policies.FS})
	in := policy.Input{
		Pipeline: policy.Pipeline{Purpose: "ml-training"},
		Data:     policy.Data{Jurisdiction: "US", Classes: []string{"financial"}},
		Executor: policy.Executor{ID: "onprem-fra", Kind: "onprem", Jurisdiction: "DE"},
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 50 {
		dec, err := d.Decide(context.Background(), in)
		if err != nil || !dec.Allow {
			t.Fatalf("got %+v, %v", dec, err)
		}
		if !uuid.MatchString(dec.DecisionID) {
			t.Fatalf("decision id %q is not a v4 UUID", dec.DecisionID)
		}
		if seen[dec.DecisionID] {
			t.Fatalf("decision id %q repeated", dec.DecisionID)
		}
		seen[dec.DecisionID] = true
	}
}

func TestRunTests(t *testing.T) {
	t.Run("shipped policies pass", func(t *testing.T) {
		var out bytes.Buffer
		passed, failed, err := rego.RunTests(context.Background(), policies.FS, &out)
		if err != nil {
			t.Fatal(err)
		}
		if failed != 0 || passed < 20 {
			t.Errorf("passed %d failed %d, want >= 20 and 0:\n%s", passed, failed, out.String())
		}
		if lines := strings.Count(out.String(), "\nPASS ") + boolInt(strings.HasPrefix(out.String(), "PASS ")); lines != passed {
			t.Errorf("%d PASS lines for %d passed tests:\n%s", lines, passed, out.String())
		}
	})
	t.Run("failing test reported", func(t *testing.T) {
		fsys := fstest.MapFS{
			"route.rego": {Data: []byte(routeHead + "route := {\"allow\": ok}\ndefault ok := false\nok if input.ok == true\n")},
			"route_test.rego": {Data: []byte(`package sluice_test

test_allows if data.sluice.route.allow with input as {"ok": true}

test_wrong if {
	print("route is", data.sluice.route)
	data.sluice.route.allow
}
`)},
		}
		var out bytes.Buffer
		passed, failed, err := rego.RunTests(context.Background(), fsys, &out)
		if err != nil {
			t.Fatal(err)
		}
		if passed != 1 || failed != 1 {
			t.Fatalf("passed %d failed %d, want 1 and 1:\n%s", passed, failed, out.String())
		}
		for _, want := range []string{"PASS data.sluice_test.test_allows", "FAIL data.sluice_test.test_wrong", "route_test.rego:5", `route is {"allow": false}`} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		}
	})
	t.Run("broken test module", func(t *testing.T) {
		fsys := fstest.MapFS{"x_test.rego": {Data: []byte("package x\ntest_a if {")}}
		if _, _, err := rego.RunTests(context.Background(), fsys, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "x_test.rego") {
			t.Errorf("err = %v, want a parse error naming x_test.rego", err)
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestDecideConcurrent shares one Decider between goroutines, as the
// pipeline does; run with -race.
func TestDecideConcurrent(t *testing.T) {
	d := newDecider(t, rego.Config{FS: policies.FS})
	exec := policy.Executor{ID: "onprem-fra", Kind: "onprem", Jurisdiction: "DE", Certifications: []string{"hipaa"}}
	want := map[string]bool{"DE": true, "US": true, "IN": false, "BR": false}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 25 {
				for j, allow := range want {
					in := policy.Input{
						Pipeline: policy.Pipeline{Purpose: "ml-training"},
						Data:     policy.Data{Jurisdiction: j, Classes: []string{"pii"}},
						Executor: exec,
					}
					dec, err := d.Decide(context.Background(), in)
					if err != nil || dec.Allow != allow {
						t.Errorf("%s: allow %v err %v, want %v", j, dec.Allow, err, allow)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
