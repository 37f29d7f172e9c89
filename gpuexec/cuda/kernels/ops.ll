; Element-wise feature ops shared by the CUDA kernels (kernels.ll) and the
; host build the tests run (ops_host_test.go). Target-independent LLVM IR,
; written by hand; gen.sh turns it into the embedded PTX. The semantics are
; gpuexec.CPU's (see its doc comment); every comment below names the CPU
; kernel it mirrors.
;
; Op table: nops records of four 8-byte words, then the bucketize
; boundaries. Word 0 is the op code as an i64; words 1-3 are its
; parameters (doubles, or i64 for bucketize):
;   1 fill_missing a=value
;   2 clip         a=min b=max
;   3 log1p
;   4 standardize  a=mean b=std (0 already replaced by 1)
;   5 min_max      a=min b=max c=max-min
;   6 bucketize    a=first boundary (index after the records) b=count (i64)

; log of a positive, finite, normal u: fdlibm's e_log.c as Go's math.log
; writes it (the same constants, the same order of operations).
define linkonce_odr double @sluice_log(double %u) #0 {
  %b = bitcast double %u to i64
  %e = lshr i64 %b, 52
  %k0 = sub i64 %e, 1023
  %mb = and i64 %b, 4503599627370495
  %mb1 = or i64 %mb, 4607182418800017408
  %m = bitcast i64 %mb1 to double
  %big = fcmp oge double %m, 0x3FF6A09E667F3BCD
  %mh = fmul double %m, 5.000000e-01
  %f1 = select i1 %big, double %mh, double %m
  %k1 = add i64 %k0, 1
  %ki = select i1 %big, i64 %k1, i64 %k0
  %f = fsub double %f1, 1.000000e+00
  %k = sitofp i64 %ki to double
  %twof = fadd double %f, 2.000000e+00
  %s = fdiv double %f, %twof
  %s2 = fmul double %s, %s
  %s4 = fmul double %s2, %s2
  %a1 = fmul double %s4, 0x3FC2F112DF3E5244
  %a2 = fadd double 0x3FC7466496CB03DE, %a1
  %a3 = fmul double %s4, %a2
  %a4 = fadd double 0x3FD2492494229359, %a3
  %a5 = fmul double %s4, %a4
  %a6 = fadd double 0x3FE5555555555593, %a5
  %t1 = fmul double %s2, %a6
  %b1 = fmul double %s4, 0x3FC39A09D078C69F
  %b2 = fadd double 0x3FCC71C51D8E78AF, %b1
  %b3 = fmul double %s4, %b2
  %b4 = fadd double 0x3FD999999997FA04, %b3
  %t2 = fmul double %s4, %b4
  %R = fadd double %t1, %t2
  %hf = fmul double %f, 5.000000e-01
  %hfsq = fmul double %hf, %f
  %c1 = fadd double %hfsq, %R
  %c2 = fmul double %s, %c1
  %c3 = fmul double %k, 0x3DEA39EF35793C76
  %c4 = fadd double %c2, %c3
  %c5 = fsub double %hfsq, %c4
  %c6 = fsub double %c5, %f
  %c7 = fmul double %k, 0x3FE62E42FEE00000
  %r = fsub double %c7, %c6
  ret double %r
}

; log1p(x) for x > -1, NaN or +Inf: Goldberg's u = 1+x, log(u)*(x/(u-1)),
; accurate to a few ulp given a log accurate to one. u >= 2^-53 here, so
; sluice_log never sees a subnormal.
define linkonce_odr double @sluice_log1p(double %x) #0 {
  %isnan = fcmp uno double %x, %x
  %isinf = fcmp oeq double %x, 0x7FF0000000000000
  %sp = or i1 %isnan, %isinf
  %u = fadd double %x, 1.000000e+00
  %one = fcmp oeq double %u, 1.000000e+00
  %sane = select i1 %sp, double 2.000000e+00, double %u
  %lu = call double @sluice_log(double %sane)
  %um1 = fsub double %u, 1.000000e+00
  %q = fdiv double %x, %um1
  %g = fmul double %lu, %q
  %r1 = select i1 %one, double %x, double %g
  %r = select i1 %sp, double %x, double %r1
  ret double %r
}

; One value through a chain: the state is (x, xi, isint, valid); xi holds
; the value while isint (after bucketize or hash_bucket), x otherwise.
define linkonce_odr { double, i64, i1, i1 } @sluice_chain(double* %tab, i32 %nops, double %x0, i64 %xi0, i1 %isint0, i1 %valid0) #0 {
entry:
  %tabi = bitcast double* %tab to i64*
  %nops64 = sext i32 %nops to i64
  %bndbase = mul i64 %nops64, 4
  br label %loop

loop:
  %j = phi i32 [ 0, %entry ], [ %jn, %next ]
  %x = phi double [ %x0, %entry ], [ %xo, %next ]
  %xi = phi i64 [ %xi0, %entry ], [ %xio, %next ]
  %isint = phi i1 [ %isint0, %entry ], [ %isinto, %next ]
  %valid = phi i1 [ %valid0, %entry ], [ %valido, %next ]
  %done = icmp sge i32 %j, %nops
  br i1 %done, label %exit, label %body

