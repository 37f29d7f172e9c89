package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage/fs"
	"github.com/sluice-dev/sluice/transform"
)

const (
	testAdmin   = "admin-token-0123456789"
	testAuditor = "auditor-token-0123456789"
)

// get sends a GET with an optional bearer token to h.
func get(t *testing.T, h http.Handler, path, token string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func emptyStore(t *testing.T) *fs.Store {
	t.Helper()
	st, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestServeAuth checks who may read what: the admin everything, the
// auditor only the lineage API and the page, nobody anything without a
// valid token except the probes and the page's static files.
func TestServeAuth(t *testing.T) {
	h := newHTTPServer(httpOptions{
		Store:         emptyStore(t),
		AdminTokens:   []string{testAdmin},
		AuditorTokens: []string{testAuditor, "second-auditor-token-rotated"},
		Metrics:       &metricsSource{Runner: func() transform.Snapshot { return transform.Snapshot{Records: 7} }},
	})
	const trace = "/api/v1/trace?topic=events&partition=0&offset=1"
	cases := []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", 200},
		{"/readyz", "", 200},
		{"/", "", 200},
		{"/app.js", "", 200},
		{"/metrics", "", 401},
		{"/metrics", "wrong-token-0123456789", 401},
		{"/metrics", testAuditor, 403},
		{"/metrics", testAdmin, 200},
		{"/api/v1/report", "", 401},
		{"/api/v1/report", "wrong-token-0123456789", 401},
		{"/api/v1/report", testAuditor, 200},
		{"/api/v1/report", "second-auditor-token-rotated", 200},
		{"/api/v1/report", testAdmin, 200},
		{"/api/v1/verify", testAuditor, 200},
		{trace, "", 401},
		{trace, testAuditor, 404}, // authorised; the empty store holds no event
		{"/api/v1/trace?topic=events", testAuditor, 400},
		{"/api/v1/nothing", testAuditor, 404},
		{"/api/v1/nothing", "", 401},
	}
	for _, c := range cases {
		t.Run(c.path+"/"+c.token, func(t *testing.T) {
			rec := get(t, h, c.path, c.token)
			if rec.Code != c.want {
				t.Fatalf("GET %s: status %d, want %d; body %s", c.path, rec.Code, c.want, rec.Body)
			}
			if c.want == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge")
			}
			if c.want == 200 && c.path == "/metrics" && !strings.Contains(rec.Body.String(), "sluice_records_in_total 7") {
				t.Errorf("admin sees no pipeline metrics:\n%s", rec.Body)
			}
			if strings.HasPrefix(c.path, "/api/") && rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("API answered %q, want JSON", rec.Header().Get("Content-Type"))
			}
		})
	}

	// Without token files the server is open (cmdServe allows that only
	// on loopback).
	open := newHTTPServer(httpOptions{Store: emptyStore(t)})
	if rec := get(t, open, "/metrics", ""); rec.Code != 200 {
		t.Errorf("open server: /metrics status %d", rec.Code)
	}
	// Writes are not part of the API.
	req := httptest.NewRequest(http.MethodPost, "/api/v1/report", nil)
	req.Header.Set("Authorization", "Bearer "+testAdmin)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/v1/report: status %d, want 405", rec.Code)
	}
}

// fakeExec is an executor whose health the test sets.
type fakeExec struct {
	id, kind string
	loc      gpuexec.Location
	err      error
	hang     bool
}

func (e *fakeExec) ID() string                 { return e.id }
func (e *fakeExec) Kind() string               { return e.kind }
func (e *fakeExec) Location() gpuexec.Location { return e.loc }
func (e *fakeExec) Healthy(ctx context.Context) error {
	if e.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return e.err
}
func (e *fakeExec) Execute(context.Context, *gpuexec.Plan, arrow.RecordBatch) (arrow.RecordBatch, error) {
	return nil, gpuexec.ErrUnavailable
}

