package transform

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/gpuexec"
	"go.yaml.in/yaml/v3"
)

const (
	// maxSpecBytes bounds what Parse reads; real specs are a few KiB.
	maxSpecBytes = 4 << 20
	// maxSpecNodes bounds the nodes Parse visits, so aliases that fan out
	// (a "billion laughs" file) cannot make it run for long.
	maxSpecNodes = 200_000
)

// Load reads the spec at path and parses it with Parse. Read errors are
// wrapped; an invalid spec returns a *ValidationError.
func Load(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("transform: load spec: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes a YAML spec, fills in the documented defaults and runs
// Validate. file names the source in problems and is kept in Spec.File.
// Every problem found, from unknown keys and wrong types to references to
// missing fields and sinks, comes back at once in a *ValidationError (which
// matches ErrInvalidSpec), each with its line and column. A file holds one
// YAML document of at most 4 MiB; anchors, aliases and merge keys (<<) work.
func Parse(file string, data []byte) (*Spec, error) {
	d := &specDecoder{
		file:   file,
		pos:    map[string]specPos{},
		keyPos: map[string]specPos{},
		failed: map[string]bool{},
		budget: maxSpecNodes,
	}
	root := d.document(data)
	if root == nil {
		return nil, &ValidationError{Problems: d.problems}
	}
	s := &Spec{File: file}
	d.decode(root, "", reflect.ValueOf(s).Elem())
	if d.exhausted {
		return nil, &ValidationError{Problems: d.problems}
	}
	s.SetDefaults()

	c := &specChecker{file: file, pos: d.pos, keyPos: d.keyPos, broken: d.failed}
	c.check(s)
	problems := d.problems
	for _, p := range c.problems {
		if !d.under(p.Field) && !d.failedBelow(p.Field) {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		sortProblems(problems)
		return nil, &ValidationError{Problems: problems}
	}
	return s, nil
}

// SetDefaults fills in the defaults documented on the Spec types; Parse
// calls it. It only sets fields that are empty. A location without a name
// is named after its executor.
func (s *Spec) SetDefaults() {
	if s.Source.Group == "" && s.Name != "" {
		s.Source.Group = "sluice-" + s.Name
	}
	if s.Source.Format == "" {
		s.Source.Format = "json"
	}
	if s.Source.StartOffset == "" {
		s.Source.StartOffset = "earliest"
	}
	if s.Source.DeadLetterTopic == "" && s.Source.Topic != "" {
		s.Source.DeadLetterTopic = s.Source.Topic + ".dlq"
	}
	if s.Batching.MaxRecords == 0 {
		s.Batching.MaxRecords = 20000 // kafka.DefaultMaxRecords
	}
	if s.Batching.MaxBytes == 0 {
		s.Batching.MaxBytes = 16 << 20
	}
	if s.Batching.MaxRecordBytes == 0 {
		s.Batching.MaxRecordBytes = 1 << 20
	}
	if s.Batching.Linger == 0 {
		s.Batching.Linger = 500 * time.Millisecond
	}
	for i := range s.Schema {
		if s.Schema[i].Path == "" {
			s.Schema[i].Path = s.Schema[i].Name
		}
	}
	for i := range s.Executors {
		e := &s.Executors[i]
		if e.Kind == "" {
			e.Kind = "cpu"
		}
		if e.Location.Name == "" {
			e.Location.Name = e.ID
		}
	}
	for i := range s.Sinks {
		if s.Sinks[i].Compression == "" {
			s.Sinks[i].Compression = "zstd"
		}
	}
	if s.Quarantine.Compression == "" {
		s.Quarantine.Compression = DefaultQuarantineCompression
	}
}

// specPos is a 1-based line and column in the spec file.
type specPos struct{ line, col int }

// specDecoder walks a yaml.Node tree into a Spec, recording where each
// value came from (for the semantic checks that run later) and every
// problem it meets along the way.
type specDecoder struct {
	file string
	// pos locates each decoded value by path; keyPos locates the key that
	// introduced it, which is where a missing child is best reported.
	pos      map[string]specPos
	keyPos   map[string]specPos
	problems []Problem
	// failed holds the paths that could not be decoded; semantic problems
	// at or under them would only repeat the same mistake.
	failed    map[string]bool
	budget    int
	exhausted bool
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data and returns its root node, or nil after recording
// why there is none.
func (d *specDecoder) document(data []byte) *yaml.Node {
	if len(data) > maxSpecBytes {
		d.problems = append(d.problems, Problem{File: d.file,
			Msg: fmt.Sprintf("spec is %d bytes; the limit is %d", len(data), maxSpecBytes)})
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.problems = append(d.problems, Problem{File: d.file,
				Msg: "spec is empty; it needs name, source, schema, features, executors, sinks and lineage"})
			return nil
		}
		d.syntax(err)
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntax(err)
		return nil
	case len(extra.Content) > 0 && !nullNode(extra.Content[0]):
		n := extra.Content[0]
		d.problems = append(d.problems, Problem{File: d.file, Line: n.Line, Column: n.Column,
			Msg: "a spec file holds one YAML document; remove the second one (after ---)"})
		return nil
	}
	if len(doc.Content) == 0 || nullNode(doc.Content[0]) {
		d.problems = append(d.problems, Problem{File: d.file,
			Msg: "spec is empty; it needs name, source, schema, features, executors, sinks and lineage"})
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		d.problems = append(d.problems, Problem{File: d.file, Line: root.Line, Column: root.Column,
			Msg: "a spec is a mapping of keys (name, source, schema, ...), not " + nodeDesc(root)})
		return nil
	}
	return root
}

func (d *specDecoder) syntax(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if yamlParserProblem(msg) {
			// The YAML library reports its parser's (not its scanner's)
			// errors with a 0-based line: the line before the construct
			// that failed.
			line++
		}
	}
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Msg: "YAML syntax: " + msg})
}