body:
  ; gpuexec: an int64 value followed by a numeric op becomes float64 first.
  %xc = sitofp i64 %xi to double
  %xv = select i1 %isint, double %xc, double %x
  %j64 = sext i32 %j to i64
  %rec = mul i64 %j64, 4
  %pcode = getelementptr i64, i64* %tabi, i64 %rec
  %code = load i64, i64* %pcode
  %ra = add i64 %rec, 1
  %rb = add i64 %rec, 2
  %rcc = add i64 %rec, 3
  %pa = getelementptr double, double* %tab, i64 %ra
  %pb = getelementptr double, double* %tab, i64 %rb
  %pc = getelementptr double, double* %tab, i64 %rcc
  %a = load double, double* %pa
  %bp = load double, double* %pb
  %c = load double, double* %pc
  switch i64 %code, label %other [
    i64 1, label %fill
    i64 2, label %clip
    i64 3, label %log1p
    i64 4, label %std
    i64 5, label %minmax
    i64 6, label %bucket
  ]

fill: ; fillMissing: a null or a NaN becomes the value, and valid.
  %fnan = fcmp uno double %xv, %xv
  %fnull = xor i1 %valid, true
  %frep = or i1 %fnull, %fnan
  %xf = select i1 %frep, double %a, double %xv
  br label %next

clip: ; clip: below min -> min, else above max -> max; NaN stays.
  %clt = fcmp olt double %xv, %a
  %cx1 = select i1 %clt, double %a, double %xv
  %cgt = fcmp ogt double %xv, %bp
  %cx2 = select i1 %cgt, double %bp, double %cx1
  br label %next

log1p: ; log1p: x <= -1 becomes null (value 0).
  %lle = fcmp ole double %xv, -1.000000e+00
  %safe = select i1 %lle, double 0.000000e+00, double %xv
  %lv = call double @sluice_log1p(double %safe)
  %lx = select i1 %lle, double 0.000000e+00, double %lv
  %lok = xor i1 %lle, true
  %lvalid = and i1 %valid, %lok
  br label %next

std: ; standardize: (x-mean)/std.
  %sd = fsub double %xv, %a
  %sx = fdiv double %sd, %bp
  br label %next

minmax: ; minMax: (x-min)/span clipped to [0,1]; min == max gives 0; NaN stays.
  %meq = fcmp oeq double %a, %bp
  %mnan = fcmp uno double %xv, %xv
  %mdeg = select i1 %mnan, double %xv, double 0.000000e+00
  %md = fsub double %xv, %a
  %mv = fdiv double %md, %c
  %mlt = fcmp olt double %mv, 0.000000e+00
  %mv1 = select i1 %mlt, double 0.000000e+00, double %mv
  %mgt = fcmp ogt double %mv, 1.000000e+00
  %mv2 = select i1 %mgt, double 1.000000e+00, double %mv1
  %mx = select i1 %meq, double %mdeg, double %mv2
  br label %next

bucket: ; bucketize: index of the first boundary > x; NaN becomes null.
  %pai = bitcast double* %pa to i64*
  %pbi = bitcast double* %pb to i64*
  %boff = load i64, i64* %pai
  %bcnt = load i64, i64* %pbi
  %bstart = add i64 %bndbase, %boff
  %bb = getelementptr double, double* %tab, i64 %bstart
  %bnan = fcmp uno double %xv, %xv
  br i1 %bnan, label %next, label %bloop

bloop:
  %lo = phi i64 [ 0, %bucket ], [ %lo2, %bstep ]
  %hi = phi i64 [ %bcnt, %bucket ], [ %hi2, %bstep ]
  %more = icmp slt i64 %lo, %hi
  br i1 %more, label %bstep, label %next

bstep:
  %bsum = add i64 %lo, %hi
  %bm = lshr i64 %bsum, 1
  %pbm = getelementptr double, double* %bb, i64 %bm
  %bv = load double, double* %pbm
  %bgt = fcmp ogt double %bv, %xv
  %hi2 = select i1 %bgt, i64 %bm, i64 %hi
  %bm1 = add i64 %bm, 1
  %lo2 = select i1 %bgt, i64 %lo, i64 %bm1
  br label %bloop

other:
  br label %next

next:
  %xo = phi double [ %xf, %fill ], [ %cx2, %clip ], [ %lx, %log1p ], [ %sx, %std ], [ %mx, %minmax ], [ %xv, %bucket ], [ %xv, %bloop ], [ %xv, %other ]
  %xio = phi i64 [ %xi, %fill ], [ %xi, %clip ], [ %xi, %log1p ], [ %xi, %std ], [ %xi, %minmax ], [ 0, %bucket ], [ %lo, %bloop ], [ %xi, %other ]
  %isinto = phi i1 [ false, %fill ], [ false, %clip ], [ false, %log1p ], [ false, %std ], [ false, %minmax ], [ true, %bucket ], [ true, %bloop ], [ false, %other ]
  %valido = phi i1 [ true, %fill ], [ %valid, %clip ], [ %lvalid, %log1p ], [ %valid, %std ], [ %valid, %minmax ], [ false, %bucket ], [ %valid, %bloop ], [ %valid, %other ]
  %jn = add i32 %j, 1
  br label %loop

