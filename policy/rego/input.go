package rego

import (
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sluice-dev/sluice/policy"
)

// inputValue builds the AST value of in directly. It is the value
// ast.InterfaceToValue(in) produces (a JSON round trip that costs about half
// of an evaluation of the shipped policy): same keys, same omitempty rules
// as the JSON tags of the policy types, and a nil Classes is null.
// TestInputValueMatchesJSON keeps the two equal.
func inputValue(in policy.Input) ast.Value {
	pipeline := ast.NewObjectWithCapacity(2)
	pipeline.Insert(ast.InternedTerm("name"), ast.StringTerm(in.Pipeline.Name))
	pipeline.Insert(ast.InternedTerm("purpose"), ast.StringTerm(in.Pipeline.Purpose))

	data := ast.NewObjectWithCapacity(4)
	data.Insert(ast.InternedTerm("jurisdiction"), ast.StringTerm(in.Data.Jurisdiction))
	if in.Data.Region != "" {
		data.Insert(ast.InternedTerm("region"), ast.StringTerm(in.Data.Region))
	}
	data.Insert(ast.InternedTerm("classes"), stringsTerm(in.Data.Classes))
	if len(in.Data.Columns) > 0 {
		cols := make([]*ast.Term, len(in.Data.Columns))
		for i, c := range in.Data.Columns {
			col := ast.NewObjectWithCapacity(2)
			col.Insert(ast.InternedTerm("name"), ast.StringTerm(c.Name))
			if len(c.Classes) > 0 {
				col.Insert(ast.InternedTerm("classes"), stringsTerm(c.Classes))
			}
			cols[i] = ast.NewTerm(col)
		}
		data.Insert(ast.InternedTerm("columns"), ast.ArrayTerm(cols...))
	}

	e := in.Executor
	exec := ast.NewObjectWithCapacity(7)
	exec.Insert(ast.InternedTerm("id"), ast.StringTerm(e.ID))
	exec.Insert(ast.InternedTerm("kind"), ast.StringTerm(e.Kind))
	for _, kv := range [...]struct{ k, v string }{{"provider", e.Provider}, {"site", e.Site}, {"region", e.Region}} {
		if kv.v != "" {
			exec.Insert(ast.InternedTerm(kv.k), ast.StringTerm(kv.v))
		}
	}
	exec.Insert(ast.InternedTerm("jurisdiction"), ast.StringTerm(e.Jurisdiction))
	if len(e.Certifications) > 0 {
		exec.Insert(ast.InternedTerm("certifications"), stringsTerm(e.Certifications))
	}

	root := ast.NewObjectWithCapacity(3)
	root.Insert(ast.InternedTerm("pipeline"), ast.NewTerm(pipeline))
	root.Insert(ast.InternedTerm("data"), ast.NewTerm(data))
	root.Insert(ast.InternedTerm("executor"), ast.NewTerm(exec))
	return root
}

// stringsTerm is a list of strings as an array; nil is null, as in JSON.
func stringsTerm(s []string) *ast.Term {
	if s == nil {
		return ast.NullTerm()
	}
	ts := make([]*ast.Term, len(s))
	for i, x := range s {
		ts[i] = ast.StringTerm(x)
	}
	return ast.ArrayTerm(ts...)
}