// yamlParserProblem reports whether msg is one the YAML library's parser
// (as opposed to its scanner) raises.
func yamlParserProblem(msg string) bool {
	switch msg {
	case "did not find expected <stream-start>", "did not find expected <document start>",
		"did not find expected node content", "did not find expected '-' indicator",
		"did not find expected key", "did not find expected ',' or ']'",
		"did not find expected ',' or '}'", "found undefined tag handle",
		"found duplicate %YAML directive", "found incompatible YAML document",
		"found duplicate %TAG directive":
		return true
	}
	return false
}

func (d *specDecoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.failed[path] = true
	d.problems = append(d.problems, Problem{File: d.file, Line: n.Line, Column: n.Column,
		Field: path, Msg: fmt.Sprintf(format, args...)})
}

// under reports whether path is at or below a path that failed to decode.
func (d *specDecoder) under(path string) bool {
	for p := path; ; p = parentPath(p) {
		if d.failed[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// failedBelow reports whether a parameter of the op at path failed to
// decode: checks that compare an op's parameters (clip's min and max, an
// op's input type) would then compare against a value that is not there.
func (d *specDecoder) failedBelow(path string) bool {
	if !strings.HasSuffix(path, "]") || !strings.Contains(path, ".ops[") {
		return false
	}
	for p := range d.failed {
		if strings.HasPrefix(p, path+".") {
			return true
		}
	}
	return false
}

// resolve follows aliases and charges the node budget.
func (d *specDecoder) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	d.charge(1, n)
	return n
}

// charge spends k nodes of the budget, noting once when it runs out.
func (d *specDecoder) charge(k int, at *yaml.Node) {
	d.budget -= k
	if d.budget < 0 && !d.exhausted {
		d.exhausted = true
		d.problems = append(d.problems, Problem{File: d.file, Line: at.Line, Column: at.Column,
			Msg: fmt.Sprintf("spec expands to more than %d nodes (aliases?)", maxSpecNodes)})
	}
}

var durationType = reflect.TypeFor[time.Duration]()

// decode sets v from n; path names v in problems ("" for the root).
func (d *specDecoder) decode(n *yaml.Node, path string, v reflect.Value) {
	n = d.resolve(n)
	if d.exhausted {
		return
	}
	d.pos[path] = specPos{n.Line, n.Column}
	if nullNode(n) {
		return
	}
	if v.Type() == durationType {
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			d.fail(n, path, "want a duration such as 250ms or 2s, got %s", nodeDesc(n))
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.fail(n, path, "want a duration such as 250ms or 2s, got %q", n.Value)
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a string, got %s", nodeDesc(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.fail(n, path, "want true or false, got %s", nodeDesc(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.fail(n, path, "want a whole number, got %s", nodeDesc(n))
			return
		}
		if v.OverflowInt(i) {
			d.fail(n, path, "%d is too large", i)
			return
		}
		v.SetInt(i)
	case reflect.Float64, reflect.Float32:
		var f float64
		tag := n.ShortTag()
		if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil {
			d.fail(n, path, "want a number, got %s", nodeDesc(n))
			return
		}
		v.SetFloat(f)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, got %s", nodeDesc(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			d.decode(e, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
		}
		v.Set(s)
	case reflect.Struct:
		d.decodeStruct(n, path, v)
	default:
		// Only reachable if spec.go gains a field of a kind not handled
		// above; say so rather than silently dropping the value.
		d.fail(n, path, "cannot decode into %s", v.Type())
	}
}

