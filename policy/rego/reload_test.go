package rego_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/policy/rego"
)

// A small policy: data from a jurisdiction listed in data.allowed may go
// anywhere. Its test pins DE as allowed, so a revision that drops DE fails
// its own test.
const (
	reloadRoute = `package sluice

route := {"allow": input.data.jurisdiction in data.allowed, "rules": ["allow-list"]}
`
	reloadTest = `package sluice_test

test_de_allowed if data.sluice.route.allow with input as {"data": {"jurisdiction": "DE"}}
`
)

func reloadInput(j string) policy.Input {
	return policy.Input{Data: policy.Data{Jurisdiction: j}, Executor: policy.Executor{ID: "e", Kind: "onprem", Jurisdiction: "DE"}}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
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
}

// events collects OnReload calls.
type events struct {
	mu  sync.Mutex
	evs []rego.ReloadEvent
	ch  chan rego.ReloadEvent
}

func newEvents() *events { return &events{ch: make(chan rego.ReloadEvent, 16)} }

func (e *events) on(ev rego.ReloadEvent) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
	e.ch <- ev
}

func (e *events) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.evs)
}

func quietLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// allowed decides reloadInput(j) with d and fails the test on an error.
func allowed(t *testing.T, d policy.Decider, j string) (bool, string) {
	t.Helper()
	dec, err := d.Decide(context.Background(), reloadInput(j))
	if err != nil {
		t.Fatalf("Decide(%s): %v", j, err)
	}
	return dec.Allow, dec.Revision
}

func TestReloaderDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"route.rego": reloadRoute, "route_test.rego": reloadTest, "data.json": `{"allowed": ["DE"]}`,
	})
	ev := newEvents()
	var logs bytes.Buffer
	r, err := rego.NewReloader(context.Background(), rego.ReloaderConfig{
		Dir: dir, Timeout: 10 * time.Second, OnReload: ev.on, Logger: quietLogger(&logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	rev1 := r.Revision()
	if ok, rev := allowed(t, r, "FR"); ok || rev != rev1 {
		t.Fatalf("FR allowed=%v under %s before any change", ok, rev)
	}
	before := r.Snapshot()
	if before.Revision() != rev1 {
		t.Fatalf("snapshot revision %s, live %s", before.Revision(), rev1)
	}

	t.Run("unchanged source is not reloaded", func(t *testing.T) {
		n := ev.count()
		if ok, err := r.Check(context.Background()); ok || err != nil {
			t.Fatalf("Check = %v, %v", ok, err)
		}
		if ev.count() != n {
			t.Error("an event for an unchanged source")
		}
	})

	// A valid change: FR is added.
	writeFiles(t, dir, map[string]string{"data.json": `{"allowed": ["DE", "FR"]}`})
	if ok, err := r.Check(context.Background()); !ok || err != nil {
		t.Fatalf("valid change: Check = %v, %v", ok, err)
	}
	rev2 := r.Revision()
	if rev2 == rev1 {
		t.Fatal("revision unchanged after a reload")
	}
	if ok, rev := allowed(t, r, "FR"); !ok || rev != rev2 {
		t.Errorf("after reload FR allowed=%v under %s, want true under %s", ok, rev, rev2)
	}
	if e := <-ev.ch; e.Err != nil || e.Revision != rev1 {
		t.Errorf("first event %+v, want the initial load of %s", e, rev1)
	}
	if e := <-ev.ch; e.Err != nil || e.Revision != rev2 || e.Previous != rev1 {
		t.Errorf("reload event %+v, want %s after %s", e, rev2, rev1)
	}

	t.Run("snapshot taken before the reload keeps its revision", func(t *testing.T) {
		if ok, rev := allowed(t, before, "FR"); ok || rev != rev1 {
			t.Errorf("old snapshot: FR allowed=%v under %s, want false under %s", ok, rev, rev1)
		}
		if before.Revision() != rev1 {
			t.Errorf("old snapshot revision %s", before.Revision())
		}
		if ok, rev := allowed(t, r.Snapshot(), "FR"); !ok || rev != rev2 {
			t.Errorf("new snapshot: FR allowed=%v under %s", ok, rev)
		}
	})

	broken := []struct {
		name  string
		files map[string]string
		want  string // in the error
	}{
		{"parse error", map[string]string{"route.rego": "package sluice\n\nroute := {\n"}, "route.rego"},
		{"compile error", map[string]string{"route.rego": "package sluice\n\nroute := x if x > 1\n"}, "unsafe"},
		{"failing Rego test", map[string]string{"data.json": `{"allowed": ["FR"]}`}, "FAIL data.sluice_test.test_de_allowed"},
		{"broken test module", map[string]string{"route_test.rego": "package sluice_test\n\ntest_x if {\n"}, "route_test.rego"},
		{"broken data", map[string]string{"data.json": `{"allowed": [`}, "data.json"},
	}
	good := map[string]string{"route.rego": reloadRoute, "route_test.rego": reloadTest, "data.json": `{"allowed": ["DE", "FR"]}`}
	for _, tt := range broken {
		t.Run("rejected/"+tt.name, func(t *testing.T) {
			writeFiles(t, dir, tt.files)
			defer writeFiles(t, dir, good)
			n := ev.count()
			ok, err := r.Check(context.Background())
			if ok || !errors.Is(err, rego.ErrRejected) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check = %v, %v; want a rejection mentioning %q", ok, err, tt.want)
			}
			if r.Revision() != rev2 {
				t.Errorf("live revision moved to %s", r.Revision())
			}
			if ok, rev := allowed(t, r, "FR"); !ok || rev != rev2 {
				t.Errorf("after rejection FR allowed=%v under %s, want the old policy %s", ok, rev, rev2)
			}
			if ev.count() != n+1 {
				t.Fatalf("%d events, want 1 rejection", ev.count()-n)
			}
			if e := <-ev.ch; !errors.Is(e.Err, rego.ErrRejected) || e.Previous != rev2 {
				t.Errorf("rejection event %+v", e)
			}
			// The same broken content is not tried (and logged) again.
			if ok, err := r.Check(context.Background()); ok || err != nil {
				t.Errorf("second look at the same broken source: %v, %v", ok, err)
			}
		})
		// Restoring the live content is not a reload.
		if ok, err := r.Check(context.Background()); ok || err != nil {
			t.Fatalf("restoring %s: Check = %v, %v", tt.name, ok, err)
		}
	}
	if !strings.Contains(logs.String(), "policy revision rejected") {
		t.Errorf("rejections not logged:\n%s", logs.String())
	}
}

func TestReloaderRun(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"route.rego": reloadRoute, "data.json": `{"allowed": ["DE"]}`})
	ev := newEvents()
	r, err := rego.NewReloader(context.Background(), rego.ReloaderConfig{
		Dir: dir, Interval: 5 * time.Millisecond, Timeout: 10 * time.Second, OnReload: ev.on, Logger: quietLogger(io.Discard),
	})
	if err != nil {
		t.Fatal(err)
	}
	<-ev.ch // initial load
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	writeFiles(t, dir, map[string]string{"data.json": `{"allowed": ["DE", "US"]}`})
	select {
	case e := <-ev.ch:
		if e.Err != nil {
			t.Fatalf("reload: %v", e.Err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not pick up the change")
	}
	if ok, _ := allowed(t, r, "US"); !ok {
		t.Error("US not allowed after the reload")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
}

func TestReloaderFirstLoadMustSucceed(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"route.rego": reloadRoute, "route_test.rego": reloadTest, "data.json": `{"allowed": []}`})
	_, err := rego.NewReloader(context.Background(), rego.ReloaderConfig{Dir: dir, Logger: quietLogger(io.Discard)})
	if !errors.Is(err, rego.ErrRejected) || !strings.Contains(err.Error(), "test_de_allowed") {
		t.Errorf("err = %v, want the failing test", err)
	}
	for name, cfg := range map[string]rego.ReloaderConfig{
		"no source":    {},
		"two sources":  {Dir: dir, Bundle: "b.tar.gz"},
		"key for dir":  {Dir: dir, PublicKey: "k"},
		"neg interval": {Dir: dir, Interval: -1},
	} {
		if _, err := rego.NewReloader(context.Background(), cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// writeBundle writes an OPA bundle with the test policy, the allowed list
// and a manifest revision; secret, if set, signs it (HS256).
func writeBundle(t *testing.T, w io.Writer, revision string, allowedJ []string, secret string) {
	t.Helper()
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: revision},
		Data:     map[string]any{"allowed": toAny(allowedJ)},
		Modules: []bundle.ModuleFile{
			{Path: "/sluice/route.rego", URL: "/sluice/route.rego", Raw: []byte(reloadRoute)},
			{Path: "/sluice/route_test.rego", URL: "/sluice/route_test.rego", Raw: []byte(reloadTest)},
		},
	}
	b.Manifest.Init()
	if secret != "" {
		if err := b.GenerateSignature(bundle.NewSigningConfig(secret, "HS256", ""), "default", false); err != nil {
			t.Fatal(err)
		}
	}
	if err := bundle.NewWriter(w).DisableFormat(true).Write(b); err != nil {
		t.Fatal(err)
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

func bundleFile(t *testing.T, p, revision string, allowedJ []string, secret string) {
	t.Helper()
	var buf bytes.Buffer
	writeBundle(t, &buf, revision, allowedJ, secret)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReloaderBundleFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "policy.tar.gz")
	bundleFile(t, p, "v1", []string{"DE"}, "")
	r, err := rego.NewReloader(context.Background(), rego.ReloaderConfig{Bundle: p, Logger: quietLogger(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Revision() != "v1" {
		t.Errorf("revision %q, want the manifest's v1", r.Revision())
	}
	if ok, rev := allowed(t, r, "US"); ok || rev != "v1" {
		t.Errorf("US allowed=%v under %s", ok, rev)
	}
	bundleFile(t, p, "v2", []string{"DE", "US"}, "")
	if ok, err := r.Check(context.Background()); !ok || err != nil {
		t.Fatalf("Check = %v, %v", ok, err)
	}
	if ok, rev := allowed(t, r, "US"); !ok || rev != "v2" {
		t.Errorf("after reload US allowed=%v under %s", ok, rev)
	}
	bundleFile(t, p, "v3", []string{"US"}, "") // fails test_de_allowed
	if ok, err := r.Check(context.Background()); ok || !errors.Is(err, rego.ErrRejected) {
		t.Fatalf("failing bundle: Check = %v, %v", ok, err)
	}
	if r.Revision() != "v2" {
		t.Errorf("revision %q after a rejected bundle, want v2", r.Revision())
	}
}

func TestReloaderSignedBundle(t *testing.T) {
	const secret = "correct horse battery staple"
	p := filepath.Join(t.TempDir(), "policy.tar.gz")
	cfg := rego.ReloaderConfig{Bundle: p, PublicKey: secret, KeyAlgorithm: "HS256", Logger: quietLogger(io.Discard)}

	bundleFile(t, p, "unsigned", []string{"DE"}, "")
	if _, err := rego.NewReloader(context.Background(), cfg); err == nil {
		t.Fatal("an unsigned bundle was accepted with a key configured")
	}
	bundleFile(t, p, "forged", []string{"DE"}, "another secret")
	if _, err := rego.NewReloader(context.Background(), cfg); err == nil {
		t.Fatal("a bundle signed with another key was accepted")
	}

	bundleFile(t, p, "s1", []string{"DE"}, secret)
	r, err := rego.NewReloader(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Revision() != "s1" {
		t.Fatalf("revision %q", r.Revision())
	}
	// A tampered reload: signed with the wrong key. Rejected, s1 stays.
	bundleFile(t, p, "s2", []string{"DE", "US"}, "another secret")
	if ok, err := r.Check(context.Background()); ok || !errors.Is(err, rego.ErrRejected) {
		t.Fatalf("wrongly signed reload: Check = %v, %v", ok, err)
	}
	if ok, rev := allowed(t, r, "US"); ok || rev != "s1" {
		t.Errorf("US allowed=%v under %s after a rejected bundle", ok, rev)
	}
	bundleFile(t, p, "s3", []string{"DE", "US"}, secret)
	if ok, err := r.Check(context.Background()); !ok || err != nil {
		t.Fatalf("signed reload: Check = %v, %v", ok, err)
	}
	if r.Revision() != "s3" {
		t.Errorf("revision %q, want s3", r.Revision())
	}
}

func TestReloaderBundleURL(t *testing.T) {
	var (
		mu       sync.Mutex
		body     []byte
		etag     string
		notMod   atomic.Int32
		failNext atomic.Bool
	)
	set := func(rev string, allowedJ []string) {
		var buf bytes.Buffer
		writeBundle(t, &buf, rev, allowedJ, "")
		mu.Lock()
		body, etag = buf.Bytes(), `"`+rev+`"`
		mu.Unlock()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if failNext.Swap(false) {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if req.Header.Get("If-None-Match") == etag {
			notMod.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		_, _ = w.Write(body)
	}))
	defer srv.Close()

	set("u1", []string{"DE"})
	r, err := rego.NewReloader(context.Background(), rego.ReloaderConfig{Bundle: srv.URL + "/bundle.tar.gz", Logger: quietLogger(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := r.Check(context.Background()); ok || err != nil {
		t.Fatalf("unchanged: Check = %v, %v", ok, err)
	}
	if notMod.Load() != 1 {
		t.Errorf("%d conditional 304 answers, want 1", notMod.Load())
	}
	failNext.Store(true)
	if ok, err := r.Check(context.Background()); ok || err == nil || errors.Is(err, rego.ErrRejected) {
		t.Errorf("server down: Check = %v, %v; want an unreadable-source error", ok, err)
	}
	if r.Revision() != "u1" {
		t.Errorf("revision %q after an outage", r.Revision())
	}
	set("u2", []string{"DE", "US"})
	if ok, err := r.Check(context.Background()); !ok || err != nil {
		t.Fatalf("changed: Check = %v, %v", ok, err)
	}
	if ok, rev := allowed(t, r, "US"); !ok || rev != "u2" {
		t.Errorf("US allowed=%v under %s", ok, rev)
	}
}

// TestReloaderConcurrent decides from several goroutines while the policy
// flips between two revisions; run with -race. Every decision must come
// from one of the two revisions and match it.
func TestReloaderConcurrent(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"route.rego": reloadRoute, "data.json": `{"allowed": ["DE"]}`})
	r, err := rego.NewReloader(context.Background(), rego.ReloaderConfig{Dir: dir, Timeout: 10 * time.Second, Logger: quietLogger(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	withoutUS := r.Revision()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := r.Snapshot()
				dec, err := s.Decide(context.Background(), reloadInput("US"))
				if err != nil {
					t.Error(err)
					return
				}
				if dec.Revision != s.Revision() || dec.Allow != (dec.Revision != withoutUS) {
					t.Errorf("US allow=%v under %s (snapshot %s, without US %s)", dec.Allow, dec.Revision, s.Revision(), withoutUS)
					return
				}
			}
		})
	}
	for i := range 6 {
		allowedJ := `{"allowed": ["DE"]}`
		if i%2 == 0 {
			allowedJ = `{"allowed": ["DE", "US"]}`
		}
		writeFiles(t, dir, map[string]string{"data.json": allowedJ})
		if ok, err := r.Check(context.Background()); !ok || err != nil {
			t.Errorf("flip %d: Check = %v, %v", i, ok, err)
		}
	}
	close(stop)
	wg.Wait()
}

// TestReloaderHostileBundles: a bundle that is not one, one over the size
// limit, and a small archive that inflates past it (a gzip bomb) are each
// refused with an error naming the problem, before anything goes live.
func TestReloaderHostileBundles(t *testing.T) {
	bomb := func() []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		const size = rego.MaxBundleSize + 1<<20
		if err := tw.WriteHeader(&tar.Header{Name: "/data.json", Mode: 0o644, Size: size}); err != nil {
			t.Fatal(err)
		}
		zeros := make([]byte, 1<<20)
		for written := 0; written < size; written += len(zeros) {
			if _, err := tw.Write(zeros); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name string
		data func() []byte
		want string
	}{
		{"not a bundle", func() []byte { return []byte("package sluice\nallow := true\n") }, "read bundle"},
		{"over the size limit", func() []byte { return make([]byte, rego.MaxBundleSize+1) }, "is larger than"},
		{"gzip bomb", bomb, "exceed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "policy.tar.gz")
			data := tc.data()
			if tc.name == "gzip bomb" && len(data) > 1<<20 {
				t.Fatalf("the bomb is %d bytes; it should be small", len(data))
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := rego.NewReloader(context.Background(), rego.ReloaderConfig{Bundle: p, Logger: quietLogger(io.Discard)})
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewReloader: %v; want an error saying %q", err, tc.want)
			}
		})
	}
}
