package transform

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/policy"
)

// router groups the rows of a batch by the attributes the policy reads and
// asks the Decider once per (group, executor); the Decider is expected to
// memoize (policy.Memo), so a steady stream costs a map lookup per group.
// A Decider that can reload (policy.Snapshotter) is pinned once per batch.
type router struct {
	spec    *Spec
	decider policy.Decider
	execs   *gpuexec.Router
	jur     string      // name of the jurisdiction column
	tagged  []taggedCol // columns with classification tags, at most 64
}

type taggedCol struct {
	name    string
	classes []string
}

// group is a set of rows that share jurisdiction and the set of non-null
// classified columns, so the policy sees the same input for all of them.
type group struct {
	jurisdiction string
	mask         uint64 // bit i set: tagged[i] is non-null in these rows
	rows         []int
	input        policy.Input
	decisions    []decided // one per executor of the pool, in pool order
	exec         gpuexec.Executor
	choice       gpuexec.Choice
}

type decided struct {
	executor string
	decision policy.Decision
	err      error
}

// deciderFor returns the Decider one batch uses from start to end.
func (rt *router) deciderFor() policy.Decider {
	if s, ok := rt.decider.(policy.Snapshotter); ok {
		return s.Snapshot()
	}
	return rt.decider
}

func newRouter(spec *Spec, d policy.Decider, execs *gpuexec.Router) *router {
	rt := &router{spec: spec, decider: d, execs: execs, jur: spec.Residency.Jurisdiction}
	for _, f := range spec.Schema {
		if len(f.Classes) > 0 && len(rt.tagged) < 64 {
			rt.tagged = append(rt.tagged, taggedCol{name: f.Name, classes: f.Classes})
		}
	}
	return rt
}

// groups splits rec's rows into policy groups, in order of first row.
func (rt *router) groups(rec arrow.RecordBatch) ([]*group, error) {
	jurCol, err := column(rec, rt.jur)
	if err != nil {
		return nil, err
	}
	jur, ok := jurCol.(*array.String)
	if !ok {
		return nil, fmt.Errorf("transform: jurisdiction field %q is %s, want string", rt.jur, jurCol.DataType())
	}
	tagged := make([]arrow.Array, len(rt.tagged))
	for i, tc := range rt.tagged {
		if tagged[i], err = column(rec, tc.name); err != nil {
			return nil, err
		}
	}
	type key struct {
		jur  string
		mask uint64
	}
	index := map[key]*group{}
	var out []*group
	for row := 0; row < int(rec.NumRows()); row++ {
		var mask uint64
		for i, col := range tagged {
			if col.IsValid(row) {
				mask |= 1 << i
			}
		}
		j := ""
		if jur.IsValid(row) {
			j = normJurisdiction(jur.Value(row))
		}
		k := key{j, mask}
		g := index[k]
		if g == nil {
			g = &group{jurisdiction: j, mask: mask}
			index[k] = g
			out = append(out, g)
		}
		g.rows = append(g.rows, row)
	}
	return out, nil
}

// normJurisdiction trims and upper-cases a country code, allocating only
// when the code is not already in canonical form (the common case is).
func normJurisdiction(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 'A' || c > 'Z' {
			return strings.ToUpper(strings.TrimSpace(s))
		}
	}
	return s
}

// decide asks the policy about every executor of the pool for g and fills
// g.decisions. An evaluation error counts as a deny (fail closed) and its
// message becomes the reason.
func (rt *router) decide(ctx context.Context, decider policy.Decider, g *group) {
	var classes []string
	var cols []policy.Column
	for i := 0; i < len(rt.tagged); i++ {
		if g.mask&(1<<i) == 0 {
			continue
		}
		tc := rt.tagged[i]
		cols = append(cols, policy.Column{Name: tc.name, Classes: tc.classes})
		classes = append(classes, tc.classes...)
	}
	slices.Sort(classes)
	classes = slices.Compact(classes)
	if classes == nil {
		classes = []string{}
	}
	g.input = policy.Input{
		Pipeline: policy.Pipeline{Name: rt.spec.Name, Purpose: rt.spec.Purpose},
		Data: policy.Data{Jurisdiction: g.jurisdiction, Region: policy.Region(g.jurisdiction),
			Classes: classes, Columns: cols},
	}
	g.decisions = g.decisions[:0]
	for _, ex := range rt.execs.Executors() {
		in := g.input
		in.Executor = policyExecutor(ex)
		d, err := decider.Decide(ctx, in)
		if err != nil {
			d.Allow = false
			d.Reasons = append(d.Reasons, "policy evaluation failed: "+err.Error())
		}
		g.decisions = append(g.decisions, decided{executor: ex.ID(), decision: d, err: err})
	}
}

func (g *group) allowed() []string {
	var ids []string
	for _, d := range g.decisions {
		if d.decision.Allow {
			ids = append(ids, d.executor)
		}
	}
	return ids
}

func (g *group) decisionFor(id string) (policy.Decision, bool) {
	for _, d := range g.decisions {
		if d.executor == id {
			return d.decision, true
		}
	}
	return policy.Decision{}, false
}

func (g *group) classes() []string { return g.input.Data.Classes }

func policyExecutor(ex gpuexec.Executor) policy.Executor {
	loc := ex.Location()
	return policy.Executor{
		ID: ex.ID(), Kind: loc.Kind, Provider: loc.Provider, Site: loc.Site, Region: loc.Region,
		Jurisdiction: loc.Jurisdiction, Certifications: loc.Certifications,
	}
}

func column(rec arrow.RecordBatch, name string) (arrow.Array, error) {
	idx := rec.Schema().FieldIndices(name)
	if len(idx) == 0 {
		return nil, fmt.Errorf("transform: batch has no column %q", name)
	}
	return rec.Column(idx[0]), nil
}

// unionObligations merges the obligations of several groups routed to one
// executor: applying more than one group needs is never less compliant.
func unionObligations(os ...policy.Obligations) policy.Obligations {
	var u policy.Obligations
	for _, o := range os {
		u.Mask = append(u.Mask, o.Mask...)
		u.Drop = append(u.Drop, o.Drop...)
		u.Hash = append(u.Hash, o.Hash...)
	}
	for _, s := range []*[]string{&u.Mask, &u.Drop, &u.Hash} {
		slices.Sort(*s)
		*s = slices.Compact(*s)
	}
	return u
}
