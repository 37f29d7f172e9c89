package transform_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/deploy/examples"
	"github.com/sluice-dev/sluice/transform"
)

// TestSpecCases runs every spec under testdata/specs: each file in valid/
// must parse clean, and each file in invalid/ must fail with an error that
// contains every "# want: <substring>" line the file carries (line and
// column included, as in ":12:5: features[1].ops[0].buckets: ...") and
// none of its "# not: <substring>" lines (follow-on noise from one mistake).
func TestSpecCases(t *testing.T) {
	dir := filepath.Join("..", "testdata", "specs")
	valid, _ := filepath.Glob(filepath.Join(dir, "valid", "*.yaml"))
	invalid, _ := filepath.Glob(filepath.Join(dir, "invalid", "*.yaml"))
	if len(valid) == 0 || len(invalid) == 0 {
		t.Fatalf("no cases under %s (valid %d, invalid %d)", dir, len(valid), len(invalid))
	}
	for _, path := range valid {
		t.Run("valid/"+filepath.Base(path), func(t *testing.T) {
			s, err := transform.Load(path)
			if err != nil {
				t.Fatalf("want a clean parse, got:\n%v", err)
			}
			if s.File != path {
				t.Errorf("File = %q, want %q", s.File, path)
			}
			if err := s.Validate(); err != nil {
				t.Errorf("Validate after Parse: %v", err)
			}
		})
	}
	for _, path := range invalid {
		t.Run("invalid/"+filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var wants, nots []string
			for line := range strings.Lines(string(data)) {
				line = strings.TrimSpace(line)
				if w, ok := strings.CutPrefix(line, "# want:"); ok {
					wants = append(wants, strings.TrimSpace(w))
				}
				if w, ok := strings.CutPrefix(line, "# not:"); ok {
					nots = append(nots, strings.TrimSpace(w))
				}
			}
			if len(wants) == 0 {
				t.Fatal("case has no '# want:' line")
			}
			s, err := transform.Load(path)
			if err == nil {
				t.Fatalf("want an error, got a spec %q", s.Name)
			}
			if !errors.Is(err, transform.ErrInvalidSpec) {
				t.Errorf("errors.Is(err, ErrInvalidSpec) = false for %T", err)
			}
			var verr *transform.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("want *ValidationError, got %T: %v", err, err)
			}
			msg := err.Error()
			for _, w := range wants {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q; got:\n%s", w, msg)
				}
			}
			for _, w := range nots {
				if strings.Contains(msg, w) {
					t.Errorf("error has %q, which should not be reported; got:\n%s", w, msg)
				}
			}
			for _, p := range verr.Problems {
				if p.File != path {
					t.Errorf("problem %q: File = %q, want %q", p, p.File, path)
				}
				if p.Field != "" && p.Line == 0 {
					t.Errorf("problem %q has no line number", p)
				}
			}
		})
	}
}

// TestExamplesParse keeps the shipped examples valid: a data engineer
// copies them, and `sluice demo` runs demo.yaml.
func TestExamplesParse(t *testing.T) {
	names, err := fs.Glob(examples.FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"card-transactions.yaml", "clinical-events.yaml", "demo.yaml"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("examples.FS lacks %s (has %v)", want, names)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			data, err := fs.ReadFile(examples.FS, name)
			if err != nil {
				t.Fatal(err)
			}
			s, err := transform.Parse(name, data)
			if err != nil {
				t.Fatalf("example does not parse:\n%v", err)
			}
			if s.Name+".yaml" != name {
				t.Errorf("name %q does not match file %s", s.Name, name)
			}
			// Every example routes between an on-prem and a cloud
			// location, which is what the policies are about.
			kinds := map[string]bool{}
			for _, e := range s.Executors {
				kinds[e.Location.Kind] = true
			}
			if !kinds["onprem"] || !kinds["cloud"] {
				t.Errorf("executor location kinds %v, want onprem and cloud", kinds)
			}
		})
	}
}

