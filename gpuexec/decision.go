package gpuexec

import "context"

// RouteDecision is the policy's answer for one batch, as far as an
// executor needs it: a remote executor checks that it is among Allowed
// before it touches the data, and records the ids for lineage.
type RouteDecision struct {
	// IDs are the policy decision ids (OPA's decision_id) behind the
	// batch, one per attribute group it holds.
	IDs []string `json:"decision_ids"`
	// Allowed are the executor ids the decisions allow for every row of
	// the batch.
	Allowed []string `json:"allowed"`
	// Revision is the policy revision the decisions were taken under.
	Revision string `json:"revision,omitempty"`
}

type decisionKey struct{}

// WithDecision returns a context that carries d to the executor that runs
// the batch. Executor.Execute takes no decision, so a remote executor
// reads it from the context (DecisionFrom) and sends it along.
func WithDecision(ctx context.Context, d RouteDecision) context.Context {
	return context.WithValue(ctx, decisionKey{}, d)
}

// DecisionFrom returns the decision WithDecision put in ctx, and false
// when there is none.
func DecisionFrom(ctx context.Context) (RouteDecision, bool) {
	d, ok := ctx.Value(decisionKey{}).(RouteDecision)
	return d, ok
}
