package transform_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/transform"
)

// codeSpec is a valid spec built in code, without defaults filled in, as
// a test or an embedding program might build one.
func codeSpec() *transform.Spec {
	return &transform.Spec{
		Name:    "orders",
		Purpose: "analytics",
		Source:  transform.Source{Brokers: []string{"localhost:9092"}, Topic: "orders"},
		Schema: []transform.Field{
			{Name: "order_id", Type: "string"},
			{Name: "customer", Type: "string", Classes: []string{"pii"}},
			{Name: "total", Type: "float64", Nullable: true},
			{Name: "country", Type: "string"},
			{Name: "at", Type: "timestamp"},
		},
		Entity:    []string{"order_id"},
		EventTime: "at",
		Residency: transform.Residency{Jurisdiction: "country"},
		Features: []transform.Feature{
			{Name: "total_log", Input: "total", Ops: []gpuexec.Op{
				{Kind: gpuexec.OpFillMissing}, {Kind: gpuexec.OpClip, Min: 0, Max: 1e6}, {Kind: gpuexec.OpLog1p}}},
			{Name: "customer_bucket", Input: "customer", Ops: []gpuexec.Op{{Kind: gpuexec.OpHashBucket, Buckets: 64}}},
		},
		Executors: []transform.Executor{{ID: "local", Sink: "local",
			Location: gpuexec.Location{Kind: "onprem", Jurisdiction: "DE"}}},
		Sinks:      []transform.Sink{{Name: "local", URL: "file:///tmp/orders"}},
		Quarantine: transform.Quarantine{Sink: "local"},
		Lineage:    transform.Lineage{URL: "file:///tmp/lineage"},
	}
}

func TestValidateCodeSpec(t *testing.T) {
	s := codeSpec()
	if err := s.Validate(); err != nil {
		t.Fatalf("valid spec rejected:\n%v", err)
	}
	if s.Source.Group != "" || s.Executors[0].Kind != "" {
		t.Error("Validate filled in defaults; it must not modify the spec")
	}
}

