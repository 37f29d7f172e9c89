package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"slices"
	"strings"

	"github.com/sluice-dev/sluice/policies"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/policy/rego"
	"github.com/sluice-dev/sluice/transform"
)

const policyUsage = `Usage:
  sluice policy test [DIR]                     run the Rego tests in DIR (default: the shipped policies)
  sluice policy eval --input FILE [flags]      print the decision for one input
  sluice policy diff --from DIR --to DIR --sample FILE
                                               show how a policy change re-routes recorded inputs

Run 'sluice policy <sub-command> -h' for details.
`

func cmdPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return fmt.Errorf("%w: policy needs a sub-command (test, eval, diff)", errUsage)
	}
	switch args[0] {
	case "test":
		return cmdPolicyTest(ctx, args[1:], stdout, stderr)
	case "eval":
		return cmdPolicyEval(ctx, args[1:], stdout, stderr)
	case "diff":
		return cmdPolicyDiff(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, policyUsage)
		return nil
	}
	fmt.Fprint(stderr, policyUsage)
	return fmt.Errorf("%w: unknown policy sub-command %q", errUsage, args[0])
}

func cmdPolicyTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy test", "policy test [DIR]",
		`Runs the Rego unit tests (rules named test_*, usually in *_test.rego) of the
policy directory DIR against its modules and data files, like 'opa test'.
Prints PASS or FAIL per test and a total; exits 1 if any test fails.
Without DIR it tests the policies built into this binary.

Example:
  sluice policy test policies/
`, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	fsys := policySource(fs.Arg(0))
	passed, failed, err := rego.RunTests(ctx, fsys, stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return errFailed
	}
	return nil
}

// policySource is the policy directory dir, or the shipped policies when
// dir is empty.
func policySource(dir string) iofs.FS {
	if dir == "" {
		return policies.FS
	}
	return os.DirFS(dir)
}

func cmdPolicyEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy eval", "policy eval --input FILE [--policies DIR] [-f SPEC] [--executor ID] [--explain] [-o json]",
		`Prints the decision the policy makes for one input: allow or deny, the
reasons, the obligations (columns to hash, mask or drop), the rule labels,
the decision id and the policy revision.

FILE is either a full policy input document
  {"pipeline": {...}, "data": {...}, "executor": {...}}
(see policies/README.md), or one raw record as it appears on the topic; for
a record, -f SPEC says how to read it (jurisdiction field, data classes) and
which executors exist, and --executor picks one (default: every executor of
the spec). "-" reads FILE from standard input.

Examples:
  sluice policy eval --input testdata/policy/de-to-cloud.json
  echo '{"country":"DE","user_id":"u1","amount":3}' | \
    sluice policy eval --input - -f deploy/examples/card-transactions.yaml
`, stderr)
	input := fs.String("input", "", "input `file` (a policy input document or a record; - for stdin)")
	dir := fs.String("policies", "", "policy `dir`ectory (default: the shipped policies)")
	specFile := fs.String("f", "", "pipeline spec, needed when FILE is a record")
	execID := fs.String("executor", "", "executor `id` of the spec to decide for (default: all)")
	explain := fs.Bool("explain", false, "also list the rules that fired, with file and line")
	var out outputFlag
	out.register(fs)
	asJSON, err := parseOutput(fs, &out, args)
	if err != nil {
		return err
	}
	if *input == "" {
		return fmt.Errorf("%w: policy eval needs --input FILE", errUsage)
	}
	var raw []byte
	if *input == "-" {
		raw, err = io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
	} else {
		raw, err = os.ReadFile(*input)
	}
	if err != nil {
		return err
	}
	inputs, err := policyInputs(raw, *specFile, *execID)
	if err != nil {
		return err
	}
	d, err := rego.New(ctx, rego.Config{FS: policySource(*dir)})
	if err != nil {
		return err
	}
	type result struct {
		Input    policy.Input    `json:"input"`
		Decision policy.Decision `json:"decision"`
		Fired    []rego.Fired    `json:"fired,omitempty"`
		Error    string          `json:"error,omitempty"`
	}
	var results []result
	for _, in := range inputs {
		var r result
		var err error
		if *explain {
			r.Decision, r.Fired, err = d.Explain(ctx, in)
		} else {
			r.Decision, err = d.Decide(ctx, in)
		}
		r.Input = in
		if err != nil {
			r.Error = err.Error()
		}
		results = append(results, r)
	}
	if asJSON {
		writeJSON(stdout, results)
		return nil
	}
	for _, r := range results {
		verdict := "DENY"
		if r.Decision.Allow {
			verdict = "ALLOW"
		}
		fmt.Fprintf(stdout, "%s  data %s %v → executor %s (%s, %s)\n", verdict, r.Input.Data.Jurisdiction,
			r.Input.Data.Classes, r.Input.Executor.ID, r.Input.Executor.Kind, r.Input.Executor.Jurisdiction)
		for _, reason := range r.Decision.Reasons {
			fmt.Fprintf(stdout, "  reason:      %s\n", reason)
		}
		if len(r.Decision.Rules) > 0 {
			fmt.Fprintf(stdout, "  rules:       %s\n", strings.Join(r.Decision.Rules, ", "))
		}
		if o := r.Decision.Obligations; !o.Empty() {
			fmt.Fprintf(stdout, "  obligations: hash %v, mask %v, drop %v\n", o.Hash, o.Mask, o.Drop)
		}
		if r.Error != "" {
			fmt.Fprintf(stdout, "  error:       %s\n", r.Error)
		}
		for _, f := range r.Fired {
			fmt.Fprintf(stdout, "  fired:       %s  %s  %s\n", f.Location, f.Rule, f.Head)
		}
		fmt.Fprintf(stdout, "  decision %s, revision %s\n", r.Decision.DecisionID, r.Decision.Revision)
	}
	return nil
}

