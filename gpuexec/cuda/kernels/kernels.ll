; CUDA entry points, linked with ops.ll by gen.sh. One thread per value;
; blockDim.x must be a multiple of 32 so that each warp covers 32
; consecutive values, whose validity bits it packs into one 32-bit word of
; an Arrow bitmap with a ballot (bit k of word w = value 32*w+k, Arrow's
; little-endian bit order). Threads past n take part in the ballot as
; nulls, so the bitmap's padding bits are zero.

target datalayout = "e-i64:64-i128:128-v16:16-v32:32-n16:32:64"
target triple = "nvptx64-nvidia-cuda"

declare { double, i64, i1, i1 } @sluice_chain(double*, i32, double, i64, i1, i1)
declare i64 @sluice_slot({ double, i64, i1, i1 })
declare i64 @sluice_fnv(i8*, i64, i64, i64)
declare i32 @llvm.nvvm.read.ptx.sreg.tid.x()
declare i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()
declare i32 @llvm.nvvm.read.ptx.sreg.ntid.x()
declare i32 @llvm.nvvm.vote.ballot.sync(i32, i1)

; bit i of the bitmap at v, or true when v is null.
define internal i1 @valid_bit(i32* %v, i64 %i) alwaysinline {
  %none = icmp eq i32* %v, null
  br i1 %none, label %yes, label %load
load:
  %w = lshr i64 %i, 5
  %pw = getelementptr i32, i32* %v, i64 %w
  %word = load i32, i32* %pw
  %i32 = trunc i64 %i to i32
  %sh = and i32 %i32, 31
  %bit = lshr i32 %word, %sh
  %b1 = trunc i32 %bit to i1
  ret i1 %b1
yes:
  ret i1 true
}

; Packs the warp's validity into vout[i/32]; vout may be null (the output
; carries no bitmap). Every lane of the warp must call it.
define internal void @pack_valid(i32* %vout, i64 %i, i64 %n, i1 %valid) alwaysinline {
  %ballot = call i32 @llvm.nvvm.vote.ballot.sync(i32 -1, i1 %valid)
  %none = icmp eq i32* %vout, null
  %i32 = trunc i64 %i to i32
  %lane = and i32 %i32, 31
  %lane0 = icmp eq i32 %lane, 0
  %inr = icmp slt i64 %i, %n
  %w1 = and i1 %lane0, %inr
  %some = xor i1 %none, true
  %write = and i1 %w1, %some
  br i1 %write, label %store, label %done
store:
  %w = lshr i64 %i, 5
  %pw = getelementptr i32, i32* %vout, i64 %w
  store i32 %ballot, i32* %pw
  br label %done
done:
  ret void
}

define internal i64 @global_index() alwaysinline {
  %tid = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()
  %cta = call i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()
  %ntid = call i32 @llvm.nvvm.read.ptx.sreg.ntid.x()
  %t = zext i32 %tid to i64
  %c = zext i32 %cta to i64
  %nt = zext i32 %ntid to i64
  %cb = mul i64 %c, %nt
  %i = add i64 %cb, %t
  ret i64 %i
}

; sluice_chain runs a fused chain of numeric ops over n values: in holds
; float64 (flags bit 0 clear) or int64 (set) slots, out receives float64
; or int64 slots as the chain's last op decides. in == out is allowed.
define void @sluice_chain_kernel(i64* %in, i32* %vin, i64* %out, i32* %vout, double* %tab, i32 %nops, i64 %n, i32 %flags) {
entry:
  %i = call i64 @global_index()
  %inr = icmp slt i64 %i, %n
  br i1 %inr, label %work, label %tail
work:
  %pin = getelementptr i64, i64* %in, i64 %i
  %raw = load i64, i64* %pin
  %x0 = bitcast i64 %raw to double
  %v0 = call i1 @valid_bit(i32* %vin, i64 %i)
  %fl = and i32 %flags, 1
  %isint0 = icmp ne i32 %fl, 0
  %st = call { double, i64, i1, i1 } @sluice_chain(double* %tab, i32 %nops, double %x0, i64 %raw, i1 %isint0, i1 %v0)
  %slot = call i64 @sluice_slot({ double, i64, i1, i1 } %st)
  %pout = getelementptr i64, i64* %out, i64 %i
  store i64 %slot, i64* %pout
  %valid = extractvalue { double, i64, i1, i1 } %st, 3
  br label %tail
tail:
  %vv = phi i1 [ false, %entry ], [ %valid, %work ]
  call void @pack_valid(i32* %vout, i64 %i, i64 %n, i1 %vv)
  ret void
}

; sluice_hash is hash_bucket over an Arrow string column: offs holds n+1
; int64 offsets into data (rebased to start at 0), out receives int64
; slots, zero under nulls; vout gets vin's bits.
define void @sluice_hash_kernel(i64* %offs, i8* %data, i32* %vin, i64* %out, i32* %vout, i64 %buckets, i64 %n) {
entry:
  %i = call i64 @global_index()
  %inr = icmp slt i64 %i, %n
  br i1 %inr, label %work, label %tail
work:
  %v0 = call i1 @valid_bit(i32* %vin, i64 %i)
  %i1 = add i64 %i, 1
  %plo = getelementptr i64, i64* %offs, i64 %i
  %phi = getelementptr i64, i64* %offs, i64 %i1
  %lo = load i64, i64* %plo
  %hi = load i64, i64* %phi
  %h = call i64 @sluice_fnv(i8* %data, i64 %lo, i64 %hi, i64 %buckets)
  %slot = select i1 %v0, i64 %h, i64 0
  %pout = getelementptr i64, i64* %out, i64 %i
  store i64 %slot, i64* %pout
  br label %tail
tail:
  %vv = phi i1 [ false, %entry ], [ %v0, %work ]
  call void @pack_valid(i32* %vout, i64 %i, i64 %n, i1 %vv)
  ret void
}

!nvvm.annotations = !{!0, !1}
!0 = !{void (i64*, i32*, i64*, i32*, double*, i32, i64, i32)* @sluice_chain_kernel, !"kernel", i32 1}
!1 = !{void (i64*, i8*, i32*, i64*, i32*, i64, i64)* @sluice_hash_kernel, !"kernel", i32 1}
