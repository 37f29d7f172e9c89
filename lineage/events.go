package lineage

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidEvent is returned (wrapped) when an event cannot be written: it
// lacks a field the OpenLineage schema requires, or its Kafka offsets do not
// account for its batch.
var ErrInvalidEvent = errors.New("lineage: invalid event")

// Schema locations. Every event is an OpenLineage 2-0-2 RunEvent; every
// facet names the schema it follows in _schemaURL.
const (
	// SchemaURL is the RunEvent definition events declare in schemaURL.
	SchemaURL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
	// DefaultProducer is the producer URI used when an event names none.
	DefaultProducer = "https://github.com/sluice-dev/sluice"
	// FacetDocURL documents the sluice facets; each custom facet's
	// _schemaURL is this URL with the facet name as fragment.
	FacetDocURL = "https://github.com/sluice-dev/sluice/blob/main/docs/lineage.md"

	SchemaFacetURL           = "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
	DataSourceFacetURL       = "https://openlineage.io/spec/facets/1-0-1/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet"
	ColumnLineageFacetURL    = "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet"
	OutputStatisticsFacetURL = "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet"
	InputStatisticsFacetURL  = "https://openlineage.io/spec/facets/1-0-0/InputStatisticsInputDatasetFacet.json#/$defs/InputStatisticsInputDatasetFacet"
	ErrorMessageFacetURL     = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
	ProcessingEngineFacetURL = "https://openlineage.io/spec/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet"
	// DataQualityMetricsFacetURL is the OpenLineage dataQualityMetrics
	// facet. The spec defines it for inputs; sluice records the same shape
	// on the outputs it writes (see DataQualityMetricsFacet).
	DataQualityMetricsFacetURL = "https://openlineage.io/spec/facets/1-0-2/DataQualityMetricsInputDatasetFacet.json#/$defs/DataQualityMetricsInputDatasetFacet"

	KafkaOffsetsFacetURL      = FacetDocURL + "#sluice_kafkaoffsets"
	ResidencyDecisionFacetURL = FacetDocURL + "#sluice_residencydecision"
	ExecutorFacetURL          = FacetDocURL + "#sluice_executor"
	OutcomeFacetURL           = FacetDocURL + "#sluice_outcome"
	ChainFacetURL             = FacetDocURL + "#sluice_chain"
	ObjectFacetURL            = FacetDocURL + "#sluice_object"
	RoutingFacetURL           = FacetDocURL + "#sluice_routing"
)

// EventType is the run state transition an event reports.
type EventType string

// The OpenLineage run states. sluice writes one COMPLETE event per outcome
// of a batch; FAIL carries an errorMessage facet.
const (
	Start    EventType = "START"
	Running  EventType = "RUNNING"
	Complete EventType = "COMPLETE"
	Abort    EventType = "ABORT"
	Fail     EventType = "FAIL"
	Other    EventType = "OTHER"
)

// Outcome kinds: what became of the rows an event accounts for.
const (
	OutcomeFeatures    = "features"
	OutcomeDeadLetters = "deadLetters"
	OutcomeQuarantine  = "quarantine"
)

// Event is an OpenLineage RunEvent (spec 2-0-2). Marshalled with
// encoding/json it is the exact line stored in a segment.
type Event struct {
	EventType EventType `json:"eventType"`
	// EventTime is RFC 3339 (UTC, nanoseconds as needed).
	EventTime string `json:"eventTime"`
	// Producer is a URI naming the software that wrote the event.
	Producer string `json:"producer"`
	// SchemaURL is always SchemaURL.
	SchemaURL string    `json:"schemaURL"`
	Run       Run       `json:"run"`
	Job       Job       `json:"job"`
	Inputs    []Dataset `json:"inputs,omitempty"`
	Outputs   []Dataset `json:"outputs,omitempty"`
}

// Run identifies one run of the job and carries the run facets.
type Run struct {
	// RunID is a UUID. See RunIDFor for one that replays reproduce.
	RunID  string    `json:"runId"`
	Facets RunFacets `json:"facets,omitzero"`
}

