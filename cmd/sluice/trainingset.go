package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/policy/rego"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/backend"
	"github.com/sluice-dev/sluice/transform"
)

// FeatureTimeColumn is the training-set column holding the event time of
// the feature row joined to each label (null when none qualified).
const FeatureTimeColumn = "feature_event_time"

// OutcomeTrainingSet is the sluice_outcome kind of a training-set event.
const OutcomeTrainingSet = "training_set"

// trainingResult is what `sluice training-set` prints (-o json).
type trainingResult struct {
	Out       string   `json:"out"`
	Key       string   `json:"key,omitempty"`
	Labels    int      `json:"labels"`
	Matched   int      `json:"matched"`
	Objects   int      `json:"objects_read"`
	Location  string   `json:"location"`
	RunID     string   `json:"run_id"`
	Chain     string   `json:"lineage_chain,omitempty"`
	Refused   bool     `json:"refused,omitempty"`
	Blocking  []blockr `json:"blocking_rows,omitempty"`
	SHA256    string   `json:"sha256,omitempty"`
	Bytes     int64    `json:"bytes,omitempty"`
	Decisions int      `json:"decisions"`
}

// blockr is a label row whose feature row the policy does not allow at the
// destination.
type blockr struct {
	Label        int      `json:"label_row"` // 1-based, in file order
	Entity       string   `json:"entity"`
	Jurisdiction string   `json:"jurisdiction"`
	Classes      []string `json:"classes,omitempty"`
	Object       string   `json:"object"`
	Reasons      []string `json:"reasons,omitempty"`
}

type labelRow struct {
	keys   []string // values of the entity columns, in entCols order
	at     time.Time
	labels []string
}

// featureObj is one feature object read, with the decisions its lineage
// event records.
type featureObj struct {
	ds        lineage.Dataset
	tbl       arrow.Table
	rec       arrow.RecordBatch
	decisions []lineage.Decision
}

type candidate struct {
	at     time.Time
	offset int64
	obj    int
	row    int
}