// policyInputs turns FILE into policy inputs: a full input document as is,
// or a record read through the spec, once per executor.
func policyInputs(raw []byte, specFile, execID string) ([]policy.Input, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("input is not a JSON object: %w", err)
	}
	_, hasData := probe["data"]
	_, hasExec := probe["executor"]
	if hasData && hasExec {
		var in policy.Input
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return nil, fmt.Errorf("input document: %w", err)
		}
		return []policy.Input{in}, nil
	}
	if specFile == "" {
		return nil, fmt.Errorf("%w: the input is a record, not a policy input document; give -f SPEC to read it", errUsage)
	}
	spec, err := transform.Load(specFile)
	if err != nil {
		return nil, err
	}
	var rec map[string]any
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, err
	}
	data := policy.Data{Classes: []string{}}
	for _, f := range spec.Schema {
		v, ok := lookup(rec, f.Path)
		if !ok || v == nil {
			continue
		}
		if f.Name == spec.Residency.Jurisdiction {
			s, _ := v.(string)
			data.Jurisdiction = strings.ToUpper(strings.TrimSpace(s))
		}
		if len(f.Classes) > 0 {
			data.Columns = append(data.Columns, policy.Column{Name: f.Name, Classes: f.Classes})
			data.Classes = append(data.Classes, f.Classes...)
		}
	}
	slices.Sort(data.Classes)
	data.Classes = slices.Compact(data.Classes)
	data.Region = policy.Region(data.Jurisdiction)
	var ins []policy.Input
	for _, ex := range spec.Executors {
		if execID != "" && ex.ID != execID {
			continue
		}
		l := ex.Location
		ins = append(ins, policy.Input{
			Pipeline: policy.Pipeline{Name: spec.Name, Purpose: spec.Purpose},
			Data:     data,
			Executor: policy.Executor{ID: ex.ID, Kind: l.Kind, Provider: l.Provider, Site: l.Site,
				Region: l.Region, Jurisdiction: l.Jurisdiction, Certifications: l.Certifications},
		})
	}
	if len(ins) == 0 {
		return nil, fmt.Errorf("%w: spec %s has no executor %q", errUsage, specFile, execID)
	}
	return ins, nil
}