// Job names the job: namespace is the pipeline's namespace, name the
// pipeline.
type Job struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Facets    JobFacets `json:"facets,omitzero"`
}

// JobFacets are the job facets sluice writes (none yet; the type keeps the
// shape of the schema).
type JobFacets struct{}

// Dataset is an input or output dataset. InputFacets is set only on inputs
// and OutputFacets only on outputs.
type Dataset struct {
	Namespace    string              `json:"namespace"`
	Name         string              `json:"name"`
	Facets       DatasetFacets       `json:"facets,omitzero"`
	InputFacets  InputDatasetFacets  `json:"inputFacets,omitzero"`
	OutputFacets OutputDatasetFacets `json:"outputFacets,omitzero"`
}

// BaseFacet is embedded in every facet. Event.Stamp fills empty fields.
type BaseFacet struct {
	Producer  string `json:"_producer"`
	SchemaURL string `json:"_schemaURL"`
}

func (b *BaseFacet) stamp(producer, url string) {
	if b.Producer == "" {
		b.Producer = producer
	}
	if b.SchemaURL == "" {
		b.SchemaURL = url
	}
}

// RunFacets holds the run facets; nil ones are left out.
type RunFacets struct {
	KafkaOffsets      *KafkaOffsetsFacet      `json:"sluice_kafkaOffsets,omitempty"`
	ResidencyDecision *ResidencyDecisionFacet `json:"sluice_residencyDecision,omitempty"`
	Executor          *ExecutorFacet          `json:"sluice_executor,omitempty"`
	Outcome           *OutcomeFacet           `json:"sluice_outcome,omitempty"`
	ProcessingEngine  *ProcessingEngineFacet  `json:"processing_engine,omitempty"`
	ErrorMessage      *ErrorMessageFacet      `json:"errorMessage,omitempty"`
	// Chain is set by Writer.Append; callers leave it nil.
	Chain *ChainFacet `json:"sluice_chain,omitempty"`
	// Routing says how the router chose the executor for each row group.
	Routing *RoutingFacet `json:"sluice_routing,omitempty"`
}

// DatasetFacets are the facets common to inputs and outputs.
type DatasetFacets struct {
	Schema        *SchemaFacet        `json:"schema,omitempty"`
	DataSource    *DataSourceFacet    `json:"dataSource,omitempty"`
	ColumnLineage *ColumnLineageFacet `json:"columnLineage,omitempty"`
}

// InputDatasetFacets are the input-only facets.
type InputDatasetFacets struct {
	InputStatistics *InputStatisticsFacet `json:"inputStatistics,omitempty"`
}

// OutputDatasetFacets are the output-only facets.
type OutputDatasetFacets struct {
	OutputStatistics *OutputStatisticsFacet `json:"outputStatistics,omitempty"`
	Object           *ObjectFacet           `json:"sluice_object,omitempty"`
	// DataQualityMetrics holds per-column facts about the rows written.
	DataQualityMetrics *DataQualityMetricsFacet `json:"dataQualityMetrics,omitempty"`
}

// DataQualityMetricsFacet is the OpenLineage `dataQualityMetrics` facet
// (DataQualityMetricsInputDatasetFacet 1-0-2: rowCount, bytes, fileCount,
// columnMetrics), recorded on an output dataset: the facts describe the
// rows of the object written. The official schema is not in the vendored
// copy; its columnMetrics entries do not forbid additional properties, so
// sluice adds its own, prefixed sluice_.
type DataQualityMetricsFacet struct {
	BaseFacet
	RowCount      int64                    `json:"rowCount"`
	Bytes         int64                    `json:"bytes,omitempty"`
	FileCount     int64                    `json:"fileCount,omitempty"`
	ColumnMetrics map[string]ColumnMetrics `json:"columnMetrics"`
}

