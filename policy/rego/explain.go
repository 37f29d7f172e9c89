package rego

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/sluice-dev/sluice/policy"
)

// Fired is a rule whose body held during an evaluation.
type Fired struct {
	// Rule is the rule's reference, e.g. "data.sluice.deny".
	Rule string `json:"rule"`
	// Location is FILE:LINE of the rule.
	Location string `json:"location"`
	// Head is the rule's head as written, shortened.
	Head string `json:"head"`
}

// Explain decides like Decide and also lists the rules that fired, in file
// order: what `sluice policy eval --explain` shows a compliance officer.
// It traces the evaluation, so it is slower than Decide; it is for people,
// not for the hot path.
func (d *Decider) Explain(ctx context.Context, in policy.Input) (policy.Decision, []Fired, error) {
	dec, err := d.Decide(ctx, in)
	tracer := topdown.NewBufferTracer()
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if _, terr := d.prepared.Eval(ctx, rego.EvalParsedInput(inputValue(in)), rego.EvalQueryTracer(tracer)); terr != nil && err == nil {
		err = terr
	}
	seen := map[string]bool{}
	var fired []Fired
	for _, ev := range *tracer {
		if ev.Op != topdown.ExitOp {
			continue
		}
		rule, ok := ev.Node.(*ast.Rule)
		if !ok || rule.Location == nil {
			continue
		}
		loc := fmt.Sprintf("%s:%d", rule.Location.File, rule.Location.Row)
		if seen[loc] {
			continue
		}
		seen[loc] = true
		head := strings.TrimSpace(strings.SplitN(string(rule.Location.Text), "\n", 2)[0])
		if len(head) > 100 {
			head = head[:100] + "…"
		}
		fired = append(fired, Fired{Rule: rule.Ref().String(), Location: loc, Head: head})
	}
	sort.Slice(fired, func(i, j int) bool { return fired[i].Location < fired[j].Location })
	return dec, fired, err
}
