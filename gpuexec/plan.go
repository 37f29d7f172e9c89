package gpuexec

import (
	"errors"
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
)

// ErrInvalidPlan means a plan cannot run on a batch: a column it names is
// missing or of the wrong type, an op is unknown, out of place or has bad
// parameters. Retrying does not help; the spec or the fitted plan is wrong.
var ErrInvalidPlan = errors.New("gpuexec: invalid plan")

// valueKind is the type a step's value carries between two ops.
type valueKind uint8

const (
	kindFloat  valueKind = iota // float64 (every numeric input starts here)
	kindInt                     // int64 (after bucketize, hash_bucket, categorify)
	kindString                  // a string input before its first op
)

func (k valueKind) String() string {
	switch k {
	case kindFloat:
		return "float64"
	case kindInt:
		return "int64"
	default:
		return "string"
	}
}

// compiledStep is a Step checked against one schema, with what the kernels
// need precomputed.
type compiledStep struct {
	step  *Step
	input int // column index in the input record
	ops   []compiledOp
	out   valueKind // kindFloat or kindInt
	// introducesNulls is true when an op of the chain can turn a valid value
	// into a null (log1p of x <= -1, bucketize of NaN), so a validity bitmap
	// is needed even for an input without nulls.
	introducesNulls bool
}

type compiledOp struct {
	Op
	vocab map[string]int64 // categorify: category -> id (1-based)
}

// compiled is a plan checked against one input schema.
type compiled struct {
	steps       []compiledStep
	passthrough []int // column indices in the input record
	schema      *arrow.Schema
}

// ValidatePlan checks plan against the schema of the batches it will run
// on: every column it names exists once, the ops are known feature ops in a
// valid order for the input's type, and their parameters are usable. The
// error wraps ErrInvalidPlan and names the step and op at fault.
func ValidatePlan(plan *Plan, schema *arrow.Schema) error {
	_, err := compilePlan(plan, schema)
	return err
}

func compilePlan(plan *Plan, schema *arrow.Schema) (*compiled, error) {
	if plan == nil {
		return nil, fmt.Errorf("%w: plan is nil", ErrInvalidPlan)
	}
	if schema == nil {
		return nil, fmt.Errorf("%w: schema is nil", ErrInvalidPlan)
	}
	c := &compiled{}
	outNames := make(map[string]string, len(plan.Passthrough)+len(plan.Steps))
	fields := make([]arrow.Field, 0, len(plan.Passthrough)+len(plan.Steps))

	for _, name := range plan.Passthrough {
		idx, err := columnIndex(schema, name)
		if err != nil {
			return nil, fmt.Errorf("%w: passthrough: %v", ErrInvalidPlan, err)
		}
		if prev, dup := outNames[name]; dup {
			return nil, fmt.Errorf("%w: passthrough column %q is also %s", ErrInvalidPlan, name, prev)
		}
		outNames[name] = "a passthrough column"
		c.passthrough = append(c.passthrough, idx)
		fields = append(fields, schema.Field(idx))
	}

	for i := range plan.Steps {
		st := &plan.Steps[i]
		cs, err := compileStep(st, schema)
		if err != nil {
			return nil, fmt.Errorf("%w: step %d (output %q): %v", ErrInvalidPlan, i, st.Output, err)
		}
		if prev, dup := outNames[st.Output]; dup {
			return nil, fmt.Errorf("%w: step %d: output %q is also %s", ErrInvalidPlan, i, st.Output, prev)
		}
		outNames[st.Output] = fmt.Sprintf("the output of step %d", i)
		dt := arrow.DataType(arrow.PrimitiveTypes.Float64)
		if cs.out == kindInt {
			dt = arrow.PrimitiveTypes.Int64
		}
		fields = append(fields, arrow.Field{Name: st.Output, Type: dt, Nullable: true})
		c.steps = append(c.steps, cs)
	}
	md := schema.Metadata()
	c.schema = arrow.NewSchema(fields, &md)
	return c, nil
}

// columnIndex finds the one column called name. A name that is absent or
// appears twice is an error, so a plan never silently reads the wrong one.
func columnIndex(schema *arrow.Schema, name string) (int, error) {
	idx := schema.FieldIndices(name)
	switch len(idx) {
	case 0:
		return 0, fmt.Errorf("column %q is not in the batch (columns: %v)", name, fieldNames(schema))
	case 1:
		return idx[0], nil
	default:
		return 0, fmt.Errorf("column %q appears %d times in the batch", name, len(idx))
	}
}

func fieldNames(schema *arrow.Schema) []string {
	names := make([]string, schema.NumFields())
	for i := range names {
		names[i] = schema.Field(i).Name
	}
	return names
}

