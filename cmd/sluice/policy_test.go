package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-dev/sluice/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/policy/golden/*.json from the current output")

var decisionID = regexp.MustCompile(`"decision_id": "[0-9a-f-]{36}"`)

// TestPolicyEvalGolden runs `sluice policy eval -o json` on every input of
// testdata/policy/eval and compares the output, decision ids masked, with
// testdata/policy/golden. Run with -update after an intended change.
func TestPolicyEvalGolden(t *testing.T) {
	inputs, err := filepath.Glob("../../testdata/policy/eval/*.json")
	if err != nil || len(inputs) < 5 {
		t.Fatalf("inputs %v, %v", inputs, err)
	}
	type golden struct {
		name string
		args []string
	}
	var cases []golden
	for _, in := range inputs {
		cases = append(cases, golden{strings.TrimSuffix(filepath.Base(in), ".json"), []string{"policy", "eval", "--input", in, "-o", "json"}})
	}
	cases = append(cases, golden{"record-us-card-all-executors", []string{"policy", "eval", "--input", "../../testdata/records/us-card.json",
		"-f", "../../deploy/examples/card-transactions.yaml", "-o", "json"}})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := sluice(t, c.args...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if n := len(decisionID.FindAllString(out, -1)); n == 0 || n != strings.Count(out, `"decision_id"`) {
				t.Fatalf("%d well-formed decision ids in:\n%s", n, out)
			}
			got := decisionID.ReplaceAllString(out, `"decision_id": "MASKED"`)
			path := filepath.Join("../../testdata/policy/golden", c.name+".json")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/sluice -run TestPolicyEvalGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("policy eval output differs from %s (rerun with -update if intended)\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

// evalResult is one element of `policy eval -o json`.
type evalResult struct {
	Input    policy.Input    `json:"input"`
	Decision policy.Decision `json:"decision"`
	Error    string          `json:"error"`
}

// TestPolicyEvalCases decides every case of testdata/policy/cases.yaml (the
// table the Go API tests use) through the CLI.
func TestPolicyEvalCases(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/policy/cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cf struct {
		Executors map[string]policy.Executor `yaml:"executors"`
		Cases     []struct {
			Name     string `yaml:"name"`
			Executor string `yaml:"executor"`
			Purpose  string `yaml:"purpose"`
			Data     struct {
				Jurisdiction string `yaml:"jurisdiction"`
				Classes      []string
				Columns      []struct {
					Name    string   `yaml:"name"`
					Classes []string `yaml:"classes"`
				} `yaml:"columns"`
			} `yaml:"data"`
			Want struct {
				Allow          *bool    `yaml:"allow"`
				Rules          []string `yaml:"rules"`
				ReasonContains []string `yaml:"reason_contains"`
				Hash           []string `yaml:"hash"`
			} `yaml:"want"`
		} `yaml:"cases"`
	}
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatal(err)
	}
	if len(cf.Cases) < 10 {
		t.Fatalf("%d cases", len(cf.Cases))
	}
	dir := t.TempDir()
	for i, c := range cf.Cases {
		t.Run(c.Name, func(t *testing.T) {
			ex, ok := cf.Executors[c.Executor]
			if !ok || c.Want.Allow == nil {
				t.Fatalf("case needs a known executor and want.allow")
			}
			in := policy.Input{
				Pipeline: policy.Pipeline{Name: "card-fraud", Purpose: c.Purpose},
				Data:     policy.Data{Jurisdiction: c.Data.Jurisdiction, Region: policy.Region(c.Data.Jurisdiction), Classes: c.Data.Classes},
				Executor: ex,
			}
			if in.Pipeline.Purpose == "" {
				in.Pipeline.Purpose = "ml-training"
			}
			for _, col := range c.Data.Columns {
				in.Data.Columns = append(in.Data.Columns, policy.Column{Name: col.Name, Classes: col.Classes})
			}
			file := filepath.Join(dir, fmt.Sprintf("case%d.json", i))
			b, _ := json.Marshal(in)
			if err := os.WriteFile(file, b, 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := sluice(t, "policy", "eval", "--input", file, "-o", "json")
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var res []evalResult
			if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
				t.Fatalf("output %q: %v", out, err)
			}
			got := res[0].Decision
			if res[0].Error != "" {
				t.Fatalf("evaluation error: %s", res[0].Error)
			}
			if got.Allow != *c.Want.Allow {
				t.Errorf("allow = %v, want %v (reasons %q)", got.Allow, *c.Want.Allow, got.Reasons)
			}
			if c.Want.Rules != nil && !slices.Equal(orEmpty(got.Rules), c.Want.Rules) {
				t.Errorf("rules = %q, want %q", got.Rules, c.Want.Rules)
			}
			if c.Want.Hash != nil && !slices.Equal(orEmpty(got.Obligations.Hash), c.Want.Hash) {
				t.Errorf("hash = %q, want %q", got.Obligations.Hash, c.Want.Hash)
			}
			for _, s := range c.Want.ReasonContains {
				if !strings.Contains(strings.Join(got.Reasons, "\n"), s) {
					t.Errorf("no reason contains %q: %q", s, got.Reasons)
				}
			}
			if !got.Allow && (len(got.Reasons) == 0 || len(got.Rules) == 0) {
				t.Errorf("a deny without reasons or rule labels: %+v", got)
			}

			// The text output says the same.
			_, text, _ := sluice(t, "policy", "eval", "--input", file)
			verdict := map[bool]string{true: "ALLOW", false: "DENY"}[*c.Want.Allow]
			if !strings.HasPrefix(text, verdict+" ") {
				t.Errorf("text output does not start with %s:\n%s", verdict, text)
			}
			for _, r := range got.Rules {
				if !strings.Contains(text, r) {
					t.Errorf("text output lacks rule %q:\n%s", r, text)
				}
			}
		})
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// copyPolicies copies the shipped policy directory to a temp dir and
// applies edits (file → new content; "" deletes).
func copyPolicies(t *testing.T, edits map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob("../../policies/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !strings.HasSuffix(f, ".rego") && !strings.HasSuffix(f, ".json") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range edits {
		p := filepath.Join(dir, name)
		if body == "" {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPolicyDiff(t *testing.T) {
	// The sample: the eval inputs, one per line, the first one wrapped as
	// `policy eval -o json` prints it.
	inputs, _ := filepath.Glob("../../testdata/policy/eval/*.json")
	var sample strings.Builder
	lineOf := map[string]int{}
	for i, f := range inputs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			v = map[string]any{"input": v, "decision": map[string]any{"allow": true}}
		}
		line, _ := json.Marshal(v)
		sample.Write(line)
		sample.WriteString("\n\n") // blank lines are skipped
		lineOf[strings.TrimSuffix(filepath.Base(f), ".json")] = 2*i + 1
	}
	samplePath := filepath.Join(t.TempDir(), "sample.ndjson")
	if err := os.WriteFile(samplePath, []byte(sample.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	shipped := "../../policies"

	data, err := os.ReadFile("../../policies/data.json")
	if err != nil {
		t.Fatal(err)
	}
	// The candidate: the US is no longer a DPF jurisdiction (FR → DPF
	// cloud: allow→deny), India becomes an ordinary jurisdiction (IN →
	// onprem-fra: deny→allow), and PII is no longer hashed for the cloud
	// (US → cloud: obligations and rules change, still allowed; DE → cloud:
	// still denied, but without the hashing rule's label).
	var doc map[string]map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	doc["residency"]["dpf_jurisdictions"] = []string{}
	delete(doc["residency"]["localised"].(map[string]any), "IN")
	newData, _ := json.Marshal(doc)
	pseudo, err := os.ReadFile("../../policies/pseudonymise.rego")
	if err != nil {
		t.Fatal(err)
	}
	noHash := strings.Replace(string(pseudo), `executor_kind == "cloud"`, `executor_kind == "no such kind"`, 1)
	if noHash == string(pseudo) {
		t.Fatal("pseudonymise.rego no longer tests executor_kind == \"cloud\"; update this test")
	}
	candidate := copyPolicies(t, map[string]string{"data.json": string(newData), "pseudonymise.rego": noHash})

	t.Run("json", func(t *testing.T) {
		code, out, errOut := sluice(t, "policy", "diff", "--from", shipped, "--to", candidate, "--sample", samplePath, "-o", "json")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var rep diffReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		if rep.Inputs != len(inputs) || rep.AllowToDeny != 1 || rep.DenyToAllow != 1 || rep.ObligationsOrRules != 2 || rep.Changed != 4 {
			t.Errorf("summary %+v, want %d inputs, 1 allow→deny, 1 deny→allow, 2 other changes", rep, len(inputs))
		}
		if rep.From == rep.To || !strings.HasPrefix(rep.From, "sha256:") {
			t.Errorf("revisions %s → %s", rep.From, rep.To)
		}
		want := map[string]string{
			"fr-to-dpf-cloud":    "allow→deny",
			"in-localised":       "deny→allow",
			"us-to-cloud-hashed": "obligations/rules",
			"de-to-us-cloud":     "obligations/rules",
		}
		for _, c := range rep.Changes {
			var name string
			for n, l := range lineOf {
				if l == c.Line {
					name = n
				}
			}
			if want[name] != c.Change {
				t.Errorf("line %d (%s): change %q, want %q", c.Line, name, c.Change, want[name])
			}
			delete(want, name)
			if name == "fr-to-dpf-cloud" && (!c.Before.Allow || c.After.Allow || !slices.Contains(c.After.Rules, "GDPR Art. 44")) {
				t.Errorf("FR before/after: %+v / %+v", c.Before, c.After)
			}
			if name == "us-to-cloud-hashed" && (!slices.Equal(c.Before.Obligations.Hash, []string{"user_id"}) || !c.After.Obligations.Empty()) {
				t.Errorf("US obligations before/after: %+v / %+v", c.Before.Obligations, c.After.Obligations)
			}
		}
		if len(want) != 0 {
			t.Errorf("changes not reported: %v", want)
		}
	})
	t.Run("text", func(t *testing.T) {
		code, out, _ := sluice(t, "policy", "diff", "--from", shipped, "--to", candidate, "--sample", samplePath)
		if code != exitOK {
			t.Fatalf("exit %d", code)
		}
		for _, s := range []string{"allow→deny  data FR", "deny→allow  data IN", "before: ALLOW", "after : DENY", "GDPR Art. 44",
			fmt.Sprintf("%d inputs, 4 changed: 1 allow→deny, 1 deny→allow, 2 obligations or rules only", len(inputs))} {
			if !strings.Contains(out, s) {
				t.Errorf("output lacks %q:\n%s", s, out)
			}
		}
	})
	t.Run("same policy changes nothing", func(t *testing.T) {
		code, out, _ := sluice(t, "policy", "diff", "--from", shipped, "--to", copyPolicies(t, nil), "--sample", samplePath, "-o", "json")
		var rep diffReport
		if code != exitOK || json.Unmarshal([]byte(out), &rep) != nil || rep.Changed != 0 || rep.From != rep.To || len(rep.Changes) != 0 {
			t.Errorf("exit %d report %s", code, out)
		}
	})

	bad := filepath.Join(t.TempDir(), "bad.ndjson")
	if err := os.WriteFile(bad, []byte(`{"data":{"jurisdiction":"DE"},"executor":{"id":"e"}}`+"\n"+`{"datum": 1}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	errors := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"broken candidate", []string{"--from", shipped, "--to", copyPolicies(t, map[string]string{"gdpr.rego": "package sluice\n\ndeny contains x if {\n"}), "--sample", samplePath}, exitFail, "gdpr.rego"},
		{"missing from", []string{"--from", "does-not-exist", "--to", shipped, "--sample", samplePath}, exitFail, "does-not-exist"},
		{"malformed sample", []string{"--from", shipped, "--to", shipped, "--sample", bad}, exitFail, "line 2"},
		{"missing flags", []string{"--from", shipped}, exitUsage, "--sample"},
	}
	for _, tt := range errors {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := sluice(t, append([]string{"policy", "diff"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errOut, tt.stderr) {
				t.Errorf("exit %d stderr %q, want %d and %q (stdout %s)", code, errOut, tt.code, tt.stderr, out)
			}
		})
	}
}
