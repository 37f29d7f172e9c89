package transform

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/storage"
)

// Validate checks a spec's meaning: required sections, known types and
// ops, sound op parameters, and that every name a section refers to (a
// schema field, a sink) exists. It reports every problem in a
// *ValidationError (matching ErrInvalidSpec). Problems carry line numbers
// only when the spec came from Parse; Validate on a spec built in code
// leaves them 0. Validate does not modify s and accepts empty fields that
// SetDefaults would fill.
func (s *Spec) Validate() error {
	c := &specChecker{file: s.File}
	c.check(s)
	if len(c.problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: c.problems}
}

// specChecker collects semantic problems; pos, when set, locates them.
type specChecker struct {
	file   string
	pos    map[string]specPos
	keyPos map[string]specPos
	// broken holds sections that failed to decode: names they would
	// define are not reported as missing.
	broken   map[string]bool
	problems []Problem
}

func (c *specChecker) add(field, format string, args ...any) {
	p := Problem{File: c.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	// A value that is there is reported where it is; one that is missing,
	// at the key of the nearest section that is there (or at the list
	// item, which has no key).
	for q := field; c.pos != nil; q = parentPath(q) {
		at, ok := c.pos[q]
		if k, isKey := c.keyPos[q]; ok && isKey && q != field {
			at = k
		}
		if ok {
			p.Line, p.Column = at.line, at.col
			break
		}
		if q == "" {
			break
		}
	}
	c.problems = append(c.problems, p)
}

var (
	// identRE is what schema fields and features may be called: they
	// become Arrow, Parquet and SQL column names.
	identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// labelRE is what pipelines, executors, locations and sinks may be
	// called: they appear in object keys, consumer groups and metrics.
	labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// tagRE is what data classes and certifications may be: lower case,
	// because policies compare them exactly.
	tagRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	topicRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)
	isoRE   = regexp.MustCompile(`^[A-Z]{2}$`)
)

func (c *specChecker) check(s *Spec) {
	c.checkTop(s)
	c.checkSource(s)
	fields := c.checkSchema(s)
	passthrough := c.checkKeys(s, fields)
	c.checkFeatures(s, fields, passthrough)
	sinks := c.checkSinks(s)
	c.checkExecutors(s, sinks)
	switch {
	case s.Quarantine.Sink == "":
		c.add("quarantine.sink", "required: name the sink that keeps rows no executor may take")
	case !slices.Contains(sinks, s.Quarantine.Sink) && !c.broken["sinks"]:
		c.add("quarantine.sink", "unknown sink %q%s", s.Quarantine.Sink, didYouMean(s.Quarantine.Sink, sinks))
	}
	c.checkCodec("quarantine.compression", s.Quarantine.Compression)
	if s.Lineage.URL == "" {
		c.add("lineage.url", "required: a store URL for lineage (file:///abs/path or s3://bucket/prefix?endpoint=host:port)")
	} else if msg := checkStoreURL(s.Lineage.URL); msg != "" {
		c.add("lineage.url", "%s", msg)
	}
}

// checkCodec reports a Parquet codec the writer does not know; empty is
// the default.
func (c *specChecker) checkCodec(path, codec string) {
	if codec != "" && !slices.Contains(storage.Codecs, codec) {
		c.add(path, "unknown codec %q (want one of %s)%s", codec,
			strings.Join(storage.Codecs, ", "), didYouMean(codec, storage.Codecs))
	}
}

func (c *specChecker) checkTop(s *Spec) {
	switch {
	case s.Name == "":
		c.add("name", "required: the pipeline's name, used in object keys, lineage and metrics")
	case !labelRE.MatchString(s.Name):
		c.add("name", "%q: use letters, digits, '.', '_' and '-', starting with a letter or digit", s.Name)
	}
	if s.Purpose != "" && !tagRE.MatchString(s.Purpose) {
		c.add("purpose", "%q: use lower-case letters, digits and '-', as policies compare it exactly", s.Purpose)
	}
	b := s.Batching
	if b.MaxRecords < 0 {
		c.add("batching.max_records", "must not be negative")
	}
	if b.MaxBytes < 0 {
		c.add("batching.max_bytes", "must not be negative")
	}
	if b.MaxRecordBytes < 0 {
		c.add("batching.max_record_bytes", "must not be negative")
	}
	if b.Linger < 0 {
		c.add("batching.linger", "must not be negative")
	}
}