func isNumericType(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64,
		arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64:
		return true
	}
	return false
}

func isStringType(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
		return true
	}
	return false
}

func compileStep(st *Step, schema *arrow.Schema) (compiledStep, error) {
	cs := compiledStep{step: st}
	if st.Output == "" {
		return cs, errors.New("output name is empty")
	}
	idx, err := columnIndex(schema, st.Input)
	if err != nil {
		return cs, fmt.Errorf("input: %v", err)
	}
	cs.input = idx
	dt := schema.Field(idx).Type
	var kind valueKind
	switch {
	case isNumericType(dt):
		kind = kindFloat
	case isStringType(dt):
		kind = kindString
	default:
		return cs, fmt.Errorf("input column %q has type %s; feature ops take integer, float or string columns", st.Input, dt)
	}

	for j, op := range st.Ops {
		co := compiledOp{Op: op}
		if err := checkParams(&co); err != nil {
			return cs, fmt.Errorf("op %d (%s): %v", j, op.Kind, err)
		}
		switch op.Kind {
		case OpHashBucket, OpCategorify:
			if kind != kindString {
				return cs, fmt.Errorf("op %d (%s) needs a string value, but input column %q gives %s here", j, op.Kind, st.Input, describe(kind, j, dt))
			}
			kind = kindInt
		default: // numeric ops; checkParams rejected everything else
			if kind == kindString {
				return cs, fmt.Errorf("op %d (%s) needs a number, but input column %q is %s; encode it first with hash_bucket or categorify", j, op.Kind, st.Input, dt)
			}
			kind = kindFloat
			if op.Kind == OpBucketize {
				kind = kindInt
			}
			if op.Kind == OpLog1p || op.Kind == OpBucketize {
				cs.introducesNulls = true
			}
		}
		cs.ops = append(cs.ops, co)
	}
	if kind == kindString {
		return cs, fmt.Errorf("input column %q is %s; a string input needs hash_bucket or categorify", st.Input, dt)
	}
	cs.out = kind
	return cs, nil
}

func describe(k valueKind, opIndex int, input arrow.DataType) string {
	if opIndex == 0 {
		return "type " + input.String()
	}
	return k.String() + " after the previous op"
}

// checkParams validates an op's parameters on their own and precomputes
// lookup tables.
func checkParams(co *compiledOp) error {
	op := &co.Op
	switch op.Kind {
	case OpFillMissing:
		if math.IsNaN(op.Value) {
			return errors.New("value is NaN")
		}
	case OpClip:
		if math.IsNaN(op.Min) || math.IsNaN(op.Max) {
			return errors.New("min or max is NaN")
		}
		if op.Min > op.Max {
			return fmt.Errorf("min %g is greater than max %g", op.Min, op.Max)
		}
	case OpLog1p:
	case OpStandardize:
		if !isFinite(op.Mean) || !isFinite(op.Std) {
			return fmt.Errorf("mean %g and std %g must be finite", op.Mean, op.Std)
		}
		if op.Std < 0 {
			return fmt.Errorf("std %g is negative", op.Std)
		}
	case OpMinMax:
		if !isFinite(op.Min) || !isFinite(op.Max) {
			return fmt.Errorf("min %g and max %g must be finite", op.Min, op.Max)
		}
		if op.Min > op.Max {
			return fmt.Errorf("min %g is greater than max %g", op.Min, op.Max)
		}
	case OpBucketize:
		if len(op.Boundaries) == 0 {
			return errors.New("boundaries are empty")
		}
		for i, b := range op.Boundaries {
			if math.IsNaN(b) {
				return fmt.Errorf("boundary %d is NaN", i)
			}
			if i > 0 && !(op.Boundaries[i-1] < b) {
				return fmt.Errorf("boundaries must increase strictly: %g then %g", op.Boundaries[i-1], b)
			}
		}
	case OpHashBucket:
		if op.Buckets <= 0 {
			return fmt.Errorf("buckets must be positive, got %d", op.Buckets)
		}
	case OpCategorify:
		if len(op.Vocabulary) == 0 {
			return errors.New("vocabulary is empty")
		}
		co.vocab = make(map[string]int64, len(op.Vocabulary))
		for i, v := range op.Vocabulary {
			if _, dup := co.vocab[v]; dup {
				return fmt.Errorf("vocabulary has %q twice", v)
			}
			co.vocab[v] = int64(i) + 1
		}
	case OpMask, OpDrop, OpHash:
		return errors.New("is an obligation, not a feature op; obligations are applied with ApplyObligations")
	default:
		return fmt.Errorf("unknown op %q", op.Kind)
	}
	return nil
}

func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