// specKeys maps a struct's YAML keys to field indexes. Feature's ops are
// tagged "-" (they decode through decodeOps) and are added here.
func specKeys(t reflect.Type) (names []string, index map[string]int) {
	index = map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		names = append(names, name)
		index[name] = i
	}
	if t == reflect.TypeFor[Feature]() {
		names = append(names, "ops")
	}
	return names, index
}

func (d *specDecoder) decodeStruct(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of keys, got %s", nodeDesc(n))
		return
	}
	names, index := specKeys(v.Type())
	kvs := d.pairs(n, path)
	present := map[string]bool{}
	for _, kv := range kvs {
		present[kv.key.Value] = true
	}
	for _, kv := range kvs {
		key := kv.key.Value
		child := joinPath(path, key)
		d.keyPos[child] = specPos{kv.key.Line, kv.key.Column}
		if key == "ops" && v.Type() == reflect.TypeFor[Feature]() {
			ops := d.decodeOps(kv.val, child)
			v.FieldByName("Ops").Set(reflect.ValueOf(ops))
			continue
		}
		i, ok := index[key]
		if !ok {
			d.fail(kv.key, child, "unknown key %q%s", key, didYouMean(key, names))
			if s := closestName(key, names); s != "" && !present[s] {
				// A misspelt key: "jurisdiction: required" would say the
				// same thing again.
				d.failed[joinPath(path, s)] = true
			}
			continue
		}
		d.decode(kv.val, child, v.Field(i))
	}
}

type specPair struct{ key, val *yaml.Node }

// pairs lists a mapping's entries, expanding YAML merge keys (<<: *base),
// with explicit keys overriding merged ones, and reporting repeated keys.
func (d *specDecoder) pairs(n *yaml.Node, path string) []specPair {
	var out, merged []specPair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be plain names, got %s", nodeDesc(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(val, path)...)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, joinPath(path, k.Value), "key %q repeated (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, specPair{k, val})
	}
	// Merged entries are copies, so they count against the budget too:
	// merges of merges of aliases would otherwise multiply unchecked.
	d.charge(len(merged), n)
	if d.exhausted {
		return nil
	}
	for _, kv := range merged {
		if _, ok := seen[kv.key.Value]; !ok {
			seen[kv.key.Value] = kv.key
			out = append(out, kv)
		}
	}
	return out
}

func (d *specDecoder) mergeSources(val *yaml.Node, path string) []specPair {
	val = d.resolve(val)
	if d.exhausted {
		return nil
	}
	switch val.Kind {
	case yaml.MappingNode:
		return d.pairs(val, path)
	case yaml.SequenceNode:
		var out []specPair
		for _, e := range val.Content {
			e = d.resolve(e)
			if d.exhausted {
				return nil
			}
			if e.Kind != yaml.MappingNode {
				d.fail(e, path, "<< merges mappings, got %s", nodeDesc(e))
				continue
			}
			out = append(out, d.pairs(e, path)...)
		}
		return out
	}
	d.fail(val, path, "<< merges mappings, got %s", nodeDesc(val))
	return nil
}

// opParams lists the parameters each feature op takes; all are required.
// ok is false for names that are not feature ops.
func opParams(k gpuexec.OpKind) (params []string, ok bool) {
	switch k {
	case gpuexec.OpLog1p:
		return nil, true
	case gpuexec.OpFillMissing:
		return []string{"value"}, true
	case gpuexec.OpClip, gpuexec.OpMinMax:
		return []string{"min", "max"}, true
	case gpuexec.OpStandardize:
		return []string{"mean", "std"}, true
	case gpuexec.OpBucketize:
		return []string{"boundaries"}, true
	case gpuexec.OpHashBucket:
		return []string{"buckets"}, true
	case gpuexec.OpCategorify:
		return []string{"vocabulary"}, true
	}
	return nil, false
}