// scrape returns /metrics as series → value, the series spelled as in
// the text format (labels sorted by name).
func scrape(t *testing.T, h http.Handler) map[string]string {
	t.Helper()
	rec := get(t, h, "/metrics", "")
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	return out
}

func TestMetricsReflectPipeline(t *testing.T) {
	snap := transform.Snapshot{
		Batches: 3, Records: 1000, FeatureRows: 900, DeadLetters: 10, Quarantined: 90,
		QuarantineReasons: map[string]int64{"IN data: DPDP Act s.16 (IN)": 60, "BR data: LGPD Art. 33 (BR)": 30},
		RowsByExecutor:    map[string]int64{"onprem-fra": 600, "aws-us-east-1": 300},
		RowsByLocation:    map[string]int64{"fra": 600, "us-east-1": 300},
		LineageEvents:     12, Replayed: 5, Stalls: 2,
		Decisions: map[transform.DecisionKey]int64{
			{Outcome: "allow", Rule: ""}:                  40,
			{Outcome: "deny", Rule: "DPDP Act s.16 (IN)"}: 6,
		},
		Latency: transform.Histogram{Bounds: []float64{0.1, 1}, Counts: []uint64{2, 3}, Count: 3, Sum: 1.25},
	}
	src := kafka.Stats{Records: 1010, Batches: 4,
		Committed: map[int]int64{0: 100, 1: 50}, HighWater: map[int]int64{0: 130, 1: 50, 2: 70}, Assigned: []int{0, 1}}
	execs := []gpuexec.Executor{
		&fakeExec{id: "onprem-fra", kind: "cpu", loc: gpuexec.Location{Name: "fra"}},
		&fakeExec{id: "aws-us-east-1", kind: "cuda", loc: gpuexec.Location{Name: "us-east-1"}, err: gpuexec.ErrUnavailable},
		&fakeExec{id: "remote-hung", kind: "remote", loc: gpuexec.Location{Name: "far"}, hang: true},
	}
	h := newHTTPServer(httpOptions{Metrics: &metricsSource{
		Runner:         func() transform.Snapshot { return snap },
		Source:         func() kafka.Stats { return src },
		Executors:      execs,
		PolicyRevision: func() string { return "sha256:abc" },
		Telemetry: func(context.Context) []deviceTelemetry {
			return []deviceTelemetry{{Executor: "aws-us-east-1", Device: "0", GPU: 0.75, Memory: 0.5, MemoryUsed: 1 << 30, MemoryTotal: 80 << 30}}
		},
		HealthTimeout: 200 * time.Millisecond,
	}})
	start := time.Now()
	m := scrape(t, h)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("scrape took %s: a hung executor must cost at most the health timeout", el)
	}
	want := map[string]string{
		`sluice_records_in_total`:                                                            "1000",
		`sluice_records_out_total{outcome="features"}`:                                       "900",
		`sluice_records_out_total{outcome="dead_letter"}`:                                    "10",
		`sluice_records_out_total{outcome="quarantine"}`:                                     "90",
		`sluice_dead_letters_total`:                                                          "10",
		`sluice_quarantined_rows_total{reason="IN data: DPDP Act s.16 (IN)"}`:                "60",
		`sluice_quarantined_rows_total{reason="BR data: LGPD Art. 33 (BR)"}`:                 "30",
		`sluice_policy_decisions_total{outcome="deny",rule="DPDP Act s.16 (IN)"}`:            "6",
		`sluice_policy_decisions_total{outcome="allow",rule=""}`:                             "40",
		`sluice_routed_rows_total{executor="aws-us-east-1"}`:                                 "300",
		`sluice_location_rows_total{location="fra"}`:                                         "600",
		`sluice_lineage_events_total`:                                                        "12",
		`sluice_replayed_records_total`:                                                      "5",
		`sluice_stalls_total`:                                                                "2",
		`sluice_batches_total`:                                                               "3",
		`sluice_batch_duration_seconds_bucket{le="0.1"}`:                                     "2",
		`sluice_batch_duration_seconds_bucket{le="1"}`:                                       "3",
		`sluice_batch_duration_seconds_bucket{le="+Inf"}`:                                    "3",
		`sluice_batch_duration_seconds_sum`:                                                  "1.25",
		`sluice_batch_duration_seconds_count`:                                                "3",
		`sluice_source_records_total`:                                                        "1010",
		`sluice_consumer_lag_records`:                                                        "30",
		`sluice_consumer_partition_lag_records{partition="0"}`:                               "30",
		`sluice_consumer_partition_lag_records{partition="1"}`:                               "0",
		`sluice_consumer_assigned_partitions`:                                                "2",
		`sluice_executor_healthy{executor="onprem-fra",kind="cpu",location="fra"}`:           "1",
		`sluice_executor_healthy{executor="aws-us-east-1",kind="cuda",location="us-east-1"}`: "0",
		`sluice_executor_healthy{executor="remote-hung",kind="remote",location="far"}`:       "0",
		`sluice_executor_gpu_utilization_ratio{device="0",executor="aws-us-east-1"}`:         "0.75",
		`sluice_executor_memory_total_bytes{device="0",executor="aws-us-east-1"}`:            "8.589934592e+10",
		`sluice_policy_revision_info{revision="sha256:abc"}`:                                 "1",
	}
	for series, v := range want {
		if got, ok := m[series]; !ok {
			t.Errorf("missing %s", series)
		} else if got != v {
			t.Errorf("%s = %s, want %s", series, got, v)
		}
	}
	// Partition 2 was never committed by this replica: no lag claimed.
	if _, ok := m[`sluice_consumer_partition_lag_records{partition="2"}`]; ok {
		t.Errorf("lag reported for a partition without a committed offset")
	}
	if _, ok := m[`go_goroutines`]; !ok {
		t.Errorf("no Go runtime metrics")
	}
}