func cmdTrainingSet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("training-set", "training-set --spec SPEC --labels FILE --out DIR [--store URL] [--location LOC] [-o json]",
		`Builds a point-in-time correct training set. For every row of the labels
file (entity key column(s), a label timestamp column, label column(s)) it
joins the latest feature row of the pipeline whose event time is at or
before the label timestamp (an as-of join over the feature objects the
pipeline's lineage lists), and writes the result as one Parquet object to
--out (a store URL or a folder), plus a lineage event in the chain
"training-<pipeline>" listing every feature object read.

The labels file is CSV with a header or NDJSON. Its entity columns are the
spec's entity fields it has; --time-column names the label timestamp (RFC
3339); every other column is a label.

Residency: the policy is evaluated for every contributing feature row with
the destination location (--location, or the location whose sink is --out)
as the executor. If it denies any, nothing is written: the command lists the
blocking rows and exits 1.
`, stderr)
	specFile := fs.String("spec", "", "pipeline spec `FILE`")
	fs.StringVar(specFile, "f", "", "pipeline spec `FILE` (same as --spec)")
	store := fs.String("store", "", "lineage store `URL` (default: the spec's lineage.url)")
	labelsFile := fs.String("labels", "", "labels `FILE` (.csv or .ndjson/.jsonl)")
	outDir := fs.String("out", "", "destination: a store `URL` or a folder")
	location := fs.String("location", "", "destination location `NAME` (default: the location whose sink URL is --out)")
	timeCol := fs.String("time-column", "label_time", "labels column holding the label timestamp")
	policyDir := fs.String("policies", "", "policy `DIR` (default: the shipped policies)")
	signing := fs.String("signing-key", "", "lineage signing key `FILE` (default: the spec's lineage.signing_key)")
	var out outputFlag
	out.register(fs)
	asJSON, err := parseOutput(fs, &out, args)
	if err != nil {
		return err
	}
	if *specFile == "" || *labelsFile == "" || *outDir == "" {
		return fmt.Errorf("%w: training-set needs --spec, --labels and --out", errUsage)
	}
	spec, err := transform.Load(*specFile)
	if err != nil {
		return err
	}
	outURL := *outDir
	if !strings.Contains(outURL, "://") {
		abs, err := filepath.Abs(outURL)
		if err != nil {
			return err
		}
		outURL = "file://" + abs
	}
	dest, err := trainingDestination(spec, *location, outURL)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(*labelsFile)
	if err != nil {
		return err
	}
	entCols, labelCols, labels, err := readLabels(*labelsFile, raw, spec.Entity, *timeCol)
	if err != nil {
		return err
	}
	lurl := *store
	if lurl == "" {
		lurl = spec.Lineage.URL
	}
	lst, err := openLineageStore(ctx, lurl)
	if err != nil {
		return err
	}

	// Every feature object the pipeline's lineage lists.
	var objs []*featureObj
	defer func() {
		for _, o := range objs {
			if o.rec != nil {
				o.rec.Release()
			}
			if o.tbl != nil {
				o.tbl.Release()
			}
		}
	}()
	stores := map[string]storage.BucketReader{}
	err = lineage.Walk(ctx, lst, lineagePrefix, func(e lineage.Entry) error {
		ev := e.Event
		if e.Pipeline != spec.Name || ev.Run.Facets.Outcome == nil || ev.Run.Facets.Outcome.Kind != lineage.OutcomeFeatures {
			return nil
		}
		var decs []lineage.Decision
		if ev.Run.Facets.ResidencyDecision != nil {
			decs = ev.Run.Facets.ResidencyDecision.Decisions
		}
		for _, ds := range ev.Outputs {
			objs = append(objs, &featureObj{ds: ds, decisions: decs})
		}
		return nil
	})
	if err != nil {
		return err
	}
	byKey := map[string][]candidate{}
	for i, o := range objs {
		st := stores[o.ds.Namespace]
		if st == nil {
			s, err := backend.Open(ctx, o.ds.Namespace)
			if err != nil {
				return fmt.Errorf("feature store %s: %w", o.ds.Namespace, err)
			}
			stores[o.ds.Namespace], st = s, s
		}
		tbl, err := storage.ReadParquet(ctx, st, o.ds.Name, memory.DefaultAllocator)
		if err != nil {
			return fmt.Errorf("read %s: %w", o.ds.Name, err)
		}
		o.tbl = tbl
		o.rec, err = tableRecord(tbl)
		if err != nil {
			return fmt.Errorf("read %s: %w", o.ds.Name, err)
		}
		if err := indexObject(o.rec, i, entCols, spec.EventTime, byKey); err != nil {
			return fmt.Errorf("%s: %w", o.ds.Name, err)
		}
	}
	for _, cs := range byKey {
		sort.Slice(cs, func(a, b int) bool {
			if !cs[a].at.Equal(cs[b].at) {
				return cs[a].at.Before(cs[b].at)
			}
			return cs[a].offset < cs[b].offset
		})
	}

	// The as-of join: the latest feature row at or before each label time.
	match := make([]*candidate, len(labels))
	matched := 0
	for i, l := range labels {
		cs := byKey[strings.Join(l.keys, "\x00")]
		j := sort.Search(len(cs), func(k int) bool { return cs[k].at.After(l.at) })
		if j > 0 {
			match[i] = &cs[j-1]
			matched++
		}
	}

	// Residency: every contributing row must be allowed at the destination.
	decider, err := rego.New(ctx, rego.Config{FS: policySource(*policyDir)})
	if err != nil {
		return err
	}
	memo := policy.NewMemo(decider)
	destExec := policy.Executor{ID: dest.ID, Kind: dest.Location.Kind, Provider: dest.Location.Provider,
		Site: dest.Location.Site, Region: dest.Location.Region, Jurisdiction: dest.Location.Jurisdiction,
		Certifications: dest.Location.Certifications}
	type groupKey struct{ j, classes string }
	groups := map[groupKey]*lineage.Decision{}
	var blocking []blockr
	for i, m := range match {
		if m == nil {
			continue
		}
		o := objs[m.obj]
		j := stringAt(o.rec, spec.Residency.Jurisdiction, m.row)
		classes := classesFor(o.decisions, j)
		gk := groupKey{j, strings.Join(classes, ",")}
		d := groups[gk]
		if d == nil {
			in := policy.Input{
				Pipeline: policy.Pipeline{Name: spec.Name, Purpose: spec.Purpose},
				Data:     policy.Data{Jurisdiction: j, Region: policy.Region(j), Classes: classes},
				Executor: destExec,
			}
			dec, err := memo.Decide(ctx, in)
			if err != nil {
				dec.Allow = false
				dec.Reasons = append(dec.Reasons, "policy evaluation failed: "+err.Error())
			}
			d = &lineage.Decision{Jurisdiction: j, Classes: classes, Executor: dest.ID, Allow: dec.Allow,
				DecisionID: dec.DecisionID, Revision: dec.Revision, Reasons: dec.Reasons, Rules: dec.Rules,
				Obligations: lineage.Obligations{Mask: dec.Obligations.Mask, Drop: dec.Obligations.Drop, Hash: dec.Obligations.Hash}}
			groups[gk] = d
		}
		d.Rows++
		if !d.Allow {
			blocking = append(blocking, blockr{Label: i + 1, Entity: strings.Join(labels[i].keys, "/"),
				Jurisdiction: j, Classes: classes, Object: o.ds.Name, Reasons: d.Reasons})
		} else if len(d.Obligations.Mask)+len(d.Obligations.Drop)+len(d.Obligations.Hash) > 0 {
			// Obligations at the destination would have to be applied to
			// the joined features; refuse rather than write them as is.
			blocking = append(blocking, blockr{Label: i + 1, Entity: strings.Join(labels[i].keys, "/"),
				Jurisdiction: j, Classes: classes, Object: o.ds.Name,
				Reasons: []string{"the policy allows this location only with obligations (mask/drop/hash) a training set does not apply"}})
		}
	}
	sum := sha256.Sum256(raw)
	runID := lineage.RunIDFor("training-set", spec.Name, hex.EncodeToString(sum[:]), dest.Location.Name, outURL)
	res := trainingResult{Out: outURL, Labels: len(labels), Matched: matched, Objects: len(objs),
		Location: dest.Location.Name, RunID: runID, Decisions: len(groups)}
	if len(blocking) > 0 {
		res.Refused, res.Blocking = true, blocking
		if asJSON {
			writeJSON(stdout, res)
		} else {
			fmt.Fprintf(stdout, "refused: %d of %d label rows join features the policy does not allow in %s (%s):\n",
				len(blocking), len(labels), dest.Location.Name, dest.Location.Jurisdiction)
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "LABEL ROW\tENTITY\tJURISDICTION\tCLASSES\tOBJECT\tWHY\n")
			for _, b := range blocking {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", b.Label, b.Entity, orDash(b.Jurisdiction),
					orDash(strings.Join(b.Classes, ",")), b.Object, strings.Join(b.Reasons, "; "))
			}
			tw.Flush()
		}
		return errFailed
	}

	rec, err := buildTrainingSet(objs, spec, entCols, labelCols, *timeCol, labels, match)
	if err != nil {
		return err
	}
	defer rec.Release()
	dst, err := backend.Open(ctx, outURL)
	if err != nil {
		return fmt.Errorf("%w: --out: %v", errUsage, err)
	}
	key := fmt.Sprintf("training/%s/%s.parquet", spec.Name, runID)
	obj, err := storage.WriteParquet(ctx, dst, key, rec, storage.ParquetOptions{})
	if err != nil {
		return err
	}
	res.Key, res.SHA256, res.Bytes = obj.Key, obj.SHA256, obj.Bytes

	// Lineage: inputs are the labels file and every feature object read.
	keyPath := *signing
	if keyPath == "" {
		keyPath = spec.Lineage.SigningKey
	}
	if keyPath == "" {
		return fmt.Errorf("%w: no lineage signing key: set lineage.signing_key in the spec or pass --signing-key", errUsage)
	}
	sk, err := lineage.LoadOrCreateKey(keyPath)
	if err != nil {
		return err
	}
	w, err := lineage.NewWriter(lst, lineage.WriterConfig{Prefix: lineagePrefix, Pipeline: spec.Name, Key: sk})
	if err != nil {
		return err
	}
	ev := lineage.NewEvent("", "sluice", spec.Name+".training-set", time.Now())
	ev.Run.RunID = runID
	labelsAbs, _ := filepath.Abs(*labelsFile)
	ev.AddInput(lineage.Dataset{Namespace: "file", Name: labelsAbs})
	for _, o := range objs {
		in := lineage.Dataset{Namespace: o.ds.Namespace, Name: o.ds.Name}
		in.InputFacets.InputStatistics = &lineage.InputStatisticsFacet{RowCount: o.rec.NumRows()}
		ev.AddInput(in)
	}
	gks := make([]groupKey, 0, len(groups))
	for k := range groups {
		gks = append(gks, k)
	}
	slices.SortFunc(gks, func(a, b groupKey) int { return strings.Compare(a.j+"\x00"+a.classes, b.j+"\x00"+b.classes) })
	for _, k := range gks {
		ev.AddDecision(*groups[k])
	}
	ev.SetOutcome(OutcomeTrainingSet, map[string]int64{"matched": int64(matched), "unmatched": int64(len(labels) - matched)})
	outDS := lineage.Dataset{Namespace: outURL, Name: obj.Key}
	outDS.OutputFacets.Object = &lineage.ObjectFacet{Key: obj.Key, Bytes: obj.Bytes, SHA256: obj.SHA256, Rows: obj.Rows}
	outDS.OutputFacets.OutputStatistics = &lineage.OutputStatisticsFacet{RowCount: obj.Rows, Size: obj.Bytes, FileCount: 1}
	ev.AddOutput(outDS)
	res.Chain = "training-" + spec.Name
	if _, err := w.Append(ctx, res.Chain, []*lineage.Event{ev}); err != nil {
		return fmt.Errorf("training set %s written, but its lineage was not: %w", obj.Key, err)
	}
	if asJSON {
		writeJSON(stdout, res)
	} else {
		fmt.Fprintf(stdout, "wrote %s/%s: %d label rows, %d with features, from %d feature objects; lineage chain %s, run %s\n",
			outURL, obj.Key, len(labels), matched, len(objs), res.Chain, runID)
	}
	return nil
}

