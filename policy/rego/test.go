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

	ch, err := tester.NewRunner().
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
	return passed, failed, ctx.Err()
}