func (c *specChecker) checkSource(s *Spec) {
	src := s.Source
	if len(src.Brokers) == 0 {
		c.add("source.brokers", "required: list at least one Kafka broker as host:port")
	}
	for i, b := range src.Brokers {
		host, port, err := net.SplitHostPort(b)
		if _, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil {
			c.add(fmt.Sprintf("source.brokers[%d]", i), "%q: want host:port", b)
		}
	}
	switch {
	case src.Topic == "":
		c.add("source.topic", "required: the Kafka topic to consume")
	case !topicRE.MatchString(src.Topic):
		c.add("source.topic", "%q is not a Kafka topic name (letters, digits, '.', '_', '-')", src.Topic)
	}
	// A defaulted dead-letter topic inherits a bad topic name; say it once.
	if src.DeadLetterTopic != "" && (topicRE.MatchString(src.Topic) || src.DeadLetterTopic != src.Topic+".dlq") {
		switch {
		case !topicRE.MatchString(src.DeadLetterTopic):
			c.add("source.dead_letter_topic", "%q is not a Kafka topic name (letters, digits, '.', '_', '-')", src.DeadLetterTopic)
		case src.DeadLetterTopic == src.Topic:
			c.add("source.dead_letter_topic", "must differ from source.topic, or dead letters would be read again")
		}
	}
	if src.Format != "" && src.Format != "json" {
		c.add("source.format", "unknown format %q; only json is supported", src.Format)
	}
	if err := src.Security.Validate(); err != nil {
		c.add("source.security", "%v", err)
	}
	if o := src.StartOffset; o != "" && o != "earliest" && o != "latest" {
		c.add("source.start_offset", "unknown start offset %q; want earliest or latest%s", o,
			didYouMean(o, []string{"earliest", "latest"}))
	}
}

// schemaTypes are the field types a schema may use.
func schemaTypes() []string {
	return []string{"bool", "int32", "int64", "float32", "float64", "string", "timestamp"}
}

// typeAlias maps names people write from habit to the schema type meant.
func typeAlias(t string) string {
	switch strings.ToLower(t) {
	case "boolean":
		return "bool"
	case "int", "integer", "long", "bigint":
		return "int64"
	case "float", "double", "number", "decimal":
		return "float64"
	case "str", "text", "varchar", "utf8":
		return "string"
	case "datetime", "time", "date", "timestamp_us", "timestamptz":
		return "timestamp"
	}
	return ""
}

// checkSchema returns the schema's field types by name (unknown types
// map to "").
func (c *specChecker) checkSchema(s *Spec) map[string]string {
	fields := map[string]string{}
	if len(s.Schema) == 0 {
		c.add("schema", "required: list the fields decoded from each record")
	}
	first := map[string]int{}
	for i, f := range s.Schema {
		p := fmt.Sprintf("schema[%d]", i)
		switch {
		case f.Name == "":
			c.add(p+".name", "required")
		case !identRE.MatchString(f.Name):
			c.add(p+".name", "%q: use letters, digits and '_', starting with a letter or '_' (it becomes a column name)", f.Name)
		}
		if j, dup := first[f.Name]; dup && f.Name != "" {
			c.add(p+".name", "duplicate field name %q (also schema[%d])", f.Name, j)
		} else {
			first[f.Name] = i
		}
		switch {
		case f.Type == "":
			c.add(p+".type", "required: one of %s", strings.Join(schemaTypes(), ", "))
		case !slices.Contains(schemaTypes(), f.Type):
			hint := didYouMean(f.Type, schemaTypes())
			if a := typeAlias(f.Type); a != "" {
				hint = fmt.Sprintf("; did you mean %q?", a)
			}
			c.add(p+".type", "unknown type %q (want one of %s)%s", f.Type, strings.Join(schemaTypes(), ", "), hint)
		}
		if _, dup := fields[f.Name]; !dup {
			fields[f.Name] = f.Type
			if !slices.Contains(schemaTypes(), f.Type) {
				fields[f.Name] = ""
			}
		}
		if f.Path != "" && slices.Contains(strings.Split(f.Path, "."), "") {
			c.add(p+".path", "%q: want a dotted path such as merchant.mcc", f.Path)
		}
		c.checkTags(p+".classes", f.Classes, "class")
	}
	return fields
}