// opField maps an op parameter to its field in gpuexec.Op.
func opField(op *gpuexec.Op, param string) reflect.Value {
	var p any
	switch param {
	case "value":
		p = &op.Value
	case "min":
		p = &op.Min
	case "max":
		p = &op.Max
	case "mean":
		p = &op.Mean
	case "std":
		p = &op.Std
	case "boundaries":
		p = &op.Boundaries
	case "buckets":
		p = &op.Buckets
	case "vocabulary":
		p = &op.Vocabulary
	default:
		return reflect.Value{}
	}
	return reflect.ValueOf(p).Elem()
}

// decodeOps reads a feature's op list. Unknown op names are kept (as the
// Kind) so the checker reports them once, with a suggestion; parameters
// are checked here because only the YAML shows whether one was given.
func (d *specDecoder) decodeOps(n *yaml.Node, path string) []gpuexec.Op {
	n = d.resolve(n)
	if d.exhausted {
		return nil
	}
	d.pos[path] = specPos{n.Line, n.Column}
	if nullNode(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list of ops (log1p, {op: clip, min: 0, max: 1}, ...), got %s", nodeDesc(n))
		return nil
	}
	ops := make([]gpuexec.Op, len(n.Content))
	for i, e := range n.Content {
		ops[i] = d.decodeOp(e, fmt.Sprintf("%s[%d]", path, i))
	}
	return ops
}

func (d *specDecoder) decodeOp(n *yaml.Node, path string) gpuexec.Op {
	n = d.resolve(n)
	if d.exhausted {
		return gpuexec.Op{}
	}
	d.pos[path] = specPos{n.Line, n.Column}
	switch n.Kind {
	case yaml.ScalarNode:
		if nullNode(n) {
			d.fail(n, path, "empty op")
			return gpuexec.Op{}
		}
		op := gpuexec.Op{Kind: gpuexec.OpKind(n.Value)}
		if params, ok := opParams(op.Kind); ok && len(params) > 0 {
			d.fail(n, path, "%s needs %s: write {op: %s, %s}", op.Kind,
				strings.Join(params, " and "), op.Kind, paramExample(params))
		}
		return op
	case yaml.MappingNode:
	default:
		d.fail(n, path, "want an op name or a mapping with key op, got %s", nodeDesc(n))
		return gpuexec.Op{}
	}

	kvs := d.pairs(n, path)
	var op gpuexec.Op
	var kindNode *yaml.Node
	for _, kv := range kvs {
		if kv.key.Value == "op" {
			kindNode = d.resolve(kv.val)
		}
	}
	if kindNode == nil {
		d.fail(n, path, "missing key op (the op's name, such as clip)")
		return op
	}
	if kindNode.Kind != yaml.ScalarNode || nullNode(kindNode) {
		d.fail(kindNode, joinPath(path, "op"), "want an op name, got %s", nodeDesc(kindNode))
		return op
	}
	d.pos[joinPath(path, "op")] = specPos{kindNode.Line, kindNode.Column}
	op.Kind = gpuexec.OpKind(kindNode.Value)
	params, known := opParams(op.Kind)
	if !known {
		return op // the checker reports the unknown name
	}
	given := map[string]bool{}
	for _, kv := range kvs {
		key := kv.key.Value
		if key == "op" {
			continue
		}
		child := joinPath(path, key)
		if !slices.Contains(params, key) {
			if len(params) == 0 {
				d.fail(kv.key, child, "%s takes no parameters", op.Kind)
			} else {
				d.fail(kv.key, child, "unknown parameter %q for %s (it takes %s)%s",
					key, op.Kind, strings.Join(params, ", "), didYouMean(key, params))
			}
			continue
		}
		given[key] = true
		if val := d.resolve(kv.val); nullNode(val) {
			d.fail(val, child, "needs a value")
			continue
		}
		d.decode(kv.val, child, opField(&op, key))
	}
	for _, p := range params {
		if !given[p] {
			d.fail(n, joinPath(path, p), "%s needs %s", op.Kind, p)
		}
	}
	return op
}

func paramExample(params []string) string {
	parts := make([]string, len(params))
	for i, p := range params {
		parts[i] = p + ": ..."
	}
	return strings.Join(parts, ", ")
}

func nullNode(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// nodeDesc names what a node holds, for "want X, got Y" messages.
func nodeDesc(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!int", "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		case "!!null":
			return "nothing"
		}
		return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
	}
	return "an alias"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// parentPath strips the last key or index: "a.b[2]" → "a.b" → "a" → "".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}