// ColumnMetrics are the facts about one column. Count, Sum, Min, Max and
// Mean consider only the finite non-null values; Min, Max and Mean are nil
// when there is none.
type ColumnMetrics struct {
	NullCount int64    `json:"nullCount"`
	Count     float64  `json:"count"`
	Sum       float64  `json:"sum"`
	Min       *float64 `json:"min,omitempty"`
	Max       *float64 `json:"max,omitempty"`
	// Mean is Sum/Count (a sluice extension).
	Mean *float64 `json:"sluice_mean,omitempty"`
	// NonFinite counts NaN and infinite values (a sluice extension).
	NonFinite int64 `json:"sluice_nonFinite,omitempty"`
	// Histogram is a sluice extension.
	Histogram *Histogram `json:"sluice_histogram,omitempty"`
}

// Histogram counts values in fixed bins: bin i holds Edges[i] <= v <
// Edges[i+1], the last bin also its upper edge. Values outside the edges
// are counted in Below and Above.
type Histogram struct {
	Edges  []float64 `json:"edges"`
	Counts []int64   `json:"counts"`
	Below  int64     `json:"below,omitempty"`
	Above  int64     `json:"above,omitempty"`
}

// SchemaFacet is the standard `schema` dataset facet.
type SchemaFacet struct {
	BaseFacet
	Fields []SchemaField `json:"fields,omitempty"`
}

// SchemaField is one column of a SchemaFacet.
type SchemaField struct {
	Name        string `json:"name"`
	Type        string `json:"type,omitempty"`
	Description string `json:"description,omitempty"`
	// OrdinalPosition is 1-based; 0 leaves it out.
	OrdinalPosition int           `json:"ordinal_position,omitempty"`
	Fields          []SchemaField `json:"fields,omitempty"`
}

// DataSourceFacet is the standard `dataSource` dataset facet.
type DataSourceFacet struct {
	BaseFacet
	Name string `json:"name,omitempty"`
	URI  string `json:"uri,omitempty"`
}

// ColumnLineageFacet is the standard `columnLineage` dataset facet: for
// each output column, the input columns it came from and how.
type ColumnLineageFacet struct {
	BaseFacet
	Fields  map[string]ColumnLineageField `json:"fields"`
	Dataset []InputField                  `json:"dataset,omitempty"`
}

// ColumnLineageField lists the inputs of one output column.
type ColumnLineageField struct {
	InputFields []InputField `json:"inputFields"`
}

// InputField is one input column an output column depends on.
type InputField struct {
	Namespace       string           `json:"namespace"`
	Name            string           `json:"name"`
	Field           string           `json:"field"`
	Transformations []Transformation `json:"transformations,omitempty"`
}

// Transformation says how an input column became the output. The schema
// allows Type DIRECT or INDIRECT; sluice writes DIRECT with Subtype IDENTITY
// or TRANSFORMATION, and marks a hashed or masked column with Masking true
// and Description "hash" or "mask".
type Transformation struct {
	Type        string `json:"type"`
	Subtype     string `json:"subtype,omitempty"`
	Description string `json:"description,omitempty"`
	Masking     bool   `json:"masking,omitempty"`
}

// Column transformations for ColumnLineageFacet.
var (
	// Identity copies the input unchanged.
	Identity = Transformation{Type: "DIRECT", Subtype: "IDENTITY"}
	// Hashed replaces the input by a keyed hash (obligation "hash").
	Hashed = Transformation{Type: "DIRECT", Subtype: "TRANSFORMATION", Description: "hash", Masking: true}
	// Masked replaces the input by a mask (obligation "mask").
	Masked = Transformation{Type: "DIRECT", Subtype: "TRANSFORMATION", Description: "mask", Masking: true}
)

// Transformed returns a non-masking DIRECT TRANSFORMATION described by op
// (a feature op such as "standardize").
func Transformed(op string) Transformation {
	return Transformation{Type: "DIRECT", Subtype: "TRANSFORMATION", Description: op}
}

// OutputStatisticsFacet is the standard `outputStatistics` facet.
type OutputStatisticsFacet struct {
	BaseFacet
	RowCount  int64 `json:"rowCount"`
	Size      int64 `json:"size"`
	FileCount int64 `json:"fileCount,omitempty"`
}

