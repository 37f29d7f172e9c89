package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sluice runs the CLI in-process and returns its exit code and output.
func sluice(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCLIExitCodesAndOutput(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: x\nsource:\n  topic: t\n  brokerz: [a]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deToCloud := filepath.Join(t.TempDir(), "in.json")
	if err := os.WriteFile(deToCloud, []byte(`{"pipeline":{"name":"p","purpose":"fraud-detection"},
 "data":{"jurisdiction":"DE","region":"eu","classes":["pii"],"columns":[{"name":"user_id","classes":["pii"]}]},
 "executor":{"id":"aws-us-east-1","kind":"cloud","provider":"aws","region":"us-east-1","jurisdiction":"US","certifications":["soc2"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   []string // substrings
		stderr   []string
		jsonKeys []string // stdout parses as JSON with these keys (object) or is an array
	}{
		{name: "no command", args: nil, code: exitUsage, stderr: []string{"Usage:", "no command"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: exitUsage, stderr: []string{`unknown command "frobnicate"`}},
		{name: "help", args: []string{"--help"}, code: exitOK, stdout: []string{"demo", "validate", "lineage verify"}},
		{name: "validate valid", args: []string{"validate", "-f", "../../deploy/examples/card-transactions.yaml"}, code: exitOK,
			stdout: []string{"card"}},
		{name: "validate valid json", args: []string{"validate", "-f", "../../deploy/examples/clinical-events.yaml", "-o", "json"},
			code: exitOK, jsonKeys: []string{"valid", "spec"}},
		{name: "validate invalid", args: []string{"validate", "-f", bad}, code: exitFail,
			stderr: []string{bad + ":4:", "brokerz", "problem"}},
		{name: "validate invalid json", args: []string{"validate", "-f", bad, "-o", "json"}, code: exitFail,
			jsonKeys: []string{"valid", "problems"}},
		{name: "validate missing file flag", args: []string{"validate"}, code: exitUsage, stderr: []string{"-f SPEC"}},
		{name: "validate bad output format", args: []string{"validate", "-f", bad, "-o", "yaml"}, code: exitUsage},
		{name: "policy test shipped", args: []string{"policy", "test"}, code: exitOK, stdout: []string{"PASS", " passed, 0 failed"}},
		{name: "policy eval denies EU to US cloud", args: []string{"policy", "eval", "--input", deToCloud}, code: exitOK,
			stdout: []string{"DENY", "GDPR"}},
		{name: "policy eval record through spec", args: []string{"policy", "eval", "--input", "../../testdata/records/us-card.json",
			"-f", "../../deploy/examples/card-transactions.yaml", "--executor", "aws-us-east-1", "-o", "json"}, code: exitOK,
			stdout: []string{`"allow": true`, `"user_id"`}},
		{name: "lineage needs store", args: []string{"lineage", "verify"}, code: exitUsage, stderr: []string{"--store"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := sluice(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
			if tc.jsonKeys != nil {
				var m map[string]any
				if err := json.Unmarshal([]byte(out), &m); err != nil {
					t.Fatalf("stdout is not a JSON object: %v\n%s", err, out)
				}
				for _, k := range tc.jsonKeys {
					if _, ok := m[k]; !ok {
						t.Errorf("JSON output lacks %q: %s", k, out)
					}
				}
			}
		})
	}
}

// TestLineageCommandsOnDemoOutput runs the auditor's commands on a demo's
// output, then tampers with one segment and expects verify to fail.
func TestLineageCommandsOnDemoOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	dir := t.TempDir()
	code, out, errOut := sluice(t, "demo", "--dir", dir, "--events", "3000", "-q", "-o", "json")
	if code != exitOK {
		t.Fatalf("demo exit %d: %s %s", code, out, errOut)
	}
	var sum demoSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("demo -o json: %v\n%s", err, out)
	}
	if sum.RecordsIn != 3000 || !sum.Verified {
		t.Fatalf("demo summary %+v", sum)
	}
	store := "file://" + dir

	code, out, _ = sluice(t, "lineage", "verify", "--store", store)
	if code != exitOK || !strings.Contains(out, "lineage OK") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	code, out, _ = sluice(t, "lineage", "trace", "--store", store, "--topic", "events", "--partition", "1", "--offset", "5", "-o", "json")
	if code != exitOK {
		t.Fatalf("trace: exit %d\n%s", code, out)
	}
	var evs []map[string]any
	if err := json.Unmarshal([]byte(out), &evs); err != nil || len(evs) == 0 {
		t.Fatalf("trace -o json: %v\n%s", err, out)
	}
	code, _, _ = sluice(t, "lineage", "trace", "--store", store, "--topic", "events", "--partition", "1", "--offset", "999999")
	if code != exitFail {
		t.Errorf("trace of an offset never seen: exit %d, want 1", code)
	}
	code, out, _ = sluice(t, "lineage", "report", "--store", store)
	if code != exitOK || !strings.Contains(out, "DPDP") || !strings.Contains(out, "onprem-fra") {
		t.Fatalf("report: exit %d\n%s", code, out)
	}

	// Flip one byte of one segment: verify must fail.
	var seg string
	_ = filepath.WalkDir(filepath.Join(dir, lineagePrefix), func(p string, d os.DirEntry, err error) error {
		if err == nil && seg == "" && strings.HasSuffix(p, ".ndjson") {
			seg = p
		}
		return nil
	})
	if seg == "" {
		t.Fatal("no lineage segment found")
	}
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(`"rows":`))
	if i < 0 {
		t.Fatalf("segment %s has no rows field", seg)
	}
	b[i+len(`"rows":`)] ^= 1 // 1 → 0, 2 → 3, …: still valid JSON, different count
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = sluice(t, "lineage", "verify", "--store", store)
	if code != exitFail || !strings.Contains(out, "FAILED") {
		t.Fatalf("verify after tampering: exit %d, want 1\n%s", code, out)
	}
}