// trainingDestination is the executor whose location receives the
// training set: the one named by location, or the one whose sink is out.
func trainingDestination(spec *transform.Spec, location, out string) (transform.Executor, error) {
	for _, ex := range spec.Executors {
		if location != "" && ex.Location.Name == location {
			return ex, nil
		}
		if location == "" {
			if s, ok := spec.Sink(ex.Sink); ok && strings.TrimSuffix(s.URL, "/") == strings.TrimSuffix(out, "/") {
				return ex, nil
			}
		}
	}
	var names []string
	for _, ex := range spec.Executors {
		names = append(names, ex.Location.Name)
	}
	if location != "" {
		return transform.Executor{}, fmt.Errorf("%w: --location %q is not a location of the spec (%s)", errUsage, location, strings.Join(names, ", "))
	}
	return transform.Executor{}, fmt.Errorf("%w: --out is no sink of the spec; name the destination with --location (%s)", errUsage, strings.Join(names, ", "))
}

// readLabels parses a CSV (with header) or NDJSON labels file.
func readLabels(name string, raw []byte, entity []string, timeCol string) (entCols, labelCols []string, rows []labelRow, err error) {
	var header []string
	var recs []map[string]string
	ext := strings.ToLower(filepath.Ext(name))
	if ext == ".ndjson" || ext == ".jsonl" || ext == ".json" {
		seen := map[string]bool{}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for n := 1; sc.Scan(); n++ {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			var m map[string]any
			d := json.NewDecoder(bytes.NewReader(line))
			d.UseNumber()
			if err := d.Decode(&m); err != nil {
				return nil, nil, nil, fmt.Errorf("%s:%d: %v", name, n, err)
			}
			r := map[string]string{}
			for k, v := range m {
				if !seen[k] {
					seen[k] = true
					header = append(header, k)
				}
				if v != nil {
					r[k] = fmt.Sprint(v)
				}
			}
			recs = append(recs, r)
		}
		if err := sc.Err(); err != nil {
			return nil, nil, nil, err
		}
		sort.Strings(header)
	} else {
		all, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %v", name, err)
		}
		if len(all) == 0 {
			return nil, nil, nil, fmt.Errorf("%s: empty labels file", name)
		}
		header = all[0]
		for _, rec := range all[1:] {
			r := map[string]string{}
			for i, v := range rec {
				if i < len(header) && v != "" {
					r[header[i]] = v
				}
			}
			recs = append(recs, r)
		}
	}
	for _, e := range entity {
		if slices.Contains(header, e) {
			entCols = append(entCols, e)
		}
	}
	if len(entCols) == 0 {
		return nil, nil, nil, fmt.Errorf("%w: %s has none of the entity columns %v", errUsage, name, entity)
	}
	if !slices.Contains(header, timeCol) {
		return nil, nil, nil, fmt.Errorf("%w: %s has no label time column %q (--time-column)", errUsage, name, timeCol)
	}
	for _, h := range header {
		if h != timeCol && !slices.Contains(entCols, h) {
			labelCols = append(labelCols, h)
		}
	}
	for i, r := range recs {
		t, err := time.Parse(time.RFC3339Nano, r[timeCol])
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: label row %d: %s %q is not RFC 3339", name, i+1, timeCol, r[timeCol])
		}
		lr := labelRow{at: t}
		for _, e := range entCols {
			lr.keys = append(lr.keys, r[e])
		}
		for _, c := range labelCols {
			lr.labels = append(lr.labels, r[c])
		}
		rows = append(rows, lr)
	}
	return entCols, labelCols, rows, nil
}

