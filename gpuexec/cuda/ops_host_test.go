package cuda

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/ebitengine/purego"
	"github.com/sluice-dev/sluice/gpuexec"
)

// The kernels' element code (kernels/ops.ll) is target-independent IR, so
// these tests compile it for this CPU with the same LLVM that makes the PTX
// and run it against gpuexec.CPU: the log1p polynomial, the op table
// decoding, bucketize's search and FNV-1a are checked here, and only the
// NVPTX entry points (thread index, ballot) wait for a GPU. They skip when
// llc or a C compiler is missing.

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
}

// The committed PTX is what gen.sh makes from the committed IR.
func TestKernelsPTXUpToDate(t *testing.T) {
	needTools(t, "llvm-link", "opt", "llc")
	out := filepath.Join(t.TempDir(), "kernels.ptx")
	cmd := exec.Command("sh", "kernels/gen.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, kernelsPTX) {
		t.Fatal("kernels/kernels.ptx is stale: run kernels/gen.sh and commit the result")
	}
}

type hostOps struct {
	chain func(tab *uint64, nops int32, in *uint64, vin *byte, out *uint64, vout *byte, n, flags int32)
	hash  func(offs *byte, data *byte, out *uint64, n int32, buckets uint64)
}

func loadHostOps(t *testing.T) *hostOps {
	t.Helper()
	needTools(t, "llc", "cc")
	dir := t.TempDir()
	obj, so := filepath.Join(dir, "ops.o"), filepath.Join(dir, "ops.so")
	for _, args := range [][]string{
		{"llc", "-O2", "-relocation-model=pic", "-filetype=obj", "kernels/ops.ll", "-o", obj},
		{"cc", "-shared", "-o", so, obj},
	} {
		if b, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, b)
		}
	}
	h, err := purego.Dlopen(so, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = purego.Dlclose(h) })
	var o hostOps
	purego.RegisterLibFunc(&o.chain, h, "sluice_chain_host")
	purego.RegisterLibFunc(&o.hash, h, "sluice_hash_host")
	return &o
}

// hostRun runs one chain through the host build of ops.ll the way the
// executor stages it (float64 slots, int64 for strings after hash) and
// returns the result as an array.
func (o *hostOps) run(t *testing.T, in arrow.Array, ops []gpuexec.Op) arrow.Array {
	n := in.Len()
	slots := make([]uint64, n+1)
	var vin []byte
	if in.NullN() > 0 {
		vin = make([]byte, n+1)
		for i := range n {
			if in.IsValid(i) {
				vin[i] = 1
			}
		}
	}
	flags := int32(0)
	if len(ops) > 0 && ops[0].Kind == gpuexec.OpHashBucket {
		offs := make([]byte, (n+1)*8)
		data := make([]byte, max(1, len(stringBytes(in))))
		stageStrings(in, offs, data)
		o.hash(&offs[0], &data[0], &slots[0], int32(n), uint64(ops[0].Buckets))
		ops = ops[1:]
		flags = 1
		if len(ops) == 0 { // hash alone: the kernel zeroes nulls
			for i := range n {
				if vin != nil && vin[i] == 0 {
					slots[i] = 0
				}
			}
			return fromSlots(slots[:n], vin, true)
		}
	} else {
		f := make([]float64, n)
		stageNumbers(in, f)
		for i, x := range f {
			slots[i] = math.Float64bits(x)
		}
	}
	tab := append(encodeOps(ops), 0)
	out := make([]uint64, n+1)
	vout := make([]byte, n+1)
	var vp *byte
	if vin != nil {
		vp = &vin[0]
	}
	o.chain(&tab[0], int32(len(ops)), &slots[0], vp, &out[0], &vout[0], int32(n), flags)
	outInt := flags == 1
	for _, op := range ops {
		outInt = op.Kind == gpuexec.OpBucketize
	}
	return fromSlots(out[:n], vout, outInt)
}

func fromSlots(slots []uint64, valid []byte, isInt bool) arrow.Array {
	n := len(slots)
	if isInt {
		b := array.NewInt64Builder(memory.DefaultAllocator)
		defer b.Release()
		for i, s := range slots {
			if valid != nil && valid[i] == 0 {
				b.AppendNull()
			} else {
				b.Append(int64(s))
			}
		}
		return b.NewArray()
	}
	b := array.NewFloat64Builder(memory.DefaultAllocator)
	defer b.Release()
	for i := range n {
		if valid != nil && valid[i] == 0 {
			b.AppendNull()
		} else {
			b.Append(math.Float64frombits(slots[i]))
		}
	}
	return b.NewArray()
}

func oneColumn(name string, a arrow.Array) arrow.RecordBatch {
	return array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: name, Type: a.DataType(), Nullable: true}}, nil), []arrow.Array{a}, int64(a.Len()))
}

func TestKernelOpsOnHost(t *testing.T) {
	o := loadHostOps(t)
	cpu := gpuexec.NewCPU("cpu", gpuexec.Location{}, gpuexec.CPUOptions{})
	check := func(t *testing.T, in arrow.Array, ops []gpuexec.Op) float64 {
		rec := oneColumn("x", in)
		defer rec.Release()
		want, err := cpu.Execute(context.Background(), &gpuexec.Plan{Steps: []gpuexec.Step{{Output: "y", Input: "x", Ops: ops}}}, rec)
		if err != nil {
			t.Fatal(err)
		}
		defer want.Release()
		got := o.run(t, in, ops)
		gotRec := oneColumn("y", got)
		got.Release()
		defer gotRec.Release()
		tol := 0.0
		if hasLog1p(ops) {
			tol = log1pTolerance
		}
		return compareBatches(t, gotRec, want, tol)
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for name, ops := range chains() {
		t.Run(name, func(t *testing.T) {
			for _, dt := range []arrow.DataType{arrow.PrimitiveTypes.Float64, arrow.PrimitiveTypes.Int32} {
				in := randomArray(memory.DefaultAllocator, rng, dt, 20000, 0.2)
				worst := check(t, in, ops)
				in.Release()
				if worst > 0 {
					t.Logf("%s: largest relative error %.3g", dt, worst)
				}
			}
		})
	}
	for name, ops := range stringChains() {
		t.Run(name, func(t *testing.T) {
			in := randomArray(memory.DefaultAllocator, rng, arrow.BinaryTypes.String, 5000, 0.2)
			defer in.Release()
			check(t, in, ops)
		})
	}
	// log1p over its whole range, including where Goldberg's trick and the
	// argument reduction switch branches.
	t.Run("log1p_sweep", func(t *testing.T) {
		b := array.NewFloat64Builder(memory.DefaultAllocator)
		for _, x := range []float64{-1 + 0x1p-53, -0.9999999, -0.5, -0x1p-30, -1e-300, 0x1p-60, 1e-10, 0.41421356, 0.41421357, 1, math.E - 1, 1e10, 1e300, math.MaxFloat64, math.Inf(1), math.NaN()} {
			b.Append(x)
		}
		for range 100000 {
			b.Append(math.Exp(rng.Float64()*80-40) - 1)
		}
		in := b.NewArray()
		b.Release()
		defer in.Release()
		worst := check(t, in, []gpuexec.Op{{Kind: gpuexec.OpLog1p}})
		t.Logf("log1p: largest relative error %.3g (tolerance %g)", worst, log1pTolerance)
	})
}
