package rego

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// DefaultTestTimeout bounds each Rego test in RunTests.
const DefaultTestTimeout = 5 * time.Second

// ErrNoTests is RunTests' error when the policy has no Rego tests.
var ErrNoTests = errors.New("policy/rego: no tests found (rules named test_*)")

// RunTests runs the Rego unit tests (rules named test_* in any module,
// usually *_test.rego) found in fsys against its policy modules and data,
// as `opa test` would, with builtin errors raised. It writes one line per
// test, sorted by name: "PASS data.pkg.test_name (1.2ms)", or FAIL/ERROR
// with the test's file and line, the error, and the output of the test's
// print() calls indented below it. err is non-nil only when the
// tests could not run (a parse or compile error, no tests found).
func RunTests(ctx context.Context, fsys fs.FS, w io.Writer) (passed, failed int, err error) {
	b, err := load(fsys, true)
	if err != nil {
		return 0, 0, err
	}
	if len(b.modules) == 0 {
		return 0, 0, fmt.Errorf("policy/rego: no Rego modules found")
	}
	store := inmem.NewFromObject(b.data)
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("policy/rego: open store: %w", err)
	}
	defer store.Abort(ctx, txn)

	cov := cover.New()
	ch, err := tester.NewRunner().
		SetCoverageQueryTracer(cov).
		SetModules(b.modules).
		SetStore(store).
		SetDefaultRegoVersion(ast.RegoV1).
		RaiseBuiltinErrors(true).
		SetTimeout(DefaultTestTimeout).
		CapturePrintOutput(true).
		RunTests(ctx, txn)
	if err != nil {
		return 0, 0, fmt.Errorf("policy/rego: compile tests: %w", err)
	}
	var results []*tester.Result
	for r := range ch {
		results = append(results, r)
	}
	if len(results) == 0 {
		return 0, 0, ErrNoTests
	}
	sort.Slice(results, func(i, j int) bool {
		a, b := results[i], results[j]
		if a.Package != b.Package {
			return a.Package < b.Package
		}
		return a.Name < b.Name
	})
	for _, r := range results {
		name := r.Package + "." + r.Name
		switch {
		case r.Skip:
			fmt.Fprintf(w, "SKIP %s\n", name)
			continue
		case r.Pass():
			passed++
			fmt.Fprintf(w, "PASS %s (%s)\n", name, r.Duration.Round(time.Microsecond))
			continue
		}
		failed++
		where := ""
		if r.Location != nil {
			where = fmt.Sprintf(" at %s:%d", r.Location.File, r.Location.Row)
		}
		if r.Error != nil {
			fmt.Fprintf(w, "ERROR %s (%s)%s: %v\n", name, r.Duration.Round(time.Microsecond), where, r.Error)
		} else {
			fmt.Fprintf(w, "FAIL %s (%s)%s\n", name, r.Duration.Round(time.Microsecond), where)
		}
		// Output of print() calls in the failing test, to show why.
		for line := range strings.Lines(string(r.Output)) {
			fmt.Fprintf(w, "    %s", line)
			if !strings.HasSuffix(line, "\n") {
				fmt.Fprintln(w)
			}
		}
	}
	writeCoverage(w, cov, b.modules)
	return passed, failed, ctx.Err()
}

// writeCoverage prints which share of the policy lines (test modules left
// out) the tests evaluated, overall and per file, as `opa test --coverage`
// measures it.
func writeCoverage(w io.Writer, cov *cover.Cover, modules map[string]*ast.Module) {
	policy := map[string]*ast.Module{}
	for name, m := range modules {
		if !strings.HasSuffix(name, "_test.rego") {
			policy[name] = m
		}
	}
	rep := cov.Report(policy)
	names := make([]string, 0, len(rep.Files))
	covered, total := 0, 0
	for name, f := range rep.Files {
		if _, ok := policy[name]; ok {
			names = append(names, name)
			covered += f.CoveredLines
			total += f.CoveredLines + f.NotCoveredLines
		}
	}
	sort.Strings(names)
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(covered) / float64(total)
	}
	fmt.Fprintf(w, "coverage: %.1f%% of policy lines (%d of %d)\n", pct, covered, total)
	for _, name := range names {
		f := rep.Files[name]
		fmt.Fprintf(w, "  %-28s %5.1f%%\n", name, f.Coverage)
		for _, r := range f.NotCovered {
			fmt.Fprintf(w, "    not covered: lines %d-%d\n", r.Start.Row, r.End.Row)
		}
	}
}
