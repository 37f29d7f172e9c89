package gpuexec

import (
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
)

// The op semantics the kernels below implement are documented on CPU.

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// HashBucket is hash_bucket on one value: FNV-1a 64 (offset basis
// 14695981039346656037, prime 1099511628211, over the bytes of s in order)
// taken as an unsigned integer modulo buckets. It is the function every
// executor must match; buckets must be positive.
func HashBucket(s string, buckets int64) int64 {
	return int64(fnv1a(s) % uint64(buckets))
}

func fnv1a(s string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// stringValues is the read side of the string arrays a step accepts.
type stringValues interface {
	Value(i int) string
}

// chunk is rows [lo, hi) of one step's output. f and iv alias the same
// 8-byte slots: an op that turns floats into ints (or back) writes each slot
// after reading it. valid is nil when the output can carry no null; lo is a
// multiple of 8, so chunks never share a bitmap byte.
type chunk struct {
	f      []float64
	iv     []int64
	valid  []byte
	lo, hi int
}

func (c *chunk) isValid(i int) bool { return c.valid == nil || bitutil.BitIsSet(c.valid, i) }

// run applies the whole chain of cs to the chunk, reading input from in.
func (c *chunk) run(cs *compiledStep, in arrow.Array) {
	kind := kindFloat
	ops := cs.ops
	if isStringType(in.DataType()) {
		// compileStep guarantees a string input starts with an encoder.
		c.encode(&ops[0], in.(stringValues))
		ops = ops[1:]
		kind = kindInt
	} else {
		c.load(in)
	}
	for i := range ops {
		op := &ops[i]
		if kind == kindInt {
			c.intToFloat()
			kind = kindFloat
		}
		switch op.Kind {
		case OpFillMissing:
			c.fillMissing(op.Value)
		case OpClip:
			c.clip(op.Min, op.Max)
		case OpLog1p:
			c.log1p()
		case OpStandardize:
			c.standardize(op.Mean, op.Std)
		case OpMinMax:
			c.minMax(op.Min, op.Max)
		case OpBucketize:
			c.bucketize(op.Boundaries)
			kind = kindInt
		}
	}
	if c.valid != nil {
		for i := c.lo; i < c.hi; i++ {
			if !bitutil.BitIsSet(c.valid, i) {
				c.iv[i] = 0
			}
		}
	}
}

type number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

func convert[T number](dst []float64, src []T) {
	for i, v := range src {
		dst[i] = float64(v)
	}
}

// load converts the input values of the chunk to float64. Values under
// nulls are converted too (they are ignored and zeroed at the end).
func (c *chunk) load(in arrow.Array) {
	dst := c.f[c.lo:c.hi]
	if in.NullN() == in.Len() {
		// An all-null array may have no values buffer at all.
		clear(dst)
		return
	}
	lo, hi := c.lo, c.hi
	switch a := in.(type) {
	case *array.Float64:
		copy(dst, a.Float64Values()[lo:hi])
	case *array.Float32:
		convert(dst, a.Float32Values()[lo:hi])
	case *array.Int64:
		convert(dst, a.Int64Values()[lo:hi])
	case *array.Int32:
		convert(dst, a.Int32Values()[lo:hi])
	case *array.Int16:
		convert(dst, a.Int16Values()[lo:hi])
	case *array.Int8:
		convert(dst, a.Int8Values()[lo:hi])
	case *array.Uint64:
		convert(dst, a.Uint64Values()[lo:hi])
	case *array.Uint32:
		convert(dst, a.Uint32Values()[lo:hi])
	case *array.Uint16:
		convert(dst, a.Uint16Values()[lo:hi])
	case *array.Uint8:
		convert(dst, a.Uint8Values()[lo:hi])
	case *array.Float16:
		for i, v := range a.Values()[lo:hi] {
			dst[i] = float64(v.Float32())
		}
	default:
		// compileStep admits only the types above.
		panic("gpuexec: unsupported numeric array " + in.DataType().String())
	}
}

// encode runs hash_bucket or categorify on string input.
func (c *chunk) encode(op *compiledOp, in stringValues) {
	switch op.Kind {
	case OpHashBucket:
		m := uint64(op.Buckets)
		for i := c.lo; i < c.hi; i++ {
			if c.isValid(i) {
				c.iv[i] = int64(fnv1a(in.Value(i)) % m)
			}
		}
	case OpCategorify:
		for i := c.lo; i < c.hi; i++ {
			if c.isValid(i) {
				c.iv[i] = op.vocab[in.Value(i)] // 0 when unknown
			}
		}
	}
}

func (c *chunk) intToFloat() {
	for i := c.lo; i < c.hi; i++ {
		c.f[i] = float64(c.iv[i])
	}
}

func (c *chunk) fillMissing(v float64) {
	f := c.f
	for i := c.lo; i < c.hi; i++ {
		if c.valid != nil && !bitutil.BitIsSet(c.valid, i) {
			f[i] = v
			bitutil.SetBit(c.valid, i)
		} else if f[i] != f[i] { // NaN
			f[i] = v
		}
	}
}

func (c *chunk) clip(lo, hi float64) {
	f := c.f[c.lo:c.hi]
	for i, x := range f {
		if x < lo {
			f[i] = lo
		} else if x > hi {
			f[i] = hi
		}
	}
}

// log1p needs a validity bitmap (compileStep marks it as introducing nulls).
func (c *chunk) log1p() {
	f := c.f
	for i := c.lo; i < c.hi; i++ {
		if f[i] <= -1 {
			f[i] = 0
			bitutil.ClearBit(c.valid, i)
			continue
		}
		f[i] = math.Log1p(f[i])
	}
}

func (c *chunk) standardize(mean, std float64) {
	if std == 0 {
		std = 1
	}
	f := c.f[c.lo:c.hi]
	for i, x := range f {
		f[i] = (x - mean) / std
	}
}

func (c *chunk) minMax(lo, hi float64) {
	f := c.f[c.lo:c.hi]
	if hi == lo {
		for i, x := range f {
			if x == x {
				f[i] = 0
			}
		}
		return
	}
	span := hi - lo
	for i, x := range f {
		v := (x - lo) / span
		if v < 0 {
			v = 0
		} else if v > 1 {
			v = 1
		}
		f[i] = v
	}
}

// bucketize needs a validity bitmap (compileStep marks it as introducing
// nulls).
func (c *chunk) bucketize(bounds []float64) {
	for i := c.lo; i < c.hi; i++ {
		x := c.f[i]
		if x != x {
			c.iv[i] = 0
			bitutil.ClearBit(c.valid, i)
			continue
		}
		// First boundary > x.
		lo, hi := 0, len(bounds)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if bounds[m] > x {
				hi = m
			} else {
				lo = m + 1
			}
		}
		c.iv[i] = int64(lo)
	}
}
