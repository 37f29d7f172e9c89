package transform_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-dev/sluice/deploy/examples"
	"github.com/sluice-dev/sluice/transform"
)

// FuzzParse feeds Parse arbitrary bytes: it must not panic, every failure
// must be a *ValidationError, and a spec it accepts must pass Validate and
// compile into a plan.
func FuzzParse(f *testing.F) {
	names, _ := fs.Glob(examples.FS, "*.yaml")
	for _, n := range names {
		data, _ := fs.ReadFile(examples.FS, n)
		f.Add(data)
	}
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "specs", "*", "*.yaml"))
	for _, p := range paths {
		data, _ := os.ReadFile(p)
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("<<: {name: x}\nfeatures: [{ops: [{op: clip, <<: {min: 1}}]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := transform.Parse("fuzz.yaml", data)
		if err != nil {
			var verr *transform.ValidationError
			if !errors.As(err, &verr) || len(verr.Problems) == 0 {
				t.Fatalf("error %T %v is not a ValidationError with problems", err, err)
			}
			for _, p := range verr.Problems {
				if p.Msg == "" {
					t.Fatalf("problem without a message: %+v", p)
				}
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Parse accepted a spec that Validate rejects: %v", err)
		}
		if p := s.Plan(); len(p.Steps) != len(s.Features) {
			t.Fatalf("plan has %d steps for %d features", len(p.Steps), len(s.Features))
		}
		for _, fld := range s.IngestFields() {
			if fld.Type == nil {
				t.Fatalf("field %s has no Arrow type", fld.Name)
			}
		}
		s.Summary(io.Discard)
	})
}
