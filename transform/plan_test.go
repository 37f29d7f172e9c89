package transform_test

import (
	"io/fs"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/sluice-dev/sluice/deploy/examples"
	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/transform"
)

func loadExample(t *testing.T, name string) *transform.Spec {
	t.Helper()
	data, err := fs.ReadFile(examples.FS, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := transform.Parse(name, data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIngestFields(t *testing.T) {
	s := loadExample(t, "card-transactions.yaml")
	got := s.IngestFields()
	want := map[string]struct {
		typ      arrow.DataType
		path     string
		nullable bool
	}{
		"event_id":     {arrow.BinaryTypes.String, "event_id", false},
		"card_number":  {arrow.BinaryTypes.String, "card_number", true},
		"amount":       {arrow.PrimitiveTypes.Float64, "amount", false},
		"merchant_mcc": {arrow.PrimitiveTypes.Int32, "merchant.mcc", true},
		"ts":           {arrow.FixedWidthTypes.Timestamp_us, "ts", false},
	}
	if len(got) != len(s.Schema) {
		t.Fatalf("%d fields for %d schema entries", len(got), len(s.Schema))
	}
	for i, f := range got {
		if f.Name != s.Schema[i].Name {
			t.Errorf("field %d is %s, want schema order (%s)", i, f.Name, s.Schema[i].Name)
		}
		w, ok := want[f.Name]
		if !ok {
			continue
		}
		if !arrow.TypeEqual(f.Type, w.typ) || f.Path != w.path || f.Nullable != w.nullable {
			t.Errorf("%s = {%v %q %v}, want {%v %q %v}", f.Name, f.Type, f.Path, f.Nullable, w.typ, w.path, w.nullable)
		}
	}
}

func TestIngestFieldsEveryType(t *testing.T) {
	s := codeSpec()
	s.Schema = nil
	for _, typ := range []string{"bool", "int32", "int64", "float32", "float64", "string", "timestamp"} {
		s.Schema = append(s.Schema, transform.Field{Name: "f_" + typ, Type: typ})
	}
	want := []arrow.DataType{arrow.FixedWidthTypes.Boolean, arrow.PrimitiveTypes.Int32, arrow.PrimitiveTypes.Int64,
		arrow.PrimitiveTypes.Float32, arrow.PrimitiveTypes.Float64, arrow.BinaryTypes.String, arrow.FixedWidthTypes.Timestamp_us}
	for i, f := range s.IngestFields() {
		if !arrow.TypeEqual(f.Type, want[i]) {
			t.Errorf("%s: type %v, want %v", f.Name, f.Type, want[i])
		}
	}
}

func TestPlan(t *testing.T) {
	s := loadExample(t, "demo.yaml")
	p := s.Plan()
	if len(p.Steps) != len(s.Features) {
		t.Fatalf("%d steps for %d features", len(p.Steps), len(s.Features))
	}
	for i, f := range s.Features {
		st := p.Steps[i]
		if st.Output != f.Name || st.Input != f.Input || len(st.Ops) != len(f.Ops) {
			t.Errorf("step %d = %+v, want feature %+v", i, st, f)
		}
	}
	amountLog := p.Steps[0]
	wantOps := []gpuexec.Op{{Kind: gpuexec.OpFillMissing, Value: 0}, {Kind: gpuexec.OpClip, Min: 0, Max: 50000}, {Kind: gpuexec.OpLog1p}}
	if !slices.EqualFunc(amountLog.Ops, wantOps, func(a, b gpuexec.Op) bool {
		return a.Kind == b.Kind && a.Value == b.Value && a.Min == b.Min && a.Max == b.Max
	}) {
		t.Errorf("amount_log ops = %+v", amountLog.Ops)
	}
	// entity event_id, user_id, patient_id, residency country, event time
	// ts: schema order.
	if want := []string{"event_id", "country", "ts", "user_id", "patient_id"}; !slices.Equal(p.Passthrough, want) {
		t.Errorf("passthrough = %v, want %v", p.Passthrough, want)
	}
}

func TestPlanPassthroughDeduplicated(t *testing.T) {
	s := codeSpec()
	s.Entity = []string{"country", "order_id"}
	p := s.Plan()
	if want := []string{"order_id", "country", "at"}; !slices.Equal(p.Passthrough, want) {
		t.Errorf("passthrough = %v, want %v", p.Passthrough, want)
	}
}

func TestPlanSharesNoMemory(t *testing.T) {
	s := codeSpec()
	s.Features[0].Ops = []gpuexec.Op{{Kind: gpuexec.OpBucketize, Boundaries: []float64{1, 2}}}
	p := s.Plan()
	p.Steps[0].Ops[0].Boundaries[0] = 99
	p.Steps[0].Ops[0].Kind = gpuexec.OpLog1p
	if got := s.Features[0].Ops[0]; got.Kind != gpuexec.OpBucketize || got.Boundaries[0] != 1 {
		t.Errorf("editing the plan changed the spec: %+v", got)
	}
}

func TestLookups(t *testing.T) {
	s := loadExample(t, "card-transactions.yaml")
	ex, ok := s.Executor("aws-us-east-1")
	if !ok || ex.Location.Jurisdiction != "US" || ex.Sink != "us" {
		t.Errorf("Executor(aws-us-east-1) = %+v, %v", ex, ok)
	}
	k, ok := s.Sink("fra")
	if !ok || k.URL != "s3://features-fra/sluice?endpoint=minio.fra.internal:9000" || k.Compression != "zstd" {
		t.Errorf("Sink(fra) = %+v, %v", k, ok)
	}
	if _, ok := s.Executor("nope"); ok {
		t.Error("Executor(nope) found")
	}
	if _, ok := s.Sink("nope"); ok {
		t.Error("Sink(nope) found")
	}
	if got := s.FieldClasses("card_number"); !slices.Equal(got, []string{"pii", "financial"}) {
		t.Errorf("FieldClasses(card_number) = %v", got)
	}
	if got := s.FieldClasses("currency"); got != nil {
		t.Errorf("FieldClasses(currency) = %v, want nil", got)
	}
	s.FieldClasses("card_number")[0] = "public"
	if got := s.FieldClasses("card_number"); got[0] != "pii" {
		t.Error("FieldClasses returned the spec's own slice")
	}
}