func TestValidateProblems(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *transform.Spec)
		field  string
		msg    string
	}{
		{"missing name", func(s *transform.Spec) { s.Name = "" }, "name", "required"},
		{"name with slash", func(s *transform.Spec) { s.Name = "a/b" }, "name", "use letters"},
		{"no brokers", func(s *transform.Spec) { s.Source.Brokers = nil }, "source.brokers", "required"},
		{"dlq is the topic", func(s *transform.Spec) { s.Source.DeadLetterTopic = "orders" }, "source.dead_letter_topic", "must differ"},
		{"bad start offset", func(s *transform.Spec) { s.Source.StartOffset = "earlist" }, "source.start_offset", `did you mean "earliest"?`},
		{"format", func(s *transform.Spec) { s.Source.Format = "avro" }, "source.format", "only json"},
		{"unknown type", func(s *transform.Spec) { s.Schema[2].Type = "int" }, "schema[2].type", `did you mean "int64"?`},
		{"duplicate field", func(s *transform.Spec) { s.Schema[1].Name = "order_id" }, "schema[1].name", "duplicate field name"},
		{"bad path", func(s *transform.Spec) { s.Schema[2].Path = "a..b" }, "schema[2].path", "dotted path"},
		{"event time not timestamp", func(s *transform.Spec) { s.EventTime = "total" }, "event_time", "must be a timestamp field"},
		{"jurisdiction not string", func(s *transform.Spec) { s.Residency.Jurisdiction = "at" }, "residency.jurisdiction", "string country code"},
		{"entity missing", func(s *transform.Spec) { s.Entity = []string{"order"} }, "entity[0]", `no schema field "order"`},
		{"feature missing input", func(s *transform.Spec) { s.Features[0].Input = "totl" }, "features[0].input", `did you mean "total"?`},
		{"feature without ops", func(s *transform.Spec) { s.Features[0].Ops = nil }, "features[0].ops", "at least one op"},
		{"duplicate feature", func(s *transform.Spec) { s.Features[1].Name = "total_log" }, "features[1].name", "duplicate feature name"},
		{"feature named like entity", func(s *transform.Spec) { s.Features[1].Name = "order_id" }, "features[1].name", "passthrough column"},
		{"clip min above max", func(s *transform.Spec) { s.Features[0].Ops[1] = gpuexec.Op{Kind: gpuexec.OpClip, Min: 5, Max: 1} },
			"features[0].ops[1]", "min 5 is greater than max 1"},
		{"infinite clip", func(s *transform.Spec) { s.Features[0].Ops[1].Max = math.Inf(1) }, "features[0].ops[1].max", "finite"},
		{"std zero", func(s *transform.Spec) { s.Features[0].Ops[2] = gpuexec.Op{Kind: gpuexec.OpStandardize, Mean: 1} },
			"features[0].ops[2].std", "greater than 0"},
		{"std NaN", func(s *transform.Spec) {
			s.Features[0].Ops[2] = gpuexec.Op{Kind: gpuexec.OpStandardize, Std: math.NaN()}
		},
			"features[0].ops[2].std", "greater than 0"},
		{"boundaries repeat", func(s *transform.Spec) {
			s.Features[0].Ops[2] = gpuexec.Op{Kind: gpuexec.OpBucketize, Boundaries: []float64{1, 2, 2}}
		}, "features[0].ops[2].boundaries[2]", "sorted and distinct"},
		{"buckets zero", func(s *transform.Spec) { s.Features[1].Ops[0].Buckets = 0 }, "features[1].ops[0].buckets", "at least 1"},
		{"hash a number", func(s *transform.Spec) { s.Features[1].Input = "total" }, "features[1].ops[0]", "needs a string input"},
		{"numeric op on string", func(s *transform.Spec) { s.Features[0].Input = "country" }, "features[0].ops[0]", "numeric op"},
		{"categorify repeat", func(s *transform.Spec) {
			s.Features[1].Ops[0] = gpuexec.Op{Kind: gpuexec.OpCategorify, Vocabulary: []string{"a", "b", "a"}}
		}, "features[1].ops[0].vocabulary[2]", `category "a" listed twice`},
		{"unknown op", func(s *transform.Spec) { s.Features[0].Ops[2].Kind = "standardise" }, "features[0].ops[2]", `did you mean "standardize"?`},
		{"obligation as op", func(s *transform.Spec) { s.Features[0].Ops[2].Kind = gpuexec.OpDrop }, "features[0].ops[2]", "obligation"},
		{"no executors", func(s *transform.Spec) { s.Executors = nil }, "executors", "required"},
		{"executor kind", func(s *transform.Spec) { s.Executors[0].Kind = "gpu" }, "executors[0].kind", "unknown kind"},
		{"endpoint on cpu", func(s *transform.Spec) { s.Executors[0].Endpoint = "h:1" }, "executors[0].endpoint", "only a remote executor"},
		{"location kind", func(s *transform.Spec) { s.Executors[0].Location.Kind = "edge" }, "executors[0].location.kind", "want onprem or cloud"},
		{"no jurisdiction", func(s *transform.Spec) { s.Executors[0].Location.Jurisdiction = "" }, "executors[0].location.jurisdiction", "required"},
		{"jurisdiction too long", func(s *transform.Spec) { s.Executors[0].Location.Jurisdiction = "DEU" }, "executors[0].location.jurisdiction", "alpha-2"},
		{"certification case", func(s *transform.Spec) { s.Executors[0].Location.Certifications = []string{"HIPAA"} },
			"executors[0].location.certifications[0]", `"hipaa"`},
		{"executor sink missing", func(s *transform.Spec) { s.Executors[0].Sink = "" }, "executors[0].sink", "required"},
		{"executor sink unknown", func(s *transform.Spec) { s.Executors[0].Sink = "locl" }, "executors[0].sink", `did you mean "local"?`},
		{"duplicate executor", func(s *transform.Spec) { s.Executors = append(s.Executors, s.Executors[0]) }, "executors[1].id", "duplicate executor id"},
		{"duplicate sink", func(s *transform.Spec) { s.Sinks = append(s.Sinks, s.Sinks[0]) }, "sinks[1].name", "duplicate sink name"},
		{"codec", func(s *transform.Spec) { s.Sinks[0].Compression = "zstandard" }, "sinks[0].compression", "unknown codec"},
		// Only codecs the Parquet writer has: a spec naming another one
		// would pass and then stall on its first write.
		{"codec the writer lacks", func(s *transform.Spec) { s.Sinks[0].Compression = "gzip" }, "sinks[0].compression", "want one of zstd, snappy, lz4, none"},
		{"quarantine codec", func(s *transform.Spec) { s.Quarantine.Compression = "snapy" }, "quarantine.compression", `did you mean "snappy"?`},
		{"relative file url", func(s *transform.Spec) { s.Sinks[0].URL = "file:relative" }, "sinks[0].url", "absolute path"},
		{"s3 without bucket", func(s *transform.Spec) { s.Lineage.URL = "s3:///prefix" }, "lineage.url", "s3://bucket"},
		{"no quarantine", func(s *transform.Spec) { s.Quarantine.Sink = "" }, "quarantine.sink", "required"},
		{"negative max records", func(s *transform.Spec) { s.Batching.MaxRecords = -1 }, "batching.max_records", "negative"},
		{"negative max bytes", func(s *transform.Spec) { s.Batching.MaxBytes = -1 }, "batching.max_bytes", "negative"},
		{"negative max record bytes", func(s *transform.Spec) { s.Batching.MaxRecordBytes = -1 }, "batching.max_record_bytes", "negative"},
		{"negative linger", func(s *transform.Spec) { s.Batching.Linger = -1 }, "batching.linger", "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := codeSpec()
			s.File = "orders.yaml"
			tt.mutate(s)
			err := s.Validate()
			var verr *transform.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("want *ValidationError, got %v", err)
			}
			for _, p := range verr.Problems {
				if p.Field == tt.field && strings.Contains(p.Msg, tt.msg) {
					if p.Line != 0 || p.File != "orders.yaml" {
						t.Errorf("problem %q: want File orders.yaml and no line", p)
					}
					return
				}
			}
			t.Errorf("no problem at %s containing %q; got:\n%v", tt.field, tt.msg, err)
		})
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		name string
		p    transform.Problem
		want string
	}{
		{"full", transform.Problem{File: "p.yaml", Line: 12, Column: 5, Field: "features[2].ops[0].buckets", Msg: "must be at least 1"},
			"p.yaml:12:5: features[2].ops[0].buckets: must be at least 1"},
		{"no column", transform.Problem{File: "p.yaml", Line: 3, Msg: "YAML syntax: bad"}, "p.yaml:3: YAML syntax: bad"},
		{"no line", transform.Problem{File: "p.yaml", Field: "name", Msg: "required"}, "p.yaml: name: required"},
		{"nothing but the message", transform.Problem{Field: "name", Msg: "required"}, "name: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