// InputStatisticsFacet is the standard `inputStatistics` facet: rows and
// bytes read from the Kafka batch.
type InputStatisticsFacet struct {
	BaseFacet
	RowCount int64 `json:"rowCount"`
	Size     int64 `json:"size,omitempty"`
}

// ErrorMessageFacet is the standard `errorMessage` run facet.
type ErrorMessageFacet struct {
	BaseFacet
	Message             string `json:"message"`
	ProgrammingLanguage string `json:"programmingLanguage"`
	StackTrace          string `json:"stackTrace,omitempty"`
}

// ProcessingEngineFacet is the standard `processing_engine` run facet.
type ProcessingEngineFacet struct {
	BaseFacet
	Version string `json:"version"`
	Name    string `json:"name,omitempty"`
}

// KafkaOffsetsFacet (sluice_kafkaOffsets) ties an event to its Kafka batch.
// First..Last (inclusive) is the whole batch; Ranges are the offsets of the
// rows this event accounts for, as sorted inclusive [a, b] pairs. Across
// the events of one batch the ranges cover First..Last exactly once.
type KafkaOffsetsFacet struct {
	BaseFacet
	Topic     string     `json:"topic"`
	Partition int        `json:"partition"`
	First     int64      `json:"first"`
	Last      int64      `json:"last"`
	Ranges    [][2]int64 `json:"ranges"`
}

// ResidencyDecisionFacet (sluice_residencyDecision) lists the policy
// decisions behind the event's rows; several row groups can share one
// output.
type ResidencyDecisionFacet struct {
	BaseFacet
	Decisions []Decision `json:"decisions"`
}

// Decision is one policy decision for one row group and one candidate
// executor (policy.Decision plus the group it was about).
type Decision struct {
	Jurisdiction string      `json:"jurisdiction"`
	Classes      []string    `json:"classes,omitempty"`
	Executor     string      `json:"executor"`
	Allow        bool        `json:"allow"`
	DecisionID   string      `json:"decisionId"`
	Revision     string      `json:"revision"`
	Reasons      []string    `json:"reasons,omitempty"`
	Obligations  Obligations `json:"obligations"`
	// Rules are the labels of the rules that fired ("GDPR Art. 44").
	Rules []string `json:"rules,omitempty"`
	// Rows is the number of rows of the group.
	Rows int64 `json:"rows"`
}

// Obligations are the columns masked, dropped or hashed for the executor.
type Obligations struct {
	Mask []string `json:"mask,omitempty"`
	Drop []string `json:"drop,omitempty"`
	Hash []string `json:"hash,omitempty"`
}

// ExecutorFacet (sluice_executor) says what ran the batch and where.
type ExecutorFacet struct {
	BaseFacet
	ID       string   `json:"id"`
	Kind     string   `json:"kind"`
	Location Location `json:"location"`
	// Device names the accelerator, e.g. "NVIDIA H100 80GB HBM3"; empty
	// for CPU.
	Device     string `json:"device,omitempty"`
	DurationMs int64  `json:"durationMs"`
}

// Location is where an executor runs (gpuexec.Location without the
// certifications).
type Location struct {
	Name         string `json:"name"`
	Kind         string `json:"kind"`
	Site         string `json:"site,omitempty"`
	Provider     string `json:"provider,omitempty"`
	Region       string `json:"region,omitempty"`
	Jurisdiction string `json:"jurisdiction"`
}

