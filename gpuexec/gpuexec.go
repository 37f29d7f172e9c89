package gpuexec

import (
	"context"
	"errors"

	"github.com/apache/arrow-go/v18/arrow"
)

// ErrUnavailable means an executor cannot take work now (absent device,
// unhealthy, at capacity).
var ErrUnavailable = errors.New("gpuexec: executor unavailable")

// Location says where an executor runs; it is what residency policy reads.
type Location struct {
	// Name is the short label used in object keys ("fra", "us-east-1").
	Name string `yaml:"name" json:"name"`
	// Kind is "onprem" or "cloud".
	Kind           string   `yaml:"kind" json:"kind"`
	Site           string   `yaml:"site,omitempty" json:"site,omitempty"`
	Provider       string   `yaml:"provider,omitempty" json:"provider,omitempty"`
	Region         string   `yaml:"region,omitempty" json:"region,omitempty"`
	Jurisdiction   string   `yaml:"jurisdiction" json:"jurisdiction"`
	Certifications []string `yaml:"certifications,omitempty" json:"certifications,omitempty"`
}

// OpKind names a feature op (NVTabular's vocabulary) or an obligation.
type OpKind string

const (
	OpFillMissing OpKind = "fill_missing"
	OpClip        OpKind = "clip"
	OpLog1p       OpKind = "log1p"
	OpStandardize OpKind = "standardize"
	OpMinMax      OpKind = "min_max"
	OpBucketize   OpKind = "bucketize"
	OpHashBucket  OpKind = "hash_bucket"
	OpCategorify  OpKind = "categorify"
	// Obligations.
	OpMask OpKind = "mask"
	OpDrop OpKind = "drop"
	OpHash OpKind = "hash"
)

// Op is one step with its parameters, already validated and fitted.
type Op struct {
	Kind OpKind `json:"op"`
	// Value is fill_missing's replacement.
	Value float64 `json:"value,omitempty"`
	// Min and Max bound clip and min_max.
	Min float64 `json:"min,omitempty"`
	Max float64 `json:"max,omitempty"`
	// Mean and Std parametrize standardize.
	Mean float64 `json:"mean,omitempty"`
	Std  float64 `json:"std,omitempty"`
	// Boundaries are bucketize's sorted upper bounds.
	Boundaries []float64 `json:"boundaries,omitempty"`
	// Buckets is hash_bucket's modulus.
	Buckets int64 `json:"buckets,omitempty"`
	// Vocabulary maps categories to ids for categorify (0 = unknown).
	Vocabulary []string `json:"vocabulary,omitempty"`
}

// Step derives one output column from one input column through ops, in
// order. Numeric steps produce float64 (bucketize, hash_bucket and
// categorify produce int64).
type Step struct {
	Output string `json:"output"`
	Input  string `json:"input"`
	Ops    []Op   `json:"ops"`
}

// Plan is the ordered list of feature steps for a batch. Passthrough columns
// are copied from the input unchanged (entity keys, event time, the
// residency attribute).
type Plan struct {
	Steps       []Step   `json:"steps"`
	Passthrough []string `json:"passthrough,omitempty"`
}

// Executor runs a Plan on a batch. Implementations are safe for concurrent
// use. Execute does not release rec; the caller owns the returned batch.
type Executor interface {
	ID() string
	// Kind is "cpu", "cuda" or "remote".
	Kind() string
	Location() Location
	// Healthy returns nil when the executor can take work now.
	Healthy(ctx context.Context) error
	Execute(ctx context.Context, plan *Plan, rec arrow.RecordBatch) (arrow.RecordBatch, error)
}
