package transform

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	bits64 "math/bits"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/storage"
)

// OffsetColumn is added to every feature and quarantine object: the Kafka
// offset each row came from, so a row can be traced back to its record.
const OffsetColumn = "_kafka_offset"

// ReasonColumn holds, in quarantine objects, why no executor could take the
// row.
const ReasonColumn = "_quarantine_reason"

// output is the part of a batch routed to one location.
type output struct {
	location gpuexec.Location
	sink     string
	execs    []*execPart
	object   storage.Object
	rows     int64
	offsets  []int64
	quality  *lineage.DataQualityMetricsFacet // facts of the written rows (quality.go)
}

// execPart is the rows of one batch that one executor processed.
type execPart struct {
	exec        gpuexec.Executor
	groups      []*group
	obligations gpuexec.Applied
	duration    time.Duration
	rec         arrow.RecordBatch
	offsets     []int64
}

// batchOutcome is what one batch turned into; it feeds Stats.
type batchOutcome struct {
	records     int64
	deadLetters int64
	quarantined int64
	qReasons    map[string]int64
	rowsByExec  map[string]int64
	rowsByLoc   map[string]int64
	events      int64
	replayed    int64
	elapsed     time.Duration
	decisions   map[DecisionKey]int64
	stages      map[string]time.Duration
}

func (r *Runner) process(ctx context.Context, b *ingest.Batch, t *ticket) (batchOutcome, error) {
	replayed, err := r.skipRecorded(ctx, b, t)
	if err != nil {
		return batchOutcome{}, err
	}
	if b.First > b.Last {
		// Every record of the batch is already recorded: it was processed
		// before a crash or rebalance and only its commit was lost.
		return batchOutcome{replayed: replayed}, t.waitTurn(ctx)
	}
	out := batchOutcome{
		replayed:    replayed,
		records:     int64(len(b.Offsets) + len(b.DeadLetters)),
		deadLetters: int64(len(b.DeadLetters)),
		qReasons:    map[string]int64{},
		rowsByExec:  map[string]int64{},
		rowsByLoc:   map[string]int64{},
		decisions:   map[DecisionKey]int64{},
		stages:      map[string]time.Duration{},
	}
	var events []*lineage.Event
	date := b.Time.UTC()

	// The dead letters go to their topic while the rows are processed: the
	// write is mostly a wait for the broker.
	var dlq chan error
	var dlqTime time.Duration
	if len(b.DeadLetters) > 0 {
		dlq = make(chan error, 1)
		go func() {
			t0 := time.Now()
			err := r.retry(ctx, "write dead letters", func() error {
				return r.cfg.DeadLetters.Write(ctx, b.DeadLetters)
			})
			dlqTime = time.Since(t0)
			dlq <- err
		}()
	}

	if b.Record != nil && b.Record.NumRows() > 0 {
		t0 := time.Now()
		groups, err := r.route.groups(b.Record)
		if err != nil {
			return out, err
		}
		var quarantine, routed []*group
		decider := r.route.deciderFor()
		for _, g := range groups {
			r.route.decide(ctx, decider, g)
			countDecisions(out.decisions, g)
			if len(g.allowed()) == 0 {
				quarantine = append(quarantine, g)
			} else {
				routed = append(routed, g)
			}
		}

		// The quarantine object is written while the other rows are
		// executed: the write is mostly a wait for the store.
		type qresult struct {
			ev  *lineage.Event
			n   int64
			err error
			d   time.Duration
		}
		var qdone chan qresult
		if len(quarantine) > 0 {
			qdone = make(chan qresult, 1)
			go func() {
				tq := time.Now()
				ev, n, err := r.writeQuarantine(ctx, b, date, quarantine, out.qReasons)
				qdone <- qresult{ev, n, err, time.Since(tq)}
			}()
		}
		waitQuarantine := func() error {
			if qdone == nil {
				return nil
			}
			q := <-qdone
			qdone = nil
			out.stages[StageWrite] += q.d
			if q.err != nil {
				return q.err
			}
			out.quarantined = q.n
			events = append(events, q.ev)
			return nil
		}

		t1 := time.Now()
		out.stages[StagePolicy] += t1.Sub(t0)
		outs, err := r.routeAndRun(ctx, b, routed, decider.Revision())
		if err != nil {
			_ = waitQuarantine()
			return out, err
		}
		t2 := time.Now()
		out.stages[StageExecute] += t2.Sub(t1)
		// One object per location, written at the same time.
		werrs := make([]error, len(outs))
		var wg sync.WaitGroup
		for i, o := range outs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				werrs[i] = r.writeOutput(ctx, b, date, o)
			}()
		}
		wg.Wait()
		qerr := waitQuarantine()
		if err := errors.Join(append(werrs, qerr)...); err != nil {
			releaseOutputs(outs)
			return out, err
		}
		for _, o := range outs {
			for _, p := range o.execs {
				out.rowsByExec[p.exec.ID()] += int64(len(p.offsets))
			}
			out.rowsByLoc[o.location.Name] += o.rows
			ev := r.featureEvent(b, o)
			if err := r.publishFeatures(ctx, b, o, ev); err != nil { // features.go
				releaseOutputs(outs)
				return out, err
			}
			events = append(events, ev)
		}
		releaseOutputs(outs)
		out.stages[StageWrite] += time.Since(t2)
	}

	if dlq != nil {
		if err := <-dlq; err != nil {
			return out, err
		}
		events = append(events, r.deadLetterEvent(b))
		out.stages[StageDeadLetters] += dlqTime
	}
	if err := t.waitTurn(ctx); err != nil {
		return out, err
	}
	t3 := time.Now()
	if err := r.retry(ctx, "append lineage", func() error {
		_, err := r.cfg.Lineage.Append(ctx, chainName(b.Topic, b.Partition), events)
		return err
	}); err != nil {
		return out, err
	}
	out.stages[StageLineage] += time.Since(t3)
	out.events = int64(len(events))
	return out, nil
}