// checkTags checks a list of classes or certifications.
func (c *specChecker) checkTags(p string, tags []string, what string) {
	for j, t := range tags {
		q := fmt.Sprintf("%s[%d]", p, j)
		switch {
		case t == "":
			c.add(q, "empty %s", what)
		case !tagRE.MatchString(t):
			c.add(q, "%s %q: use lower case (%q), as policies compare it exactly", what, t, strings.ToLower(t))
		case slices.Index(tags, t) < j:
			c.add(q, "%s %q listed twice", what, t)
		}
	}
}

// checkKeys checks entity, event_time and residency and returns the
// passthrough column names.
func (c *specChecker) checkKeys(s *Spec, fields map[string]string) map[string]bool {
	names := make([]string, 0, len(s.Schema))
	for _, f := range s.Schema {
		names = append(names, f.Name)
	}
	ref := func(p, name string) bool {
		if _, ok := fields[name]; ok || c.broken["schema"] {
			return ok
		}
		c.add(p, "no schema field %q%s", name, didYouMean(name, names))
		return false
	}
	pass := map[string]bool{}
	for i, e := range s.Entity {
		p := fmt.Sprintf("entity[%d]", i)
		switch {
		case e == "":
			c.add(p, "empty field name")
		case pass[e]:
			c.add(p, "%q listed twice", e)
		case ref(p, e):
			pass[e] = true
		}
	}
	if t := s.EventTime; t != "" && ref("event_time", t) {
		pass[t] = true
		if typ := fields[t]; typ != "" && typ != "timestamp" {
			c.add("event_time", "field %q is %s; event time must be a timestamp field", t, typ)
		}
	}
	if j := s.Residency.Jurisdiction; j != "" && ref("residency.jurisdiction", j) {
		pass[j] = true
		if typ := fields[j]; typ != "" && typ != "string" {
			c.add("residency.jurisdiction", "field %q is %s; a jurisdiction is a string country code", j, typ)
		}
	}
	return pass
}

func (c *specChecker) checkFeatures(s *Spec, fields map[string]string, passthrough map[string]bool) {
	if len(s.Features) == 0 {
		c.add("features", "required: list at least one feature")
	}
	names := make([]string, 0, len(s.Schema))
	for _, f := range s.Schema {
		names = append(names, f.Name)
	}
	first := map[string]int{}
	for i, f := range s.Features {
		p := fmt.Sprintf("features[%d]", i)
		switch j, dup := first[f.Name]; {
		case f.Name == "":
			c.add(p+".name", "required: the output column's name")
		case !identRE.MatchString(f.Name):
			c.add(p+".name", "%q: use letters, digits and '_', starting with a letter or '_' (it becomes a column name)", f.Name)
		case dup:
			c.add(p+".name", "duplicate feature name %q (also features[%d])", f.Name, j)
		case passthrough[f.Name]:
			c.add(p+".name", "%q is also a passthrough column (entity, event_time or residency); pick another name", f.Name)
		default:
			first[f.Name] = i
		}
		// what describes the value each op receives; "" once unknown.
		kind, what := "", ""
		switch typ, ok := fields[f.Input]; {
		case f.Input == "":
			c.add(p+".input", "required: the schema field the feature reads")
		case !ok && c.broken["schema"]:
		case !ok:
			c.add(p+".input", "no schema field %q%s", f.Input, didYouMean(f.Input, names))
		default:
			kind, what = valueKind(typ), fmt.Sprintf("field %s is %s", f.Input, typ)
		}
		if len(f.Ops) == 0 {
			c.add(p+".ops", "required: list at least one op")
		}
		for j, op := range f.Ops {
			kind, what = c.checkOp(fmt.Sprintf("%s.ops[%d]", p, j), op, kind, what)
		}
	}
}

// valueKind groups schema types by what ops accept.
func valueKind(typ string) string {
	switch typ {
	case "int32", "int64", "float32", "float64":
		return "number"
	case "":
		return ""
	}
	return typ
}

// featureOps lists the op names a feature may use, for suggestions.
func featureOps() []string {
	return []string{"fill_missing", "clip", "log1p", "standardize", "min_max", "bucketize", "hash_bucket", "categorify"}
}