// tableRecord makes one record batch of a table read back from Parquet.
func tableRecord(tbl arrow.Table) (arrow.RecordBatch, error) {
	cols := make([]arrow.Array, tbl.NumCols())
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for i := range cols {
		chunks := tbl.Column(i).Data().Chunks()
		if len(chunks) == 1 {
			chunks[0].Retain()
			cols[i] = chunks[0]
			continue
		}
		if len(chunks) == 0 {
			cols[i] = array.MakeArrayOfNull(memory.DefaultAllocator, tbl.Schema().Field(i).Type, 0)
			continue
		}
		c, err := array.Concatenate(chunks, memory.DefaultAllocator)
		if err != nil {
			return nil, err
		}
		cols[i] = c
	}
	return array.NewRecordBatch(tbl.Schema(), cols, tbl.NumRows()), nil
}

// indexObject adds every row of rec with all entity columns set to byKey.
func indexObject(rec arrow.RecordBatch, obj int, entCols []string, eventTime string, byKey map[string][]candidate) error {
	tcol, err := colOf(rec, eventTime)
	if err != nil {
		return err
	}
	ts, ok := tcol.(*array.Timestamp)
	if !ok {
		return fmt.Errorf("event time column %s is %s, want timestamp", eventTime, tcol.DataType())
	}
	unit := ts.DataType().(*arrow.TimestampType).Unit
	var offs *array.Int64
	if idx := rec.Schema().FieldIndices(transform.OffsetColumn); len(idx) > 0 {
		offs, _ = rec.Column(idx[0]).(*array.Int64)
	}
	keys := make([]arrow.Array, len(entCols))
	for i, e := range entCols {
		if keys[i], err = colOf(rec, e); err != nil {
			return err
		}
	}
	parts := make([]string, len(entCols))
rows:
	for r := 0; r < int(rec.NumRows()); r++ {
		if ts.IsNull(r) {
			continue
		}
		for i, k := range keys {
			if k.IsNull(r) {
				continue rows
			}
			parts[i] = k.ValueStr(r)
		}
		c := candidate{at: ts.Value(r).ToTime(unit), obj: obj, row: r}
		if offs != nil {
			c.offset = offs.Value(r)
		}
		k := strings.Join(parts, "\x00")
		byKey[k] = append(byKey[k], c)
	}
	return nil
}