func TestReadyz(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()

	healthy := &fakeExec{id: "a"}
	sick := &fakeExec{id: "b", err: gpuexec.ErrUnavailable}
	cases := []struct {
		name      string
		checks    []readinessCheck
		wantReady bool
		failing   []string
	}{
		{"all up", []readinessCheck{
			readyBrokers([]string{deadAddr, ln.Addr().String()}),
			readyStoreReadable("lineage store", emptyStore(t), "lineage"),
			readyStoreWritable("sink", emptyStore(t), "_sluice/readyz"),
			readyPolicy(func() string { return "sha256:abc" }),
			readyExecutors([]gpuexec.Executor{sick, healthy}),
		}, true, nil},
		{"broker down", []readinessCheck{readyBrokers([]string{deadAddr})}, false, []string{"kafka brokers"}},
		{"no policy", []readinessCheck{readyPolicy(func() string { return "" })}, false, []string{"policy"}},
		{"no healthy executor", []readinessCheck{readyExecutors([]gpuexec.Executor{sick})}, false, []string{"executors"}},
		{"store unreadable", []readinessCheck{readyStoreReadable("lineage store", failingStore{}, "lineage")}, false, []string{"lineage store"}},
		{"check hangs", []readinessCheck{{Name: "hung", Check: func(ctx context.Context) error { select {} }}}, false, []string{"hung"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHTTPServer(httpOptions{Ready: c.checks, ReadyTimeout: 300 * time.Millisecond, AdminTokens: []string{testAdmin}})
			for _, tok := range []string{"", testAdmin} {
				rec := get(t, h, "/readyz", tok)
				var res readyResult
				if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
					t.Fatal(err)
				}
				wantCode := 200
				if !c.wantReady {
					wantCode = 503
				}
				if rec.Code != wantCode || res.Ready != c.wantReady {
					t.Fatalf("status %d ready %v, want %d %v: %s", rec.Code, res.Ready, wantCode, c.wantReady, rec.Body)
				}
				var failing []string
				for _, ch := range res.Checks {
					if !ch.OK {
						failing = append(failing, ch.Name)
						if (ch.Error != "") != (tok == testAdmin) {
							t.Errorf("token %q: check %s error %q: errors are for admins only", tok, ch.Name, ch.Error)
						}
					}
				}
				if !slices.Equal(failing, c.failing) {
					t.Errorf("failing checks %v, want %v", failing, c.failing)
				}
			}
		})
	}
}

