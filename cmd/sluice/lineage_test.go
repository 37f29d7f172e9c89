package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/minio/minio-go/v7"

	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage"
	fsstore "github.com/sluice-dev/sluice/storage/fs"
	"github.com/sluice-dev/sluice/storage/s3"
	"github.com/sluice-dev/sluice/storage/s3/s3test"
)

// The golden files take -update like the policy goldens; register the flag
// here only when no other test file of the package does.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files from the current output")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	if f == nil {
		return false
	}
	v, _ := f.Value.(flag.Getter).Get().(bool)
	return v
}

// demoTrail runs the demo pipeline in-process into a new folder and
// returns the folder; the store URL of its lineage is "file://" + dir.
func demoTrail(t *testing.T, events int) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the demo pipeline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	sum, err := runDemo(ctx, demoOptions{dir: dir, events: events, partitions: 4, seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Verified || sum.RecordsIn != int64(events) {
		t.Fatalf("demo: %+v", sum)
	}
	return dir
}

// copyTree copies the folder src to a new temporary folder.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// files lists the files under dir/sub whose name ends in suffix, sorted.
func files(t *testing.T, dir, sub, suffix string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, suffix) {
			out = append(out, p)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// chainSegments returns the segments of each chain of dir, in chain order.
func chainSegments(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range files(t, dir, lineagePrefix, ".ndjson") {
		chain := filepath.Base(filepath.Dir(p))
		out[chain] = append(out[chain], p)
	}
	return out
}

func segKeyOf(dir, path string) string {
	rel, _ := filepath.Rel(dir, path)
	return filepath.ToSlash(rel)
}

// TestLineageVerifyNamesTheBrokenLink tampers with a real trail (events,
// segments, feature objects) and checks that verify exits 1 and that its
// first problem names the place.
func TestLineageVerifyNamesTheBrokenLink(t *testing.T) {
	// 24000 records: every partition has more than one 5000-record batch,
	// so every chain has two segments or more.
	base := demoTrail(t, 24_000)
	for chain, segs := range chainSegments(t, base) {
		if len(segs) < 2 {
			t.Fatalf("chain %s has %d segments; the test needs two", chain, len(segs))
		}
	}
	code, out, errOut := sluice(t, "lineage", "verify", "--store", "file://"+base, "--progress", "1ns")
	if code != exitOK || !strings.Contains(out, "lineage OK") || strings.Contains(out, " 0 objects checked") {
		t.Fatalf("intact trail: exit %d\n%s", code, out)
	}
	if !strings.Contains(errOut, "verify: segments ") || !strings.Contains(errOut, "verify: objects ") || strings.Contains(out, "verify: ") {
		t.Errorf("progress belongs on stderr, for both stages; stderr:\n%s", tail(errOut, 500))
	}

	cases := []struct {
		name string
		// own runs the case on a trail of its own instead of a copy of
		// base: events name their objects by absolute folder, so a copy of
		// the trail still names base's objects.
		own bool
		// tamper changes dir and returns substrings the first problem must
		// hold.
		tamper func(t *testing.T, dir string) []string
	}{
		{"event altered", false, func(t *testing.T, dir string) []string {
			seg := chainSegments(t, dir)["chain=events-1"][1]
			b, _ := os.ReadFile(seg)
			i := bytes.Index(b, []byte(`"allow":false`))
			if i < 0 {
				t.Fatalf("%s: no deny to flip", seg)
			}
			b = slices.Concat(b[:i], []byte(`"allow":true `), b[i+len(`"allow":false`):])
			writeFile(t, seg, b)
			return []string{"chain demo/events-1", "segment " + segKeyOf(dir, seg), "seq ", "signature does not verify"}
		}},
		{"segment deleted", false, func(t *testing.T, dir string) []string {
			segs := chainSegments(t, dir)["chain=events-2"]
			removeFiles(t, segs[0])
			return []string{"chain demo/events-2", "segment " + segKeyOf(dir, segs[1]), "first events are missing"}
		}},
		{"events reordered", false, func(t *testing.T, dir string) []string {
			seg := chainSegments(t, dir)["chain=events-0"][0]
			b, _ := os.ReadFile(seg)
			lines := bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
			if len(lines) < 2 {
				t.Fatalf("%s has %d events", seg, len(lines))
			}
			lines[0], lines[1] = append(bytes.TrimSuffix(lines[1], []byte("\n")), '\n'), bytes.TrimSuffix(lines[0], []byte("\n"))
			writeFile(t, seg, append(bytes.Join(lines, nil), '\n'))
			return []string{"chain demo/events-0", "segment " + segKeyOf(dir, seg), "seq 0"}
		}},
		{"feature object altered", true, func(t *testing.T, dir string) []string {
			objs := files(t, dir, "fra", ".parquet")
			objs = slices.DeleteFunc(objs, func(p string) bool { return strings.Contains(p, "quarantine") })
			// Replace one object by another valid Parquet file.
			victim, other := objs[0], objs[1]
			b, _ := os.ReadFile(other)
			writeFile(t, victim, b)
			rel, _ := filepath.Rel(filepath.Join(dir, "fra"), victim)
			return []string{"chain demo/", "segment lineage/pipeline=demo/", "seq ", "object file://" + filepath.Join(dir, "fra") + "/" + filepath.ToSlash(rel), "altered or replaced"}
		}},
		{"quarantine object deleted", true, func(t *testing.T, dir string) []string {
			q := files(t, dir, "fra/quarantine", ".parquet")[0]
			removeFiles(t, q)
			return []string{"object file://" + q, "does not exist"}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var dir string
			if tc.own {
				dir = demoTrail(t, 2000)
			} else {
				dir = copyTree(t, base)
			}
			want := tc.tamper(t, dir)
			code, out, errOut := sluice(t, "lineage", "verify", "--store", "file://"+dir)
			if code != exitFail {
				t.Fatalf("verify of a tampered trail: exit %d, want 1\n%s%s", code, out, errOut)
			}
			first := ""
			for _, l := range strings.Split(out, "\n") {
				if p, ok := strings.CutPrefix(l, "  first broken link: "); ok {
					first = p
					break
				}
			}
			for _, w := range want {
				if !strings.Contains(first, w) {
					t.Errorf("first broken link %q does not mention %q; output:\n%s", first, w, out)
				}
			}
		})
	}

	t.Run("objects not checked", func(t *testing.T) {
		dir := demoTrail(t, 2000)
		removeFiles(t, files(t, dir, "us", ".parquet")...)
		code, out, _ := sluice(t, "lineage", "verify", "--store", "file://"+dir, "--objects=false")
		if code != exitOK || !strings.Contains(out, "objects not checked") {
			t.Fatalf("verify --objects=false with objects gone: exit %d\n%s", code, out)
		}
		code, out, _ = sluice(t, "lineage", "verify", "--store", "file://"+dir, "-o", "json")
		var rep lineage.VerifyReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitFail || rep.OK || rep.Findings[0].Object == "" {
			t.Fatalf("verify -o json with objects gone: exit %d, %v\n%s", code, err, out)
		}
	})
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func removeFiles(t *testing.T, ps ...string) {
	t.Helper()
	for _, p := range ps {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

// masks replace what differs from run to run in the CLI's output.
var masks = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z`), "TIME"},
	{regexp.MustCompile(`date=\d{4}-\d{2}-\d{2}`), "date=DATE"},
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "UUID"},
	{regexp.MustCompile(`sha256 [0-9a-f]{64}`), "sha256 SHA256"},
	{regexp.MustCompile(`kafka://[0-9.]+:\d+`), "kafka://BROKER"},
	{regexp.MustCompile(`\d+ bytes`), "N bytes"},
	{regexp.MustCompile(`, \d+ ms\n`), ", N ms\n"},
	// The runner writes a batch's features events (one per location) in
	// no fixed order.
	{regexp.MustCompile(`event      seq \d+,`), "event      seq N,"},
}

func mask(s, dir string) string {
	s = strings.ReplaceAll(s, dir, "$DIR")
	for _, m := range masks {
		s = m.re.ReplaceAllString(s, m.with)
	}
	return s
}

// golden compares got with testdata/lineage/golden/name, or rewrites it
// with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "lineage", "golden", name)
	if updateGolden() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, []byte(got))
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (run with -update after checking the change):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestLineageGolden checks the auditor's outputs against golden files, with
// run-dependent values (times, ids, the folder, the broker port, object
// hashes and sizes, which depend on the run's pseudonymisation key) masked.
func TestLineageGolden(t *testing.T) {
	// 2000 records: one batch per partition, so the trail is the same
	// from run to run.
	dir := demoTrail(t, 2000)
	store := "file://" + dir
	obj := files(t, dir, "fra/pipeline=demo", ".parquet")[0]
	rel, _ := filepath.Rel(filepath.Join(dir, "fra"), obj)
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"verify.txt", []string{"lineage", "verify", "--store", store}, exitOK},
		{"trace-offset.txt", []string{"lineage", "trace", "--store", store, "--topic", "events", "--partition", "2", "--offset", "42"}, exitOK},
		{"trace-object.txt", []string{"lineage", "trace", "--store", store, "--object", filepath.ToSlash(rel)}, exitOK},
		{"report.txt", []string{"lineage", "report", "--store", store}, exitOK},
		{"report-residency.txt", []string{"lineage", "report", "--residency", "--store", store}, exitOK},
		{"report-residency-empty-window.txt", []string{"lineage", "report", "--residency", "--store", store, "--until", "2000-01-01"}, exitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := sluice(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out, errOut)
			}
			golden(t, tc.name, mask(out, dir))
		})
	}
}