// ObjectFacet (sluice_object) identifies the object an output was written
// to, so an auditor can check the bytes.
type ObjectFacet struct {
	BaseFacet
	Key    string `json:"key"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	Rows   int64  `json:"rows"`
}

// OutcomeFacet (sluice_outcome) says what became of the event's rows: Kind
// is OutcomeFeatures, OutcomeDeadLetters or OutcomeQuarantine; Reasons
// counts rows per reason (dead-letter cause, deny message).
type OutcomeFacet struct {
	BaseFacet
	Kind    string           `json:"kind"`
	Reasons map[string]int64 `json:"reasons,omitempty"`
}

// RoutingFacet (sluice_routing) records each routing choice behind the
// event's rows: the candidates the policy allowed, how the router scored
// them, and why it chose the one it did.
type RoutingFacet struct {
	BaseFacet
	Choices []RoutingChoice `json:"choices"`
}

// RoutingChoice is the router's choice for one row group.
type RoutingChoice struct {
	Jurisdiction string             `json:"jurisdiction"`
	Classes      []string           `json:"classes,omitempty"`
	Rows         int64              `json:"rows"`
	Chosen       string             `json:"chosen"`
	Bursting     bool               `json:"bursting,omitempty"`
	Why          string             `json:"why"`
	Candidates   []RoutingCandidate `json:"candidates"`
}

// RoutingCandidate is one allowed executor as the router saw it.
type RoutingCandidate struct {
	ID          string  `json:"id"`
	Location    string  `json:"location"`
	Kind        string  `json:"kind"`
	Healthy     bool    `json:"healthy"`
	Eligible    bool    `json:"eligible"`
	EstimatedMs float64 `json:"estimatedMs"`
	CostUSD     float64 `json:"costUsd"`
	QueueDepth  int     `json:"queueDepth"`
	Reason      string  `json:"reason,omitempty"`
}

// ChainFacet (sluice_chain) links the event into its chain: Seq counts the
// chain's events from 0, Prev is the hex SHA-256 of the previous event's
// stored line ("" for the first event of the chain).
type ChainFacet struct {
	BaseFacet
	Seq  uint64 `json:"seq"`
	Prev string `json:"prev"`
}

// NewEvent returns a COMPLETE event of job in namespace at t, with a fresh
// random (version 7) run id. producer "" means DefaultProducer. Set facets
// with the setters or directly; Stamp (called by Writer.Append) fills each
// facet's _producer and _schemaURL.
func NewEvent(producer, namespace, job string, t time.Time) *Event {
	if producer == "" {
		producer = DefaultProducer
	}
	return &Event{
		EventType: Complete,
		EventTime: FormatTime(t),
		Producer:  producer,
		SchemaURL: SchemaURL,
		Run:       Run{RunID: newRunID(t)},
		Job:       Job{Namespace: namespace, Name: job},
	}
}

// FormatTime formats t as an OpenLineage eventTime (RFC 3339, UTC).
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// newRunID returns a UUIDv7: time-ordered, random below the millisecond.
func newRunID(t time.Time) string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(t.UnixMilli()))
	copy(u[:6], ms[2:])
	u[6] = 0x70 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return formatUUID(u)
}

// runIDNamespace is the UUIDv5 namespace of RunIDFor.
var runIDNamespace = [16]byte{0x5f, 0x1c, 0x2e, 0x8a, 0x3b, 0x47, 0x4d, 0x0e, 0x9a, 0x61, 0x0c, 0x7d, 0x52, 0x43, 0xe1, 0x96}

// RunIDFor returns a name-based (version 5) UUID of parts, so that a
// replay of the same batch (same pipeline, topic, partition, offsets)
// reports the same run id, e.g.
// RunIDFor("card-fraud", "events", "3", "100", "199").
func RunIDFor(parts ...string) string {
	h := sha1.New()
	h.Write(runIDNamespace[:])
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.Write([]byte(p))
	}
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = 0x50 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return formatUUID(u)
}

func formatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// SetKafkaOffsets records the event's batch and the offsets of the rows it
// accounts for (any order; duplicates are kept, so Append can refuse them).
func (e *Event) SetKafkaOffsets(topic string, partition int, first, last int64, offsets []int64) *Event {
	e.Run.Facets.KafkaOffsets = &KafkaOffsetsFacet{
		Topic: topic, Partition: partition, First: first, Last: last,
		Ranges: Ranges(offsets),
	}
	return e
}

// AddDecision appends a policy decision to the residency facet.
func (e *Event) AddDecision(d Decision) *Event {
	if e.Run.Facets.ResidencyDecision == nil {
		e.Run.Facets.ResidencyDecision = &ResidencyDecisionFacet{}
	}
	e.Run.Facets.ResidencyDecision.Decisions = append(e.Run.Facets.ResidencyDecision.Decisions, d)
	return e
}

// SetExecutor records the executor that ran the batch.
func (e *Event) SetExecutor(f ExecutorFacet) *Event {
	e.Run.Facets.Executor = &f
	return e
}

// SetOutcome records what became of the event's rows.
func (e *Event) SetOutcome(kind string, reasons map[string]int64) *Event {
	e.Run.Facets.Outcome = &OutcomeFacet{Kind: kind, Reasons: reasons}
	return e
}

// SetError makes the event a FAIL event carrying msg.
func (e *Event) SetError(msg string) *Event {
	e.EventType = Fail
	e.Run.Facets.ErrorMessage = &ErrorMessageFacet{Message: msg, ProgrammingLanguage: "go"}
	return e
}

// AddInput appends an input dataset.
func (e *Event) AddInput(d Dataset) *Event {
	e.Inputs = append(e.Inputs, d)
	return e
}

// AddOutput appends an output dataset.
func (e *Event) AddOutput(d Dataset) *Event {
	e.Outputs = append(e.Outputs, d)
	return e
}

// Stamp fills what an event needs to validate and that the caller may have
// left empty: producer (DefaultProducer), schemaURL, and each facet's
// _producer (the event's producer) and _schemaURL. It is idempotent.
func (e *Event) Stamp() {
	if e.Producer == "" {
		e.Producer = DefaultProducer
	}
	if e.SchemaURL == "" {
		e.SchemaURL = SchemaURL
	}
	p := e.Producer
	f := &e.Run.Facets
	if f.KafkaOffsets != nil {
		f.KafkaOffsets.stamp(p, KafkaOffsetsFacetURL)
		if f.KafkaOffsets.Ranges == nil {
			f.KafkaOffsets.Ranges = [][2]int64{}
		}
	}
	if f.ResidencyDecision != nil {
		f.ResidencyDecision.stamp(p, ResidencyDecisionFacetURL)
		if f.ResidencyDecision.Decisions == nil {
			f.ResidencyDecision.Decisions = []Decision{}
		}
	}
	if f.Executor != nil {
		f.Executor.stamp(p, ExecutorFacetURL)
	}
	if f.Outcome != nil {
		f.Outcome.stamp(p, OutcomeFacetURL)
	}
	if f.ProcessingEngine != nil {
		f.ProcessingEngine.stamp(p, ProcessingEngineFacetURL)
	}
	if f.ErrorMessage != nil {
		f.ErrorMessage.stamp(p, ErrorMessageFacetURL)
	}
	if f.Chain != nil {
		f.Chain.stamp(p, ChainFacetURL)
	}
	if f.Routing != nil {
		f.Routing.stamp(p, RoutingFacetURL)
	}
	for i := range e.Inputs {
		e.Inputs[i].stamp(p)
	}
	for i := range e.Outputs {
		e.Outputs[i].stamp(p)
	}
}

func (d *Dataset) stamp(p string) {
	f := &d.Facets
	if f.Schema != nil {
		f.Schema.stamp(p, SchemaFacetURL)
	}
	if f.DataSource != nil {
		f.DataSource.stamp(p, DataSourceFacetURL)
	}
	if f.ColumnLineage != nil {
		f.ColumnLineage.stamp(p, ColumnLineageFacetURL)
		if f.ColumnLineage.Fields == nil {
			f.ColumnLineage.Fields = map[string]ColumnLineageField{}
		}
		for k, v := range f.ColumnLineage.Fields {
			if v.InputFields == nil {
				v.InputFields = []InputField{}
				f.ColumnLineage.Fields[k] = v
			}
		}
	}
	if d.InputFacets.InputStatistics != nil {
		d.InputFacets.InputStatistics.stamp(p, InputStatisticsFacetURL)
	}
	if d.OutputFacets.OutputStatistics != nil {
		d.OutputFacets.OutputStatistics.stamp(p, OutputStatisticsFacetURL)
	}
	if d.OutputFacets.Object != nil {
		d.OutputFacets.Object.stamp(p, ObjectFacetURL)
	}
	if d.OutputFacets.DataQualityMetrics != nil {
		d.OutputFacets.DataQualityMetrics.stamp(p, DataQualityMetricsFacetURL)
		if d.OutputFacets.DataQualityMetrics.ColumnMetrics == nil {
			d.OutputFacets.DataQualityMetrics.ColumnMetrics = map[string]ColumnMetrics{}
		}
	}
}

// Validate checks what the OpenLineage schema requires of a RunEvent and
// that the Kafka offsets facet is self-consistent. It does not fetch or
// apply the JSON Schema; the tests do that.
func (e *Event) Validate() error {
	switch e.EventType {
	case Start, Running, Complete, Abort, Fail, Other:
	default:
		return fmt.Errorf("%w: eventType %q", ErrInvalidEvent, e.EventType)
	}
	if _, err := time.Parse(time.RFC3339Nano, e.EventTime); err != nil {
		return fmt.Errorf("%w: eventTime %q is not RFC 3339", ErrInvalidEvent, e.EventTime)
	}
	if e.Producer == "" || e.SchemaURL == "" {
		return fmt.Errorf("%w: producer and schemaURL are required", ErrInvalidEvent)
	}
	if !validUUID(e.Run.RunID) {
		return fmt.Errorf("%w: runId %q is not a UUID", ErrInvalidEvent, e.Run.RunID)
	}
	if e.Job.Namespace == "" || e.Job.Name == "" {
		return fmt.Errorf("%w: job namespace and name are required", ErrInvalidEvent)
	}
	for _, ds := range slices.Concat(e.Inputs, e.Outputs) {
		if ds.Namespace == "" || ds.Name == "" {
			return fmt.Errorf("%w: dataset namespace and name are required", ErrInvalidEvent)
		}
	}
	if k := e.Run.Facets.KafkaOffsets; k != nil {
		if k.Topic == "" || k.Partition < 0 || k.First < 0 || k.Last < k.First {
			return fmt.Errorf("%w: kafka batch %s", ErrInvalidEvent, k.batch())
		}
		for _, r := range k.Ranges {
			if r[0] > r[1] || r[0] < k.First || r[1] > k.Last {
				return fmt.Errorf("%w: range [%d,%d] outside batch %s", ErrInvalidEvent, r[0], r[1], k.batch())
			}
		}
	}
	return nil
}

func (k *KafkaOffsetsFacet) batch() string {
	return k.Topic + "/" + strconv.Itoa(k.Partition) + "@" + strconv.FormatInt(k.First, 10) + ".." + strconv.FormatInt(k.Last, 10)
}

// Ranges compresses offsets into sorted inclusive [a, b] ranges. Duplicate
// offsets yield overlapping ranges rather than disappearing, so a caller's
// double count stays visible to Append and Verify.
func Ranges(offsets []int64) [][2]int64 {
	if len(offsets) == 0 {
		return [][2]int64{}
	}
	s := slices.Clone(offsets)
	slices.Sort(s)
	out := [][2]int64{{s[0], s[0]}}
	for _, o := range s[1:] {
		last := &out[len(out)-1]
		if o == last[1]+1 {
			last[1] = o
			continue
		}
		out = append(out, [2]int64{o, o})
	}
	return out
}

// Count is the number of offsets the ranges hold.
func Count(ranges [][2]int64) int64 {
	var n int64
	for _, r := range ranges {
		n += r[1] - r[0] + 1
	}
	return n
}

// Contains reports whether offset lies in one of ranges.
func Contains(ranges [][2]int64, offset int64) bool {
	for _, r := range ranges {
		if r[0] <= offset && offset <= r[1] {
			return true
		}
	}
	return false
}

// ChainFor is the chain name the runner uses for a topic partition
// ("events-3"); Trace looks there first.
func ChainFor(topic string, partition int) string {
	return strings.ReplaceAll(topic, "/", "_") + "-" + strconv.Itoa(partition)
}