// lookup follows a dotted path into a decoded JSON object.
func lookup(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, part := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func cmdPolicyDiff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy diff", "policy diff --from DIR --to DIR --sample FILE [-o json]",
		`Shows how a policy change would re-route recorded inputs before it goes
live. Every input of FILE is decided by the policy in --from (the live one)
and by the policy in --to (the candidate); each input whose outcome changes
is printed with both decisions: allow→deny, deny→allow, or the same verdict
with other obligations or rule labels. A summary counts them.

FILE holds one policy input document per line (NDJSON), as
'sluice policy eval' reads them; a line may also be an object with the
document under "input" (as 'sluice policy eval -o json' prints it).

The exit status is 0 whatever changed (it is a report); 1 when a policy does
not load or FILE is malformed.

Example:
  sluice policy diff --from policies/ --to ../new-policies/ --sample inputs.ndjson
`, stderr)
	from := fs.String("from", "", "policy `dir`ectory in force now (required)")
	to := fs.String("to", "", "policy `dir`ectory to compare against (required)")
	sample := fs.String("sample", "", "NDJSON `file` of policy input documents (required; - for stdin)")
	var out outputFlag
	out.register(fs)
	asJSON, err := parseOutput(fs, &out, args)
	if err != nil {
		return err
	}
	if *from == "" || *to == "" || *sample == "" {
		return fmt.Errorf("%w: policy diff needs --from DIR, --to DIR and --sample FILE", errUsage)
	}
	var raw []byte
	if *sample == "-" {
		raw, err = io.ReadAll(io.LimitReader(os.Stdin, 256<<20))
	} else {
		raw, err = os.ReadFile(*sample)
	}
	if err != nil {
		return err
	}
	inputs, err := sampleInputs(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", *sample, err)
	}
	before, err := rego.New(ctx, rego.Config{Dir: *from})
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	after, err := rego.New(ctx, rego.Config{Dir: *to})
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	rep := diffPolicies(ctx, before, after, inputs)
	if asJSON {
		writeJSON(stdout, rep)
		return nil
	}
	for _, c := range rep.Changes {
		in := c.Input
		fmt.Fprintf(stdout, "line %d: %s  data %s %v → executor %s (%s, %s)\n", c.Line, c.Change,
			in.Data.Jurisdiction, in.Data.Classes, in.Executor.ID, in.Executor.Kind, in.Executor.Jurisdiction)
		for _, side := range []struct {
			name string
			d    diffSide
		}{{"before", c.Before}, {"after ", c.After}} {
			verdict := "DENY "
			if side.d.Allow {
				verdict = "ALLOW"
			}
			fmt.Fprintf(stdout, "  %s: %s rules [%s]", side.name, verdict, strings.Join(side.d.Rules, ", "))
			if o := side.d.Obligations; !o.Empty() {
				fmt.Fprintf(stdout, "  obligations hash %v mask %v drop %v", o.Hash, o.Mask, o.Drop)
			}
			fmt.Fprintln(stdout)
			for _, r := range side.d.Reasons {
				fmt.Fprintf(stdout, "          reason: %s\n", r)
			}
			if side.d.Error != "" {
				fmt.Fprintf(stdout, "          error:  %s\n", side.d.Error)
			}
		}
	}
	fmt.Fprintf(stdout, "%d inputs, %d changed: %d allow→deny, %d deny→allow, %d obligations or rules only (revision %s → %s)\n",
		rep.Inputs, rep.Changed, rep.AllowToDeny, rep.DenyToAllow, rep.ObligationsOrRules, rep.From, rep.To)
	return nil
}