func colOf(rec arrow.RecordBatch, name string) (arrow.Array, error) {
	idx := rec.Schema().FieldIndices(name)
	if len(idx) == 0 {
		return nil, fmt.Errorf("feature object has no column %q", name)
	}
	return rec.Column(idx[0]), nil
}

func stringAt(rec arrow.RecordBatch, col string, row int) string {
	c, err := colOf(rec, col)
	if err != nil || c.IsNull(row) {
		return ""
	}
	return c.ValueStr(row)
}

// classesFor is the union of the data classes of the row groups of
// jurisdiction j that an event's decisions record: the output keeps no
// per-row classes, so a row counts as carrying every class its group could
// have (the stricter reading).
func classesFor(decs []lineage.Decision, j string) []string {
	var out []string
	for _, d := range decs {
		if d.Jurisdiction == j {
			out = append(out, d.Classes...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// buildTrainingSet lays out the training set: entity columns, the label
// time, the labels, the joined features and their event time.
func buildTrainingSet(objs []*featureObj, spec *transform.Spec, entCols, labelCols []string, timeCol string, labels []labelRow, match []*candidate) (arrow.RecordBatch, error) {
	mem := memory.DefaultAllocator
	var fields []arrow.Field
	var cols []arrow.Array
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	str := func(name string, get func(i int) (string, bool)) {
		b := array.NewStringBuilder(mem)
		defer b.Release()
		for i := range labels {
			if v, ok := get(i); ok {
				b.Append(v)
			} else {
				b.AppendNull()
			}
		}
		fields = append(fields, arrow.Field{Name: name, Type: arrow.BinaryTypes.String, Nullable: true})
		cols = append(cols, b.NewArray())
	}
	for k, e := range entCols {
		str(e, func(i int) (string, bool) { return labels[i].keys[k], true })
	}
	tsType := arrow.FixedWidthTypes.Timestamp_us
	tb := array.NewTimestampBuilder(mem, tsType.(*arrow.TimestampType))
	for _, l := range labels {
		tb.Append(arrow.Timestamp(l.at.UnixMicro()))
	}
	fields = append(fields, arrow.Field{Name: timeCol, Type: tsType})
	cols = append(cols, tb.NewArray())
	tb.Release()
	for k, c := range labelCols {
		numeric := true
		for _, l := range labels {
			if l.labels[k] == "" {
				continue
			}
			if _, err := strconv.ParseFloat(l.labels[k], 64); err != nil {
				numeric = false
				break
			}
		}
		if !numeric {
			str(c, func(i int) (string, bool) { return labels[i].labels[k], labels[i].labels[k] != "" })
			continue
		}
		fb := array.NewFloat64Builder(mem)
		for _, l := range labels {
			if l.labels[k] == "" {
				fb.AppendNull()
				continue
			}
			v, _ := strconv.ParseFloat(l.labels[k], 64)
			fb.Append(v)
		}
		fields = append(fields, arrow.Field{Name: c, Type: arrow.PrimitiveTypes.Float64, Nullable: true})
		cols = append(cols, fb.NewArray())
		fb.Release()
	}
	for _, f := range spec.Features {
		var typ arrow.DataType
		for _, o := range objs {
			if idx := o.rec.Schema().FieldIndices(f.Name); len(idx) > 0 {
				typ = o.rec.Schema().Field(idx[0]).Type
				break
			}
		}
		if typ == nil {
			continue
		}
		b := array.NewBuilder(mem, typ)
		for _, m := range match {
			if m == nil {
				b.AppendNull()
				continue
			}
			idx := objs[m.obj].rec.Schema().FieldIndices(f.Name)
			if len(idx) == 0 {
				b.AppendNull()
				continue
			}
			col := objs[m.obj].rec.Column(idx[0])
			if !arrow.TypeEqual(col.DataType(), typ) {
				b.Release()
				return nil, fmt.Errorf("feature %s has type %s in one object and %s in another", f.Name, typ, col.DataType())
			}
			if col.IsNull(m.row) {
				b.AppendNull()
				continue
			}
			switch c := col.(type) {
			case *array.Float64:
				b.(*array.Float64Builder).Append(c.Value(m.row))
			case *array.Int64:
				b.(*array.Int64Builder).Append(c.Value(m.row))
			default:
				if err := b.AppendValueFromString(col.ValueStr(m.row)); err != nil {
					b.Release()
					return nil, fmt.Errorf("feature %s: %w", f.Name, err)
				}
			}
		}
		fields = append(fields, arrow.Field{Name: f.Name, Type: typ, Nullable: true})
		cols = append(cols, b.NewArray())
		b.Release()
	}
	ft := array.NewTimestampBuilder(mem, tsType.(*arrow.TimestampType))
	for _, m := range match {
		if m == nil {
			ft.AppendNull()
		} else {
			ft.Append(arrow.Timestamp(m.at.UnixMicro()))
		}
	}
	fields = append(fields, arrow.Field{Name: FeatureTimeColumn, Type: tsType, Nullable: true})
	cols = append(cols, ft.NewArray())
	ft.Release()
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(len(labels))), nil
}