// lastOffsetter is the optional ability of a LineageWriter to say how far a
// chain has recorded (*lineage.Writer has it).
type lastOffsetter interface {
	LastOffset(ctx context.Context, chain string) (int64, bool, error)
}

// skipRecorded drops from b the records its partition's lineage chain
// already holds. After a crash between the lineage write and the offset
// commit, the batch is read again and may be cut at other offsets; without
// this its rows would be written a second time under another key. It
// returns how many records it dropped; b.First > b.Last means all.
func (r *Runner) skipRecorded(ctx context.Context, b *ingest.Batch, t *ticket) (int64, error) {
	if t.first != t {
		select {
		case <-t.first.ready:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	lo, ok := r.cfg.Lineage.(lastOffsetter)
	if !ok {
		t.markReady()
		t.markChecked(false, 0)
		return 0, nil
	}
	last, err := r.recorded(ctx, b, t, lo)
	if err != nil {
		return 0, err
	}
	t.markChecked(true, last)
	if t.first == t {
		// The partition's first batch in this Run prepares it; the others
		// wait (above) so they write nothing the sweep could take for a
		// crashed attempt's leftovers.
		if r.sweep(b.Partition) {
			if err := r.retry(ctx, "sweep unrecorded objects", func() error {
				return r.sweepOrphans(ctx, b, last)
			}); err != nil {
				return 0, err
			}
		}
		t.markReady()
	}
	if last < b.First {
		return 0, nil
	}
	dropped := min(last, b.Last) - b.First + 1
	keep := sort.Search(len(b.Offsets), func(i int) bool { return b.Offsets[i] > last })
	if b.Record != nil {
		rest := b.Record.NewSlice(int64(keep), b.Record.NumRows())
		b.Record.Release()
		b.Record = rest
	}
	b.Offsets = b.Offsets[keep:]
	dls := b.DeadLetters[:0:0]
	for _, dl := range b.DeadLetters {
		if dl.Offset > last {
			dls = append(dls, dl)
		}
	}
	b.DeadLetters = dls
	b.First = last + 1
	r.cfg.Logger.Info("skipped records the lineage already holds", "topic", b.Topic, "partition", b.Partition,
		"through", last, "records", dropped)
	return dropped, nil
}

// reloader is the optional ability of a LineageWriter to read a chain's
// tail again from the store (*lineage.Writer has it).
type reloader interface {
	Reload(ctx context.Context, chain string) error
}

// recorded returns the last offset b's chain records (-1: none).
//
// A batch that follows its predecessor in the same assignment, with no
// earlier batch of this Run reaching past the predecessor, takes what the
// predecessor read: the chain has grown since only by this Run's appends
// of earlier batches, none of which reach b. Asking the writer instead
// would wait for the predecessor's append.
//
// The first batch after the partition was (re)assigned, and a batch that
// overlaps batches handed out before it (the source re-read from the
// commit while they were in flight), first wait for the batches before
// them to finish, so the chain holds whatever they recorded; the first
// batch of an assignment then has the writer read the chain from the
// store again, since another consumer may have extended it meanwhile.
func (r *Runner) recorded(ctx context.Context, b *ingest.Batch, t *ticket, lo lastOffsetter) (int64, error) {
	fresh := b.Assigned
	if p := t.prev; p != nil {
		switch {
		case b.Assigned || b.First <= t.hi:
			// Batches are started in the source's order, so the
			// predecessor is running or done: waiting cannot deadlock.
			select {
			case <-p.done:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		case b.First == p.to+1 && p.to == t.hi:
			select {
			case <-p.checked:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			if p.known {
				return p.recorded, nil
			}
		}
	}
	if rl, ok := r.cfg.Lineage.(reloader); ok && fresh {
		if err := r.retry(ctx, "read lineage chain", func() error {
			return rl.Reload(ctx, chainName(b.Topic, b.Partition))
		}); err != nil {
			return 0, err
		}
	}
	var last int64
	var have bool
	if err := r.retry(ctx, "read lineage chain", func() error {
		var err error
		last, have, err = lo.LastOffset(ctx, chainName(b.Topic, b.Partition))
		return err
	}); err != nil {
		return 0, err
	}
	if !have {
		last = -1
	}
	return last, nil
}

func chainName(topic string, partition int) string { return fmt.Sprintf("%s-%d", topic, partition) }

// routeAndRun chooses an executor for every group and runs the parts. If
// an executor becomes unavailable mid-way, every group is routed again (the
// router keeps the failed one out for a while) and every part runs again,
// with the obligations of its new executor: a batch is never half on one
// executor's terms and half on another's. While no allowed executor is
// available the batch waits; rows never go to one the policy did not allow.
func (r *Runner) routeAndRun(ctx context.Context, b *ingest.Batch, groups []*group, revision string) ([]*output, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	wait := r.cfg.RetryMin
	for {
		parts := map[string]*execPart{}
		for _, g := range groups {
			req := gpuexec.Request{DataJurisdiction: g.jurisdiction, Allowed: g.allowed(), Rows: len(g.rows), Plan: r.plan}
			if err := r.retry(ctx, "choose executor", func() error {
				ch, err := r.cfg.Router.Choose(ctx, req)
				g.exec, g.choice = ch.Executor, ch
				return err
			}); err != nil {
				return nil, err
			}
			p := parts[g.exec.ID()]
			if p == nil {
				p = &execPart{exec: g.exec}
				parts[g.exec.ID()] = p
			}
			p.groups = append(p.groups, g)
		}
		outs, err := r.runParts(ctx, b, parts, revision)
		if err == nil || !errors.Is(err, gpuexec.ErrUnavailable) {
			return outs, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("execute: %w (gave up: %v)", err, ctx.Err())
		}
		r.stats.stall()
		r.cfg.Logger.Warn("executor failed; routing the batch again", "partition", b.Partition, "first", b.First, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		wait = min(wait*2, r.cfg.RetryMax)
	}
}

// runParts executes each executor's rows and gathers the results per
// location, executors in id order so the object bytes are deterministic.
func (r *Runner) runParts(ctx context.Context, b *ingest.Batch, parts map[string]*execPart, revision string) ([]*output, error) {
	ids := make([]string, 0, len(parts))
	for id := range parts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	byLoc := map[string]*output{}
	var outs []*output
	for _, id := range ids {
		p := parts[id]
		if err := r.runPart(ctx, b, p, revision); err != nil {
			releaseOutputs(outs)
			for _, q := range parts {
				if q.rec != nil {
					q.rec.Release()
					q.rec = nil
				}
			}
			return nil, err
		}
		loc := p.exec.Location()
		o := byLoc[loc.Name]
		if o == nil {
			spec, _ := r.cfg.Spec.Executor(id)
			o = &output{location: loc, sink: spec.Sink}
			byLoc[loc.Name] = o
			outs = append(outs, o)
		}
		o.execs = append(o.execs, p)
	}
	return outs, nil
}

func releaseOutputs(outs []*output) {
	for _, o := range outs {
		for _, p := range o.execs {
			if p.rec != nil {
				p.rec.Release()
				p.rec = nil
			}
		}
	}
}

// runPart takes the part's rows out of the batch, applies the obligations
// the decisions require, and runs the plan on the executor.
func (r *Runner) runPart(ctx context.Context, b *ingest.Batch, p *execPart, revision string) error {
	var rows []int
	var obl []policy.Obligations
	route := gpuexec.RouteDecision{Revision: revision}
	groupRows := make([][]int, len(p.groups))
	for i, g := range p.groups {
		groupRows[i] = g.rows
		if d, ok := g.decisionFor(p.exec.ID()); ok {
			obl = append(obl, d.Obligations)
			route.IDs = append(route.IDs, d.DecisionID)
		}
		// A remote executor checks that it is allowed for every row it gets.
		if i == 0 {
			route.Allowed = g.allowed()
		} else {
			route.Allowed = slices.DeleteFunc(route.Allowed, func(id string) bool { return !slices.Contains(g.allowed(), id) })
		}
	}
	rows = mergeRows(b.Record.NumRows(), groupRows)
	p.offsets = make([]int64, len(rows))
	for i, row := range rows {
		p.offsets[i] = b.Offsets[row]
	}
	sub, err := r.take(ctx, b.Record, rows)
	if err != nil {
		return err
	}
	defer sub.Release()
	u := unionObligations(obl...)
	masked, applied, err := gpuexec.ApplyObligations(sub, u.Mask, u.Drop, u.Hash, r.cfg.HashKey, r.cfg.Allocator)
	if err != nil {
		return fmt.Errorf("apply obligations for %s: %w", p.exec.ID(), err)
	}
	defer masked.Release()
	p.obligations = applied
	start := time.Now()
	res, err := p.exec.Execute(gpuexec.WithDecision(ctx, route), r.plan, masked)
	p.duration = time.Since(start)
	if err != nil {
		switch {
		case errors.Is(err, gpuexec.ErrUnavailable):
			return fmt.Errorf("execute on %s: %w", p.exec.ID(), err)
		case errors.Is(err, gpuexec.ErrInvalidPlan):
			// The plan does not fit the data: no executor will do better.
			return fmt.Errorf("%w: execute on %s: %w", errPermanent, p.exec.ID(), err)
		}
		// Any other failure (an executor's internal error, a refusal) is
		// retried like an outage: routed again, elsewhere if allowed.
		return fmt.Errorf("execute on %s: %w (%w)", p.exec.ID(), gpuexec.ErrUnavailable, err)
	}
	defer res.Release()
	p.rec, err = r.conform(res, p.offsets)
	return err
}

// take copies the given rows of rec into a new record batch.
func (r *Runner) take(ctx context.Context, rec arrow.RecordBatch, rows []int) (arrow.RecordBatch, error) {
	ib := array.NewInt64Builder(r.cfg.Allocator)
	defer ib.Release()
	for _, row := range rows {
		ib.Append(int64(row))
	}
	idx := ib.NewArray()
	defer idx.Release()
	cctx := compute.WithAllocator(ctx, r.cfg.Allocator)
	cols := make([]arrow.Array, rec.NumCols())
	for i := range cols {
		c, err := compute.TakeArray(cctx, rec.Column(i), idx)
		if err != nil {
			for _, done := range cols[:i] {
				done.Release()
			}
			return nil, fmt.Errorf("transform: select rows: %w", err)
		}
		cols[i] = c
	}
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	return array.NewRecordBatch(rec.Schema(), cols, int64(len(rows))), nil
}

// conform gives an executor's result the plan's output schema (a column an
// obligation dropped becomes all-null, so every object of the pipeline has
// one schema) and appends the offset column.
func (r *Runner) conform(res arrow.RecordBatch, offsets []int64) (arrow.RecordBatch, error) {
	schema := r.outputSchema(res.Schema())
	n := int(res.NumRows())
	cols := make([]arrow.Array, 0, schema.NumFields())
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	for _, f := range schema.Fields() {
		if f.Name == OffsetColumn {
			ob := array.NewInt64Builder(r.cfg.Allocator)
			ob.AppendValues(offsets, nil)
			cols = append(cols, ob.NewArray())
			ob.Release()
			continue
		}
		if idx := res.Schema().FieldIndices(f.Name); len(idx) > 0 {
			c := res.Column(idx[0])
			if !arrow.TypeEqual(c.DataType(), f.Type) {
				return nil, fmt.Errorf("%w: executor returned %s as %s, want %s", errPermanent, f.Name, c.DataType(), f.Type)
			}
			c.Retain()
			cols = append(cols, c)
			continue
		}
		cols = append(cols, array.MakeArrayOfNull(r.cfg.Allocator, f.Type, n))
	}
	return array.NewRecordBatch(schema, cols, int64(n)), nil
}

// outputSchema is the schema every feature object of this pipeline has:
// the plan's passthrough columns with their input types, one column per
// feature, then the offset column.
func (r *Runner) outputSchema(got *arrow.Schema) *arrow.Schema {
	var fields []arrow.Field
	types := map[string]arrow.DataType{}
	for _, f := range r.cfg.Spec.IngestFields() {
		types[f.Name] = f.Type
	}
	for _, name := range r.plan.Passthrough {
		fields = append(fields, arrow.Field{Name: name, Type: types[name], Nullable: true})
	}
	for _, s := range r.plan.Steps {
		t := arrow.DataType(arrow.PrimitiveTypes.Float64)
		if n := len(s.Ops); n > 0 {
			switch s.Ops[n-1].Kind {
			case gpuexec.OpBucketize, gpuexec.OpHashBucket, gpuexec.OpCategorify:
				t = arrow.PrimitiveTypes.Int64
			}
		}
		fields = append(fields, arrow.Field{Name: s.Output, Type: t, Nullable: true})
	}
	fields = append(fields, arrow.Field{Name: OffsetColumn, Type: arrow.PrimitiveTypes.Int64})
	_ = got
	return arrow.NewSchema(fields, nil)
}

// writeOutput concatenates a location's parts and writes one Parquet
// object at the deterministic key for (batch, location).
func (r *Runner) writeOutput(ctx context.Context, b *ingest.Batch, date time.Time, o *output) error {
	recs := make([]arrow.RecordBatch, 0, len(o.execs))
	for _, p := range o.execs {
		recs = append(recs, p.rec)
		o.offsets = append(o.offsets, p.offsets...)
		o.rows += p.rec.NumRows()
	}
	rec, err := concat(recs, r.cfg)
	if err != nil {
		return err
	}
	defer rec.Release()
	o.quality = r.qualityFacet(rec)
	store := r.cfg.Sinks[o.sink]
	sink, _ := r.cfg.Spec.Sink(o.sink)
	key := storage.FeatureKey("", r.cfg.Spec.Name, date, o.location.Name, b.Topic, b.Partition, b.First, b.Last)
	return r.retry(ctx, "write "+key, func() error {
		obj, err := storage.WriteParquet(ctx, store, key, rec, storage.ParquetOptions{Compression: sink.Compression})
		o.object = obj
		return err
	})
}

func concat(recs []arrow.RecordBatch, cfg RunnerConfig) (arrow.RecordBatch, error) {
	if len(recs) == 1 {
		recs[0].Retain()
		return recs[0], nil
	}
	schema := recs[0].Schema()
	cols := make([]arrow.Array, schema.NumFields())
	var n int64
	for _, rec := range recs {
		n += rec.NumRows()
	}
	for i := range cols {
		parts := make([]arrow.Array, len(recs))
		for j, rec := range recs {
			parts[j] = rec.Column(i)
		}
		c, err := array.Concatenate(parts, cfg.Allocator)
		if err != nil {
			for _, done := range cols[:i] {
				done.Release()
			}
			return nil, fmt.Errorf("transform: concatenate outputs: %w", err)
		}
		cols[i] = c
	}
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	return array.NewRecordBatch(schema, cols, n), nil
}

// writeQuarantine keeps the rows no executor may take, unchanged, with the
// reason, in the quarantine sink.
func (r *Runner) writeQuarantine(ctx context.Context, b *ingest.Batch, date time.Time, gs []*group, reasons map[string]int64) (*lineage.Event, int64, error) {
	why := make([]string, b.Record.NumRows()) // by row of the batch
	groupRows := make([][]int, len(gs))
	for i, g := range gs {
		reason := summarizeDeny(g)
		reasons[shortDeny(g)] += int64(len(g.rows))
		for _, row := range g.rows {
			why[row] = reason
		}
		groupRows[i] = g.rows
	}
	rows := mergeRows(b.Record.NumRows(), groupRows)
	sub, err := r.take(ctx, b.Record, rows)
	if err != nil {
		return nil, 0, err
	}
	defer sub.Release()
	offsets := make([]int64, len(rows))
	rb := array.NewStringBuilder(r.cfg.Allocator)
	defer rb.Release()
	rb.Reserve(len(rows))
	reasonBytes := 0
	for _, row := range rows {
		reasonBytes += len(why[row])
	}
	rb.ReserveData(reasonBytes)
	for i, row := range rows {
		offsets[i] = b.Offsets[row]
		rb.Append(why[row])
	}
	ob := array.NewInt64Builder(r.cfg.Allocator)
	defer ob.Release()
	ob.AppendValues(offsets, nil)
	oa, ra := ob.NewArray(), rb.NewArray()
	defer oa.Release()
	defer ra.Release()
	fields := append(slices.Clone(sub.Schema().Fields()),
		arrow.Field{Name: OffsetColumn, Type: arrow.PrimitiveTypes.Int64},
		arrow.Field{Name: ReasonColumn, Type: arrow.BinaryTypes.String})
	cols := append(slices.Clone(sub.Columns()), oa, ra)
	rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(len(rows)))
	defer rec.Release()

	sinkName := r.cfg.Spec.Quarantine.Sink
	key := storage.QuarantineKey("", r.cfg.Spec.Name, date, b.Topic, b.Partition, b.First, b.Last)
	// Quarantine objects are kept for inspection and release, not scanned
	// by value: their string columns go without min/max statistics, and the
	// reason, the same on most rows, as a dictionary (together a quarter
	// less encoding time on the demo's quarantine, and smaller). Their
	// codec is the quarantine's own (snappy unless the spec says).
	codec := cmp.Or(r.cfg.Spec.Quarantine.Compression, DefaultQuarantineCompression)
	opts := storage.ParquetOptions{Compression: codec, Dictionary: []string{ReasonColumn}}
	for _, f := range fields {
		if f.Type.ID() == arrow.STRING || f.Type.ID() == arrow.LARGE_STRING || f.Type.ID() == arrow.BINARY {
			opts.NoStats = append(opts.NoStats, f.Name)
		}
	}
	var obj storage.Object
	if err := r.retry(ctx, "write "+key, func() error {
		var err error
		obj, err = storage.WriteParquet(ctx, r.cfg.Sinks[sinkName], key, rec, opts)
		return err
	}); err != nil {
		return nil, 0, err
	}
	return r.quarantineEvent(b, gs, offsets, sinkName, obj), int64(len(rows)), nil
}

// mergeRows returns the rows of groups, disjoint sets of rows of a batch
// of n rows, in ascending order: marked in a bitmap and read back, which
// takes time linear in n where sorting their concatenation took n log n.
func mergeRows(n int64, groups [][]int) []int {
	total := 0
	for _, g := range groups {
		total += len(g)
	}
	if len(groups) == 1 && slices.IsSorted(groups[0]) {
		return slices.Clone(groups[0])
	}
	marked := make([]uint64, (n+63)/64)
	for _, g := range groups {
		for _, row := range g {
			marked[row/64] |= 1 << (row % 64)
		}
	}
	rows := make([]int, 0, total)
	for w, bits := range marked {
		for bits != 0 {
			rows = append(rows, w*64+bits64.TrailingZeros64(bits))
			bits &= bits - 1
		}
	}
	return rows
}

// summarizeDeny makes one short reason for a quarantined group: the deny
// messages, deduplicated, without the executor prefixes.
func summarizeDeny(g *group) string {
	var msgs []string
	for _, d := range g.decisions {
		msgs = append(msgs, d.decision.Reasons...)
	}
	slices.Sort(msgs)
	msgs = slices.Compact(msgs)
	if len(msgs) == 0 {
		return "no executor allowed"
	}
	s := msgs[0]
	for _, m := range msgs[1:] {
		s += "; " + m
	}
	return s
}

// shortDeny names a quarantined group by the labels of the rules that
// denied it ("IN data: DPDP Act s.16 (IN)"), for summaries and metrics.
func shortDeny(g *group) string {
	// The labels of the rules that denied: a decision's Rules also name
	// obligation rules, but only deny rules start a reason.
	var rules []string
	for _, d := range g.decisions {
		for _, rule := range d.decision.Rules {
			for _, reason := range d.decision.Reasons {
				if strings.HasPrefix(reason, rule) {
					rules = append(rules, rule)
					break
				}
			}
		}
	}
	slices.Sort(rules)
	rules = slices.Compact(rules)
	what := g.jurisdiction
	if what == "" {
		what = "no jurisdiction"
	}
	if len(rules) == 0 {
		return what + " data: " + summarizeDeny(g)
	}
	return what + " data: " + strings.Join(rules, ", ")
}

// countDecisions tallies g's decisions by outcome and rule label.
func countDecisions(into map[DecisionKey]int64, g *group) {
	for _, d := range g.decisions {
		outcome := "deny"
		switch {
		case d.err != nil:
			outcome = "error"
		case d.decision.Allow:
			outcome = "allow"
		}
		if len(d.decision.Rules) == 0 {
			into[DecisionKey{Outcome: outcome}]++
		}
		for _, rule := range d.decision.Rules {
			into[DecisionKey{Outcome: outcome, Rule: rule}]++
		}
	}
}
