package transform

import (
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest"
)

// arrowType maps a schema type to its Arrow type; nil for unknown names.
func arrowType(t string) arrow.DataType {
	switch t {
	case "bool":
		return arrow.FixedWidthTypes.Boolean
	case "int32":
		return arrow.PrimitiveTypes.Int32
	case "int64":
		return arrow.PrimitiveTypes.Int64
	case "float32":
		return arrow.PrimitiveTypes.Float32
	case "float64":
		return arrow.PrimitiveTypes.Float64
	case "string":
		return arrow.BinaryTypes.String
	case "timestamp":
		return arrow.FixedWidthTypes.Timestamp_us
	}
	return nil
}

// IngestFields returns the schema as the decoder's fields, in column
// order. Call it on a validated spec: a field with an unknown type gets a
// nil Type.
func (s *Spec) IngestFields() []ingest.Field {
	out := make([]ingest.Field, len(s.Schema))
	for i, f := range s.Schema {
		out[i] = ingest.Field{Name: f.Name, Path: f.Path, Type: arrowType(f.Type), Nullable: f.Nullable}
	}
	return out
}

// Plan compiles the features into an executor plan: one step per feature,
// in spec order, and as passthrough the entity, event-time and
// jurisdiction fields (each once, in schema order). The plan shares no
// memory with s.
func (s *Spec) Plan() *gpuexec.Plan {
	p := &gpuexec.Plan{Steps: make([]gpuexec.Step, len(s.Features))}
	for i, f := range s.Features {
		ops := make([]gpuexec.Op, len(f.Ops))
		for j, op := range f.Ops {
			op.Boundaries = slices.Clone(op.Boundaries)
			op.Vocabulary = slices.Clone(op.Vocabulary)
			ops[j] = op
		}
		p.Steps[i] = gpuexec.Step{Output: f.Name, Input: f.Input, Ops: ops}
	}
	for _, f := range s.Schema {
		if f.Name == s.EventTime || f.Name == s.Residency.Jurisdiction || slices.Contains(s.Entity, f.Name) {
			if !slices.Contains(p.Passthrough, f.Name) {
				p.Passthrough = append(p.Passthrough, f.Name)
			}
		}
	}
	return p
}

// Executor returns the executor with the given id.
func (s *Spec) Executor(id string) (Executor, bool) {
	for _, e := range s.Executors {
		if e.ID == id {
			return e, true
		}
	}
	return Executor{}, false
}

// Sink returns the sink with the given name.
func (s *Spec) Sink(name string) (Sink, bool) {
	for _, k := range s.Sinks {
		if k.Name == name {
			return k, true
		}
	}
	return Sink{}, false
}

// FieldClasses returns a copy of the classification tags of the schema
// field name; nil when the field is untagged or absent.
func (s *Spec) FieldClasses(name string) []string {
	for _, f := range s.Schema {
		if f.Name == name {
			return slices.Clone(f.Classes)
		}
	}
	return nil
}