func TestDemoSpec(t *testing.T) {
	data, err := fs.ReadFile(examples.FS, "demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := transform.Parse("demo.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if s.Source.Topic != "events" || s.Purpose != "ml-training" {
		t.Errorf("topic %q purpose %q", s.Source.Topic, s.Purpose)
	}
	// One topic carries two kinds of record, so every field only one kind
	// has must be nullable or half the records would be dead letters.
	always := map[string]bool{"event_id": true, "kind": true, "country": true, "ts": true}
	for _, f := range s.Schema {
		if !always[f.Name] && !f.Nullable {
			t.Errorf("field %s is not nullable", f.Name)
		}
	}
	for field, want := range map[string]string{"user_id": "pii", "amount": "financial", "patient_id": "phi", "heart_rate": "phi", "lab_glucose": "phi"} {
		if got := s.FieldClasses(field); len(got) != 1 || got[0] != want {
			t.Errorf("FieldClasses(%s) = %v, want [%s]", field, got, want)
		}
	}
	if s.Batching.MaxRecords != 5000 || s.Batching.Linger != 200*time.Millisecond {
		t.Errorf("batching = %+v", s.Batching)
	}
	for _, id := range []string{"onprem-fra", "aws-us-east-1"} {
		if _, ok := s.Executor(id); !ok {
			t.Errorf("no executor %s", id)
		}
	}
	for _, name := range []string{"fra", "us"} {
		k, ok := s.Sink(name)
		if !ok || !strings.HasPrefix(k.URL, "file:///") {
			t.Errorf("sink %s = %+v, %v; want a file URL the demo can rewrite", name, k, ok)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	s, err := transform.Load(filepath.Join("..", "testdata", "specs", "valid", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"group", s.Source.Group, "sluice-minimal"},
		{"format", s.Source.Format, "json"},
		{"start offset", s.Source.StartOffset, "earliest"},
		{"dead letter topic", s.Source.DeadLetterTopic, "events.dlq"},
		{"max records", s.Batching.MaxRecords, 20000},
		{"max bytes", s.Batching.MaxBytes, int64(16 << 20)},
		{"max record bytes", s.Batching.MaxRecordBytes, int64(1 << 20)},
		{"linger", s.Batching.Linger, 500 * time.Millisecond},
		{"field path", s.Schema[0].Path, "amount"},
		{"executor kind", s.Executors[0].Kind, "cpu"},
		{"location name", s.Executors[0].Location.Name, "local"},
		{"compression", s.Sinks[0].Compression, "zstd"},
		{"quarantine compression", s.Quarantine.Compression, "snappy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestParseKeepsExplicitValues(t *testing.T) {
	s, err := transform.Load(filepath.Join("..", "testdata", "specs", "valid", "every-op.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Source.Group != "custom-group" || s.Batching.MaxBytes != 1024 || s.Batching.MaxRecordBytes != 512 || s.Batching.Linger != time.Millisecond {
		t.Errorf("explicit values overwritten: group %q, batching %+v", s.Source.Group, s.Batching)
	}
	if got := s.Schema[6].Path; got != "a.b.c" {
		t.Errorf("path = %q", got)
	}
	ex, _ := s.Executor("gpu-1")
	if ex.Kind != "remote" || ex.Endpoint != "grpc://gpu-1.internal:8815" {
		t.Errorf("executor = %+v", ex)
	}
}

func TestParseMergeKeys(t *testing.T) {
	s, err := transform.Load(filepath.Join("..", "testdata", "specs", "valid", "anchors.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, ok := s.Executor("onprem-b")
	if !ok {
		t.Fatal("no executor onprem-b")
	}
	// Merged from the anchor, with id and kind overridden.
	if b.Kind != "cuda" || b.Sink != "fra" || b.Location.Site != "fra1" || b.Location.Jurisdiction != "DE" {
		t.Errorf("onprem-b = %+v", b)
	}
	g, _ := s.Executor("gcp")
	if g.Location.Kind != "cloud" || g.Location.Jurisdiction != "DE" || g.Location.Name != "europe-west3" {
		t.Errorf("gcp location = %+v", g.Location)
	}
	if got := s.FieldClasses("email"); len(got) != 1 || got[0] != "pii" {
		t.Errorf("aliased classes = %v", got)
	}
	if ops := s.Features[0].Ops; len(ops) != 3 || ops[1].Max != 3600000 {
		t.Errorf("aliased ops = %+v", ops)
	}
}

func TestParseReportsAllProblemsInOrder(t *testing.T) {
	spec := "name: x\nsource: {brokers: [a:1], topic: t, gorup: g}\nschema:\n  - {name: a, type: flot64}\n" +
		"features:\n  - {name: f, input: b, ops: [log1p]}\n"
	_, err := transform.Parse("s.yaml", []byte(spec))
	var verr *transform.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	want := []string{
		`s.yaml:2:36: source.gorup: unknown key "gorup"; did you mean "group"?`,
		`s.yaml:4:21: schema[0].type: unknown type "flot64"`,
		`s.yaml:6:22: features[0].input: no schema field "b"`,
	}
	if len(verr.Problems) < len(want)+3 { // plus executors, sinks, lineage...
		t.Errorf("only %d problems:\n%v", len(verr.Problems), err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(verr.Problems) {
		t.Errorf("Error() has %d lines for %d problems", len(lines), len(verr.Problems))
	}
	// Located problems come in file order.
	next := 0
	for _, p := range verr.Problems {
		if next < len(want) && strings.HasPrefix(p.String(), want[next]) {
			next++
		}
	}
	if next < len(want) {
		t.Errorf("missing or out of order: %q; got:\n%v", want[next], err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := transform.Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
	if errors.Is(err, transform.ErrInvalidSpec) {
		t.Error("a missing file is not an invalid spec")
	}
}

func TestParseAliasBomb(t *testing.T) {
	// 4000 aliases to a mapping whose classes alias a 4000-item list: a
	// 100 KB file that expands to 16 million values. Parse must give up
	// early instead of walking them all.
	items := strings.Repeat("x, ", 3999) + "x"
	refs := strings.Repeat("*m, ", 3999) + "*m"
	spec := "c: &c [" + items + "]\nm: &m {name: a, type: string, classes: *c}\nschema: [" + refs + "]\n"
	start := time.Now()
	_, err := transform.Parse("bomb.yaml", []byte(spec))
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("want an expansion-limit error, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Parse took %v", d)
	}
}

func TestParseMergeBomb(t *testing.T) {
	// Merge keys that merge lists of merges: each level multiplies the
	// entries copied, without any new nodes.
	var b strings.Builder
	b.WriteString("m0: &m0 {")
	for i := range 200 {
		b.WriteString("k" + strings.Repeat("x", i%7) + strconv.Itoa(i) + ": 1, ")
	}
	b.WriteString("z: 1}\n")
	for lvl := 1; lvl < 6; lvl++ {
		prev := "*m" + strconv.Itoa(lvl-1)
		b.WriteString("m" + strconv.Itoa(lvl) + ": &m" + strconv.Itoa(lvl) + " {<<: [" + strings.Repeat(prev+", ", 199) + prev + "]}\n")
	}
	b.WriteString("source: {<<: *m5}\n")
	start := time.Now()
	_, err := transform.Parse("merge.yaml", []byte(b.String()))
	if err == nil {
		t.Fatal("merge bomb parsed clean")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Parse took %v", d)
	}
}