// TestLineageResidencyViolation makes the trail say a row group was
// processed by an executor its decision denied (as a faulty router would),
// and checks that report --residency exits 1 and names it.
func TestLineageResidencyViolation(t *testing.T) {
	dir := demoTrail(t, 2000)
	code, out, _ := sluice(t, "lineage", "report", "--residency", "--store", "file://"+dir, "-o", "json")
	var m lineage.ResidencyMatrix
	if err := json.Unmarshal([]byte(out), &m); err != nil || code != exitOK || m.ViolationRows != 0 || m.ProcessedRows == 0 {
		t.Fatalf("intact trail: exit %d, %v\n%s", code, err, out)
	}
	var total int64
	for _, c := range m.Cells {
		total += c.Rows
	}
	if total != 2000 {
		t.Errorf("the matrix accounts for %d rows, the topic held 2000", total)
	}
	for _, c := range m.Cells {
		if c.Outcome == lineage.OutcomeFeatures && (c.Jurisdiction == "DE" || c.Jurisdiction == "FR") && c.LocationJurisdiction != "DE" {
			t.Errorf("EU rows processed in %s (%s)", c.Location, c.LocationJurisdiction)
		}
	}

	// Flip the first allow of a features event to a deny.
	seg := chainSegments(t, dir)["chain=events-1"][0]
	b, _ := os.ReadFile(seg)
	lines := bytes.Split(b, []byte("\n"))
	flipped := false
	for i, l := range lines {
		if bytes.Contains(l, []byte(`"kind":"features"`)) && bytes.Contains(l, []byte(`"allow":true`)) {
			lines[i] = bytes.Replace(l, []byte(`"allow":true`), []byte(`"allow":false`), 1)
			flipped = true
			break
		}
	}
	if !flipped {
		t.Fatal("no features event with an allowing decision")
	}
	writeFile(t, seg, bytes.Join(lines, []byte("\n")))
	code, out, _ = sluice(t, "lineage", "report", "--residency", "--store", "file://"+dir)
	if code != exitFail || !strings.Contains(out, "VIOLATION chain demo/events-1") || strings.Contains(out, "did not allow it: 0\n") {
		t.Fatalf("report --residency with a denied group processed: exit %d, want 1\n%s", code, out)
	}
}