// diffReport is what 'policy diff' finds; its JSON is the -o json output.
type diffReport struct {
	From               string       `json:"from_revision"`
	To                 string       `json:"to_revision"`
	Inputs             int          `json:"inputs"`
	Changed            int          `json:"changed"`
	AllowToDeny        int          `json:"allow_to_deny"`
	DenyToAllow        int          `json:"deny_to_allow"`
	ObligationsOrRules int          `json:"obligations_or_rules"`
	Changes            []diffChange `json:"changes"`
}

type diffChange struct {
	Line   int          `json:"line"`
	Change string       `json:"change"` // "allow→deny", "deny→allow", "obligations/rules"
	Input  policy.Input `json:"input"`
	Before diffSide     `json:"before"`
	After  diffSide     `json:"after"`
}

// diffSide is a decision without its per-evaluation id, which differs on
// every run and would hide nothing but noise.
type diffSide struct {
	Allow       bool               `json:"allow"`
	Reasons     []string           `json:"reasons,omitempty"`
	Obligations policy.Obligations `json:"obligations"`
	Rules       []string           `json:"rules,omitempty"`
	Error       string             `json:"error,omitempty"`
}

type sampleInput struct {
	line int
	in   policy.Input
}

// diffPolicies decides every input under both policies. An outcome changes
// when the verdict, the obligations or the rule labels differ; a reworded
// reason alone routes nothing differently and is not counted.
func diffPolicies(ctx context.Context, before, after policy.Decider, inputs []sampleInput) diffReport {
	rep := diffReport{From: before.Revision(), To: after.Revision(), Inputs: len(inputs), Changes: []diffChange{}}
	side := func(d policy.Decider, in policy.Input) diffSide {
		dec, err := d.Decide(ctx, in)
		s := diffSide{Allow: dec.Allow, Reasons: dec.Reasons, Obligations: dec.Obligations, Rules: dec.Rules}
		if err != nil {
			s.Error = err.Error()
		}
		return s
	}
	for _, si := range inputs {
		b, a := side(before, si.in), side(after, si.in)
		var change string
		switch {
		case b.Allow && !a.Allow:
			change = "allow→deny"
			rep.AllowToDeny++
		case !b.Allow && a.Allow:
			change = "deny→allow"
			rep.DenyToAllow++
		case !sameObligations(b.Obligations, a.Obligations) || !slices.Equal(b.Rules, a.Rules):
			change = "obligations/rules"
			rep.ObligationsOrRules++
		default:
			continue
		}
		rep.Changed++
		rep.Changes = append(rep.Changes, diffChange{Line: si.line, Change: change, Input: si.in, Before: b, After: a})
	}
	return rep
}

func sameObligations(a, b policy.Obligations) bool {
	return slices.Equal(a.Hash, b.Hash) && slices.Equal(a.Mask, b.Mask) && slices.Equal(a.Drop, b.Drop)
}

// sampleInputs reads NDJSON: one policy input document per line, or an
// object holding one under "input". Blank lines are skipped; anything else
// that is not an input is an error naming its line.
func sampleInputs(raw []byte) ([]sampleInput, error) {
	var out []sampleInput
	n := 0
	for line := range strings.Lines(string(raw)) {
		n++
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var wrapped struct {
			Input json.RawMessage `json:"input"`
		}
		doc := []byte(line)
		if err := json.Unmarshal(doc, &wrapped); err != nil {
			return nil, fmt.Errorf("line %d: not a JSON object: %w", n, err)
		}
		if wrapped.Input != nil {
			doc = wrapped.Input
		}
		var in policy.Input
		dec := json.NewDecoder(bytes.NewReader(doc))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return nil, fmt.Errorf("line %d: not a policy input document: %w", n, err)
		}
		if in.Executor.ID == "" && in.Data.Jurisdiction == "" {
			return nil, fmt.Errorf("line %d: not a policy input document: no data.jurisdiction and no executor.id", n)
		}
		out = append(out, sampleInput{line: n, in: in})
	}
	if len(out) == 0 {
		return nil, errors.New("no inputs")
	}
	return out, nil
}
