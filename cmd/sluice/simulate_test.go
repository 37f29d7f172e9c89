package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestSimulateBuiltInDay(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if err := cmdSimulate(context.Background(), []string{"--out", dir}, &out, &errOut); err != nil {
		t.Fatalf("simulate: %v\n%s%s", err, out.String(), errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	t.Log("\n" + out.String())
	m := regexp.MustCompile(`^simulate: onprem-util ([0-9.]+)%, p99 ([0-9]+) ms \(target ([0-9]+) ms\), violations 0, cost ([0-9.]+)× all-cloud$`).FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q", last)
	}
	util, _ := strconv.ParseFloat(m[1], 64)
	p99, _ := strconv.ParseFloat(m[2], 64)
	target, _ := strconv.ParseFloat(m[3], 64)
	ratio, _ := strconv.ParseFloat(m[4], 64)
	if util < 85 || p99 > target || ratio > 0.7 {
		t.Errorf("targets missed: %s", last)
	}
	for _, f := range []string{"summary.json", "utilization.svg", "queue.svg", "gpus.svg", "load.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) < 200 {
			t.Errorf("%s: %v (%d bytes)", f, err, len(b))
		}
		if strings.HasSuffix(f, ".svg") && (!bytes.HasPrefix(b, []byte("<svg")) || !bytes.Contains(b, []byte("<polyline"))) {
			t.Errorf("%s is not a line chart", f)
		}
	}
	for _, s := range []string{"sluice", "all-cloud", "onprem-only", "clinical", "aws-sa-east-1"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("summary lacks %q", s)
		}
	}
}

func TestSimulateJSONAndCSVProfile(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "trace.csv")
	if err := os.WriteFile(csv, []byte("time,records_per_s\n0,500000\n1h,900000\n2h,500000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := cmdSimulate(context.Background(), []string{"--profile", csv, "--pool", "../../testdata/simulate/pool.yaml", "--span", "2h", "-o", "json"}, &out, &errOut)
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, errOut.String())
	}
	js := out.String()[:strings.LastIndex(strings.TrimSpace(out.String()), "\nsimulate: ")]
	var rep simulateReport
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatal(err)
	}
	c := rep.Comparison
	if c.Sluice.Batches == 0 || c.Sluice.Batches != c.AllCloud.Batches || c.Sluice.Batches != c.OnPremOnly.Batches {
		t.Errorf("batches: %d, %d, %d; the three strategies see the same arrivals", c.Sluice.Batches, c.AllCloud.Batches, c.OnPremOnly.Batches)
	}
	// 2 h at a mean 700k records/s in batches of 2M rows.
	if n := c.Sluice.Batches; n < 2300 || n > 2740 {
		t.Errorf("%d batches from the trace, want about 2520", n)
	}
	if err := cmdSimulate(context.Background(), []string{"--profile", filepath.Join(dir, "none.csv")}, &out, &errOut); err == nil {
		t.Error("a missing profile file was accepted")
	}
}