type failingStore struct{ lineage.Store }

func (failingStore) Iter(context.Context, string, func(string) error) error {
	return errors.New("access denied")
}

func TestLineageAPIOnDemo(t *testing.T) {
	dir := demoTrail(t, 2000)
	st, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h := newHTTPServer(httpOptions{Store: st, AuditorTokens: []string{testAuditor}})
	decode := func(rec *httptest.ResponseRecorder, v any) {
		t.Helper()
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("%v: %s", err, rec.Body)
		}
	}

	// Every record the CLI can trace, the API traces to the same events.
	all, err := lineage.ReadAll(ctx, st, lineagePrefix)
	if err != nil {
		t.Fatal(err)
	}
	var feat, quar *lineage.Event
	for i, ev := range all {
		switch ev.Run.Facets.Outcome.Kind {
		case lineage.OutcomeFeatures:
			feat = &all[i]
		case lineage.OutcomeQuarantine:
			quar = &all[i]
		}
	}
	if feat == nil || quar == nil {
		t.Fatal("the demo wrote no features or no quarantine event")
	}
	for _, ev := range []*lineage.Event{feat, quar} {
		ko := ev.Run.Facets.KafkaOffsets
		off := ko.Ranges[len(ko.Ranges)-1][1]
		rec := get(t, h, fmt.Sprintf("/api/v1/trace?topic=%s&partition=%d&offset=%d", ko.Topic, ko.Partition, off), testAuditor)
		if rec.Code != 200 {
			t.Fatalf("trace: %d %s", rec.Code, rec.Body)
		}
		var tr traceResponse
		decode(rec, &tr)
		if len(tr.Events) != 1 || tr.Events[0].Run.RunID != ev.Run.RunID {
			t.Fatalf("trace %s/%d@%d: %d events, want the event %s", ko.Topic, ko.Partition, off, len(tr.Events), ev.Run.RunID)
		}
		if got := tr.Events[0].Run.Facets.ResidencyDecision; got == nil || len(got.Decisions) == 0 || got.Decisions[0].Revision == "" {
			t.Errorf("traced event lacks its decisions and policy revision")
		}
	}

	// An object key, bare file name or full URL, leads to the event that wrote it.
	obj := feat.Outputs[0]
	key := obj.OutputFacets.Object.Key
	for _, q := range []string{key, lineage.ObjectURL(obj.Namespace, key), "/mnt/copy/" + key} {
		rec := get(t, h, "/api/v1/trace?object="+q, testAuditor)
		var tr traceResponse
		decode(rec, &tr)
		if rec.Code != 200 || len(tr.Events) != 1 || tr.Events[0].Run.RunID != feat.Run.RunID {
			t.Errorf("trace object %s: status %d, %d events, want event %s", q, rec.Code, len(tr.Events), feat.Run.RunID)
		}
	}
	if rec := get(t, h, "/api/v1/trace?object=no-such.parquet", testAuditor); rec.Code != 404 {
		t.Errorf("unknown object: status %d, want 404", rec.Code)
	}
	if rec := get(t, h, "/api/v1/trace?topic=events&partition=0&offset=99999999", testAuditor); rec.Code != 404 {
		t.Errorf("offset past the end: status %d, want 404", rec.Code)
	}

	// The report is lineage.Report; its rows add up to every record.
	var rep lineage.ResidencyReport
	decode(get(t, h, "/api/v1/report", testAuditor), &rep)
	want, err := lineage.Report(ctx, st, lineagePrefix)
	if err != nil {
		t.Fatal(err)
	}
	var rows int64
	for _, r := range rep.Rows {
		rows += r.Rows
	}
	if rep.Events != len(all) || rows != 2000 || len(rep.Rules) != len(want.Rules) {
		t.Errorf("report: %d events, %d rows, %d rules; want %d, 2000, %d", rep.Events, rows, len(rep.Rules), len(all), len(want.Rules))
	}

	// No row was processed where its decision did not allow it.
	var m lineage.ResidencyMatrix
	decode(get(t, h, "/api/v1/residency", testAuditor), &m)
	if m.Events != len(all) || m.ProcessedRows == 0 || m.ViolationRows != 0 {
		t.Errorf("residency: %d events, %d rows processed, %d in violation: %v", m.Events, m.ProcessedRows, m.ViolationRows, m.Violations)
	}

	var v lineage.VerifyReport
	decode(get(t, h, "/api/v1/verify", testAuditor), &v)
	if !v.OK || v.Events != len(all) {
		t.Fatalf("verify: ok %v, %d events: %v", v.OK, v.Events, v.Problems)
	}

	decode(get(t, h, "/api/v1/verify?objects=true", testAuditor), &v)
	if !v.OK {
		t.Fatalf("verify with objects: %v", v.Problems)
	}
	// A changed feature object fails the object check, not the trail check.
	objPath := filepath.Join(dir, strings.TrimPrefix(lineage.ObjectURL(obj.Namespace, key), "file://"+dir))
	orig, err := os.ReadFile(objPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(objPath, append(slices.Clone(orig), 0), 0o644); err != nil {
		t.Fatal(err)
	}
	decode(get(t, h, "/api/v1/verify", testAuditor), &v)
	trailOK := v.OK
	decode(get(t, h, "/api/v1/verify?objects=true", testAuditor), &v)
	if !trailOK || v.OK {
		t.Errorf("after changing %s: trail ok %v (want true), with objects ok %v (want false)", objPath, trailOK, v.OK)
	}
	if err := os.WriteFile(objPath, orig, 0o644); err != nil {
		t.Fatal(err)
	}

	// A tampered copy fails verification through the API.
	bad := t.TempDir()
	if err := os.CopyFS(bad, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	seg := ""
	_ = filepath.WalkDir(filepath.Join(bad, lineagePrefix), func(p string, d os.DirEntry, err error) error {
		if seg == "" && strings.HasSuffix(p, ".ndjson") {
			seg = p
		}
		return nil
	})
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seg, bytes.Replace(data, []byte(`"allow":true`), []byte(`"allow":false`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	badSt, err := fs.New(bad)
	if err != nil {
		t.Fatal(err)
	}
	decode(get(t, newHTTPServer(httpOptions{Store: badSt}), "/api/v1/verify", ""), &v)
	if v.OK || len(v.Problems) == 0 {
		t.Errorf("verify of a tampered segment %s: ok %v, problems %v", seg, v.OK, v.Problems)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCmdServe(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "admin")
	if err := os.WriteFile(tokFile, []byte("# rotated 2026-01\n"+testAdmin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	weak := filepath.Join(dir, "weak")
	if err := os.WriteFile(weak, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := "file://" + dir
	ctx := context.Background()
	for name, args := range map[string][]string{
		"open to the network": {"--store", store, "--listen", "0.0.0.0:0"},
		"weak token":          {"--store", store, "--listen", "127.0.0.1:0", "--token-file", weak},
		"no store":            {"--listen", "127.0.0.1:0"},
	} {
		if err := cmdServe(ctx, args, io.Discard, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%s: err %v, want a usage error", name, err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdServe(ctx, []string{"--store", store, "--listen", "0.0.0.0:0", "--token-file", tokFile}, &out, io.Discard)
	}()
	var base string
	for deadline := time.Now().Add(10 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, after, ok := strings.Cut(out.String(), "listening on "); ok {
			base = strings.TrimSpace(after)
		}
	}
	if base == "" {
		t.Fatal("serve printed no address")
	}
	base = strings.Replace(base, "0.0.0.0", "127.0.0.1", 1)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 401, "/api/v1/verify": 401} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testAdmin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("admin /metrics: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on cancel")
	}
}