// checkOp checks one op given the kind of value it receives and returns
// the kind it produces.
func (c *specChecker) checkOp(p string, op gpuexec.Op, kind, what string) (string, string) {
	if _, ok := opParams(op.Kind); !ok {
		switch op.Kind {
		case gpuexec.OpMask, gpuexec.OpDrop, gpuexec.OpHash:
			c.add(p, "%s is an obligation that policy applies, not a feature op", op.Kind)
		case "":
			c.add(p, "missing op name")
		default:
			c.add(p, "unknown op %q (want one of %s)%s", op.Kind,
				strings.Join(featureOps(), ", "), didYouMean(string(op.Kind), featureOps()))
		}
		return "", ""
	}
	finite := func(name string, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			c.add(p+"."+name, "must be a finite number")
		}
	}
	switch op.Kind {
	case gpuexec.OpFillMissing:
		finite("value", op.Value)
	case gpuexec.OpClip:
		finite("min", op.Min)
		finite("max", op.Max)
		if op.Min > op.Max {
			c.add(p, "clip min %g is greater than max %g", op.Min, op.Max)
		}
	case gpuexec.OpMinMax:
		finite("min", op.Min)
		finite("max", op.Max)
		if op.Min >= op.Max {
			c.add(p, "min_max needs min below max, got min %g and max %g", op.Min, op.Max)
		}
	case gpuexec.OpStandardize:
		finite("mean", op.Mean)
		finite("std", op.Std)
		if !(op.Std > 0) {
			c.add(p+".std", "must be greater than 0, got %g", op.Std)
		}
	case gpuexec.OpBucketize:
		if len(op.Boundaries) == 0 {
			c.add(p+".boundaries", "list at least one boundary")
		}
		for k, b := range op.Boundaries {
			q := fmt.Sprintf("%s.boundaries[%d]", p, k)
			if math.IsNaN(b) || math.IsInf(b, 0) {
				c.add(q, "must be a finite number")
			} else if k > 0 && !(b > op.Boundaries[k-1]) {
				c.add(q, "boundaries must be sorted and distinct: %g follows %g", b, op.Boundaries[k-1])
			}
		}
	case gpuexec.OpHashBucket:
		if op.Buckets < 1 {
			c.add(p+".buckets", "must be at least 1, got %d", op.Buckets)
		}
	case gpuexec.OpCategorify:
		if len(op.Vocabulary) == 0 {
			c.add(p+".vocabulary", "list at least one category")
		}
		for k, v := range op.Vocabulary {
			if slices.Index(op.Vocabulary, v) < k {
				c.add(fmt.Sprintf("%s.vocabulary[%d]", p, k), "category %q listed twice", v)
			}
		}
	}

	next := fmt.Sprintf("the output of %s is a number", op.Kind)
	switch op.Kind {
	case gpuexec.OpHashBucket, gpuexec.OpCategorify:
		if kind != "" && kind != "string" {
			c.add(p, "%s needs a string input, but %s", op.Kind, what)
		}
	default:
		switch kind {
		case "string":
			c.add(p, "%s is a numeric op, but %s; start with hash_bucket or categorify", op.Kind, what)
		case "", "number":
		default:
			c.add(p, "%s is a numeric op, but %s", op.Kind, what)
		}
	}
	return "number", next
}

func (c *specChecker) checkSinks(s *Spec) []string {
	if len(s.Sinks) == 0 {
		c.add("sinks", "required: list at least one sink")
	}
	var names []string
	first := map[string]int{}
	for i, k := range s.Sinks {
		p := fmt.Sprintf("sinks[%d]", i)
		switch j, dup := first[k.Name]; {
		case k.Name == "":
			c.add(p+".name", "required")
		case !labelRE.MatchString(k.Name):
			c.add(p+".name", "%q: use letters, digits, '.', '_' and '-'", k.Name)
		case dup:
			c.add(p+".name", "duplicate sink name %q (also sinks[%d])", k.Name, j)
		default:
			first[k.Name] = i
			names = append(names, k.Name)
		}
		if k.URL == "" {
			c.add(p+".url", "required: file:///abs/path or s3://bucket/prefix?endpoint=host:port")
		} else if msg := checkStoreURL(k.URL); msg != "" {
			c.add(p+".url", "%s", msg)
		}
		c.checkCodec(p+".compression", k.Compression)
		formats := []string{FeatureFormatJSON, FeatureFormatArrow}
		if k.KafkaFormat != "" && !slices.Contains(formats, k.KafkaFormat) {
			c.add(p+".kafka_format", "unknown format %q (want one of %s)%s", k.KafkaFormat,
				strings.Join(formats, ", "), didYouMean(k.KafkaFormat, formats))
		}
		if k.KafkaTopic == "" && (k.KafkaFormat != "" || len(k.KafkaBrokers) > 0) {
			c.add(p+".kafka_topic", "required when kafka_format or kafka_brokers is set")
		}
	}
	return names
}