exit:
  %r0 = insertvalue { double, i64, i1, i1 } undef, double %x, 0
  %r1 = insertvalue { double, i64, i1, i1 } %r0, i64 %xi, 1
  %r2 = insertvalue { double, i64, i1, i1 } %r1, i1 %isint, 2
  %r3 = insertvalue { double, i64, i1, i1 } %r2, i1 %valid, 3
  ret { double, i64, i1, i1 } %r3
}

; The output slot of one value: its bits, zero under a null (gpuexec zeroes
; values under nulls so the same input always gives the same bytes).
define linkonce_odr i64 @sluice_slot({ double, i64, i1, i1 } %st) #0 {
  %x = extractvalue { double, i64, i1, i1 } %st, 0
  %xi = extractvalue { double, i64, i1, i1 } %st, 1
  %isint = extractvalue { double, i64, i1, i1 } %st, 2
  %valid = extractvalue { double, i64, i1, i1 } %st, 3
  %xb = bitcast double %x to i64
  %v = select i1 %isint, i64 %xi, i64 %xb
  %r = select i1 %valid, i64 %v, i64 0
  ret i64 %r
}

; FNV-1a 64 of data[lo:hi] modulo buckets (gpuexec.HashBucket).
define linkonce_odr i64 @sluice_fnv(i8* %data, i64 %lo, i64 %hi, i64 %buckets) #0 {
entry:
  br label %loop
loop:
  %i = phi i64 [ %lo, %entry ], [ %in, %step ]
  %h = phi i64 [ -3750763034362895579, %entry ], [ %h2, %step ]
  %more = icmp slt i64 %i, %hi
  br i1 %more, label %step, label %done
step:
  %p = getelementptr i8, i8* %data, i64 %i
  %byte = load i8, i8* %p
  %bz = zext i8 %byte to i64
  %h1 = xor i64 %h, %bz
  %h2 = mul i64 %h1, 1099511628211
  %in = add i64 %i, 1
  br label %loop
done:
  %r = urem i64 %h, %buckets
  ret i64 %r
}

; Host entry points: the same code over byte-per-value validity, for the
; tests that run this IR on the CPU. vin may be null (all valid).
define void @sluice_chain_host(double* %tab, i32 %nops, i64* %in, i8* %vin, i64* %out, i8* %vout, i32 %n, i32 %flags) {
entry:
  %isint0 = icmp ne i32 %flags, 0
  %novin = icmp eq i8* %vin, null
  br label %loop
loop:
  %i = phi i32 [ 0, %entry ], [ %in1, %body ]
  %more = icmp slt i32 %i, %n
  br i1 %more, label %body, label %done
body:
  %i64 = sext i32 %i to i64
  %pin = getelementptr i64, i64* %in, i64 %i64
  %raw = load i64, i64* %pin
  %x0 = bitcast i64 %raw to double
  %pv = getelementptr i8, i8* %vin, i64 %i64
  %vb2 = select i1 %novin, i8* %vout, i8* %pv
  %vl = load i8, i8* %vb2
  %vnz = icmp ne i8 %vl, 0
  %valid0 = or i1 %novin, %vnz
  %st = call { double, i64, i1, i1 } @sluice_chain(double* %tab, i32 %nops, double %x0, i64 %raw, i1 %isint0, i1 %valid0)
  %slot = call i64 @sluice_slot({ double, i64, i1, i1 } %st)
  %pout = getelementptr i64, i64* %out, i64 %i64
  store i64 %slot, i64* %pout
  %valid = extractvalue { double, i64, i1, i1 } %st, 3
  %vz = zext i1 %valid to i8
  %pvo = getelementptr i8, i8* %vout, i64 %i64
  store i8 %vz, i8* %pvo
  %in1 = add i32 %i, 1
  br label %loop
done:
  ret void
}

define void @sluice_hash_host(i64* %offs, i8* %data, i64* %out, i32 %n, i64 %buckets) {
entry:
  br label %loop
loop:
  %i = phi i32 [ 0, %entry ], [ %in1, %body ]
  %more = icmp slt i32 %i, %n
  br i1 %more, label %body, label %done
body:
  %i64 = sext i32 %i to i64
  %i1 = add i64 %i64, 1
  %plo = getelementptr i64, i64* %offs, i64 %i64
  %phi = getelementptr i64, i64* %offs, i64 %i1
  %lo = load i64, i64* %plo
  %hi = load i64, i64* %phi
  %h = call i64 @sluice_fnv(i8* %data, i64 %lo, i64 %hi, i64 %buckets)
  %pout = getelementptr i64, i64* %out, i64 %i64
  store i64 %h, i64* %pout
  %in1 = add i32 %i, 1
  br label %loop
done:
  ret void
}

attributes #0 = { alwaysinline nounwind }