func TestLineageExport(t *testing.T) {
	dir := demoTrail(t, 2000)
	var (
		mu   sync.Mutex
		seqs = map[string][]uint64{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/lineage" || r.Header.Get("Authorization") != "Bearer k1" {
			http.Error(w, "bad request line or key", http.StatusUnauthorized)
			return
		}
		var ev lineage.Event
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &ev); err != nil || ev.Validate() != nil || ev.Run.Facets.KafkaOffsets == nil {
			http.Error(w, "not a sluice RunEvent", http.StatusBadRequest)
			return
		}
		k := ev.Run.Facets.KafkaOffsets
		mu.Lock()
		chain := lineage.ChainFor(k.Topic, k.Partition)
		seqs[chain] = append(seqs[chain], ev.Run.Facets.Chain.Seq)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	code, out, errOut := sluice(t, "lineage", "export", "--store", "file://"+dir, "--openlineage", srv.URL, "--api-key", "k1", "-o", "json")
	var rep lineage.ExportReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitOK {
		t.Fatalf("export: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	evs, err := lineage.ReadAll(context.Background(), mustFS(t, dir), lineagePrefix)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for chain, s := range seqs {
		n += len(s)
		for i, q := range s {
			if q != uint64(i) {
				t.Fatalf("chain %s: event %d sent has seq %d: not in chain order", chain, i, q)
			}
		}
	}
	if rep.Sent != len(evs) || n != len(evs) {
		t.Errorf("export sent %d, server took %d, the trail holds %d", rep.Sent, n, len(evs))
	}
	code, _, errOut = sluice(t, "lineage", "export", "--store", "file://"+dir, "--openlineage", srv.URL, "--api-key", "wrong")
	if code != exitFail || !strings.Contains(errOut, "401") {
		t.Errorf("export with a wrong key: exit %d, want 1 and the 401\n%s", code, errOut)
	}
}

func mustFS(t *testing.T, dir string) storage.ObjectStore {
	t.Helper()
	st, err := fsstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestLineageObjectsReadBack reads every object the trail names with
// arrow-go and checks it against its event: the rows, and the schema the
// event records (the columns of the features, plus the offset column).
func TestLineageObjectsReadBack(t *testing.T) {
	dir := demoTrail(t, 2000)
	ctx := context.Background()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	evs, err := lineage.ReadAll(ctx, mustFS(t, dir), lineagePrefix)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		for _, o := range ev.Outputs {
			obj := o.OutputFacets.Object
			if obj == nil {
				continue
			}
			st := mustFS(t, strings.TrimPrefix(o.Namespace, "file://"))
			tbl, err := storage.ReadParquet(ctx, st, obj.Key, mem)
			if err != nil {
				t.Fatal(err)
			}
			n++
			var cols []string
			for _, f := range tbl.Schema().Fields() {
				cols = append(cols, f.Name)
			}
			if tbl.NumRows() != obj.Rows {
				t.Errorf("%s: %d rows, lineage records %d", obj.Key, tbl.NumRows(), obj.Rows)
			}
			if s := o.Facets.Schema; s != nil {
				var want []string
				for _, f := range s.Fields {
					want = append(want, f.Name)
				}
				for _, c := range want {
					if !slices.Contains(cols, c) {
						t.Errorf("%s: column %q of the lineage schema is not in the file %v", obj.Key, c, cols)
					}
				}
			}
			tbl.Release()
		}
	}
	if n == 0 {
		t.Fatal("the trail names no object")
	}
}

// TestLineageOnLockedS3 writes the demo's lineage to a bucket with Object
// Lock on a real S3 server (versitygw) and checks what the lock gives an
// auditor: a locked segment version cannot be deleted, a delete or an
// overwrite through the store only hides it behind a newer version (which
// verify reports, naming the segment), and the locked bytes stay readable.
func TestLineageOnLockedS3(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test against an S3 server")
	}
	endpoint, cfg := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", cfg.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", cfg.SecretKey)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lineageURL := "s3://" + s3test.LockedBucket + "/audit?endpoint=" + endpoint + "&retention_mode=COMPLIANCE&retention_days=1"
	if _, err := runDemo(ctx, demoOptions{
		dir: t.TempDir(), events: 2000, partitions: 4, seed: 5,
		sinkURL:    func(sink string) string { return "s3://" + s3test.Bucket + "/" + sink + "?endpoint=" + endpoint },
		lineageURL: lineageURL,
	}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := sluice(t, "lineage", "verify", "--store", lineageURL)
	if code != exitOK || !strings.Contains(out, "retention checked") || !strings.Contains(out, "objects checked") || strings.Contains(out, " 0 objects") {
		t.Fatalf("verify of the trail on S3: exit %d\n%s%s", code, out, errOut)
	}

	locked := cfg
	locked.Bucket, locked.Prefix = s3test.LockedBucket, "audit"
	st, err := s3.New(ctx, locked)
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	if err := st.Iter(ctx, "lineage/", func(k string) error {
		if strings.HasSuffix(k, ".ndjson") {
			segs = append(segs, k)
		}
		return nil
	}); err != nil || len(segs) < 2 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	client := st.Client()
	original := func(key string) (versionID string, data []byte) {
		info, err := client.StatObject(ctx, st.Bucket(), st.ObjectName(key), minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return info.VersionID, readS3(t, st, key, info.VersionID)
	}

	// Delete: the locked version itself is refused; a plain delete adds a
	// delete marker, which verify reports.
	deleted := segs[0]
	delVersion, delBytes := original(deleted)
	err = client.RemoveObject(ctx, st.Bucket(), st.ObjectName(deleted), minio.RemoveObjectOptions{VersionID: delVersion})
	if err == nil {
		t.Fatal("deleting a COMPLIANCE-locked segment version succeeded")
	}
	if err := st.Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	// Overwrite, through a store that writes without retention.
	plain := locked
	plainStore, err := s3.New(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	overwritten := segs[1]
	owVersion, owBytes := original(overwritten)
	forged := bytes.Replace(owBytes, []byte(`"allow":false`), []byte(`"allow":true `), 1)
	if bytes.Equal(forged, owBytes) {
		t.Fatalf("%s holds no deny to forge", overwritten)
	}
	if err := plainStore.Put(ctx, overwritten, bytes.NewReader(forged), int64(len(forged))); err != nil {
		t.Fatal(err)
	}

	code, out, _ = sluice(t, "lineage", "verify", "--store", lineageURL)
	if code != exitFail {
		t.Fatalf("verify after delete and overwrite: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"segment " + deleted + ": seq 0: segment " + deleted + " was deleted: a delete marker hides it",
		"segment " + overwritten + ": seq 0: " + overwritten + " has no Object Lock retention",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "segment "+overwritten+": seq 0: signature does not verify") {
		t.Errorf("verify does not report the forged segment's signature:\n%s", out)
	}
	// The locked versions survive, byte for byte.
	if got := readS3(t, st, deleted, delVersion); !bytes.Equal(got, delBytes) {
		t.Error("the locked version of the deleted segment changed")
	}
	if got := readS3(t, st, overwritten, owVersion); !bytes.Equal(got, owBytes) {
		t.Error("the locked version of the overwritten segment changed")
	}
}

func readS3(t *testing.T, st *s3.Store, key, versionID string) []byte {
	t.Helper()
	obj, err := st.Client().GetObject(context.Background(), st.Bucket(), st.ObjectName(key), minio.GetObjectOptions{VersionID: versionID})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