func (c *specChecker) checkExecutors(s *Spec, sinks []string) {
	if len(s.Executors) == 0 {
		c.add("executors", "required: list at least one executor")
	}
	first := map[string]int{}
	for i, e := range s.Executors {
		p := fmt.Sprintf("executors[%d]", i)
		switch j, dup := first[e.ID]; {
		case e.ID == "":
			c.add(p+".id", "required")
		case !labelRE.MatchString(e.ID):
			c.add(p+".id", "%q: use letters, digits, '.', '_' and '-'", e.ID)
		case dup:
			c.add(p+".id", "duplicate executor id %q (also executors[%d])", e.ID, j)
		default:
			first[e.ID] = i
		}
		kinds := []string{"cpu", "cuda", "remote"}
		switch {
		case e.Kind != "" && !slices.Contains(kinds, e.Kind):
			c.add(p+".kind", "unknown kind %q (want cpu, cuda or remote)%s", e.Kind, didYouMean(e.Kind, kinds))
		case e.Kind == "remote" && e.Endpoint == "":
			c.add(p+".endpoint", "required for a remote executor: its Arrow Flight address")
		case e.Kind != "remote" && e.Endpoint != "":
			c.add(p+".endpoint", "only a remote executor has an endpoint; set kind: remote or drop it")
		}
		loc := e.Location
		lp := p + ".location"
		if loc.Name != "" && loc.Name != e.ID && !labelRE.MatchString(loc.Name) {
			c.add(lp+".name", "%q: use letters, digits, '.', '_' and '-'", loc.Name)
		}
		switch loc.Kind {
		case "onprem":
		case "cloud":
			if loc.Provider == "" {
				c.add(lp+".provider", "required for a cloud location (aws, gcp, azure, ...)")
			}
			if loc.Region == "" {
				c.add(lp+".region", "required for a cloud location")
			}
		case "":
			c.add(lp+".kind", "required: onprem or cloud")
		default:
			c.add(lp+".kind", "unknown location kind %q; want onprem or cloud%s", loc.Kind,
				didYouMean(loc.Kind, []string{"onprem", "cloud"}))
		}
		switch {
		case loc.Jurisdiction == "":
			c.add(lp+".jurisdiction", "required: the ISO 3166-1 alpha-2 country whose law governs this location (e.g. DE)")
		case !isoRE.MatchString(loc.Jurisdiction):
			c.add(lp+".jurisdiction", "%q: want an ISO 3166-1 alpha-2 code in upper case, such as DE or US", loc.Jurisdiction)
		}
		c.checkTags(lp+".certifications", loc.Certifications, "certification")
		switch {
		case e.Sink == "":
			c.add(p+".sink", "required: the sink this executor writes features to")
		case !slices.Contains(sinks, e.Sink) && !c.broken["sinks"]:
			c.add(p+".sink", "unknown sink %q%s", e.Sink, didYouMean(e.Sink, sinks))
		}
	}
}

// checkStoreURL returns why raw is not a store URL, or "".
func checkStoreURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Sprintf("%q is not a URL", raw)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" {
			return fmt.Sprintf("%q: a file URL is file:///abs/path (three slashes)", raw)
		}
		if !path.IsAbs(u.Path) {
			return fmt.Sprintf("%q: want an absolute path, file:///abs/path", raw)
		}
	case "s3":
		if u.Host == "" {
			return fmt.Sprintf("%q: want s3://bucket/prefix?endpoint=host:port", raw)
		}
	default:
		return fmt.Sprintf("%q: want file:///abs/path or s3://bucket/prefix?endpoint=host:port", raw)
	}
	return ""
}
