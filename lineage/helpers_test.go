package lineage

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/sluice-dev/sluice/storage"
)

const testPipeline = "card-fraud"

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

var testTime = time.Date(2026, 3, 14, 9, 26, 53, 589000000, time.UTC)

// batchEvents returns what the runner writes for one Kafka batch
// first..last (last-first >= 3): a features event for all offsets but two,
// a dead letter at first+1 and a quarantined row at last.
func batchEvents(topic string, partition int, first, last int64) []*Event {
	var featureOffsets []int64
	for o := first; o <= last; o++ {
		if o != first+1 && o != last {
			featureOffsets = append(featureOffsets, o)
		}
	}
	rows := int64(len(featureOffsets))
	de, fr := rows/2, rows-rows/2
	runID := RunIDFor(testPipeline, topic, strconv.Itoa(partition), strconv.FormatInt(first, 10), strconv.FormatInt(last, 10))
	at := testTime.Add(time.Duration(first) * time.Millisecond)
	input := Dataset{
		Namespace: "kafka://broker-1:9092",
		Name:      topic,
		Facets: DatasetFacets{
			Schema: &SchemaFacet{Fields: []SchemaField{
				{Name: "user_id", Type: "utf8", Description: "classes: pii", OrdinalPosition: 1},
				{Name: "email", Type: "utf8", OrdinalPosition: 2},
				{Name: "amount", Type: "float64", OrdinalPosition: 3},
				{Name: "country", Type: "utf8", OrdinalPosition: 4},
			}},
			DataSource: &DataSourceFacet{Name: "kafka", URI: "kafka://broker-1:9092/" + topic},
		},
		InputFacets: InputDatasetFacets{InputStatistics: &InputStatisticsFacet{RowCount: last - first + 1, Size: 4096}},
	}
	objKey := storage.FeatureKey("features", testPipeline, at, "fra", topic, partition, first, last)
	lineage := func(field string, tr Transformation) ColumnLineageField {
		return ColumnLineageField{InputFields: []InputField{{Namespace: input.Namespace, Name: topic, Field: field, Transformations: []Transformation{tr}}}}
	}
	features := NewEvent("", "sluice", testPipeline, at)
	features.Run.RunID = runID
	features.Run.Facets.ProcessingEngine = &ProcessingEngineFacet{Version: "0.1.0", Name: "sluice"}
	features.SetKafkaOffsets(topic, partition, first, last, featureOffsets).
		AddDecision(Decision{Jurisdiction: "DE", Classes: []string{"financial", "pii"}, Executor: "onprem-fra-gpu", Allow: true,
			DecisionID: "d-de-1", Revision: "sha256:abc", Obligations: Obligations{Hash: []string{"user_id"}, Mask: []string{"email"}},
			Rules: []string{"GDPR Art. 44"}, Rows: de}).
		AddDecision(Decision{Jurisdiction: "DE", Classes: []string{"financial", "pii"}, Executor: "aws-us-east-1", Allow: false,
			DecisionID: "d-de-2", Revision: "sha256:abc", Reasons: []string{"pii may not leave the EU"}, Rules: []string{"GDPR Art. 44"}, Rows: de}).
		AddDecision(Decision{Jurisdiction: "FR", Classes: []string{"financial", "pii"}, Executor: "onprem-fra-gpu", Allow: true,
			DecisionID: "d-fr-1", Revision: "sha256:abc", Obligations: Obligations{Hash: []string{"user_id"}, Mask: []string{"email"}},
			Rules: []string{"GDPR Art. 44"}, Rows: fr}).
		SetExecutor(ExecutorFacet{ID: "onprem-fra-gpu", Kind: "cuda", Device: "NVIDIA H100 80GB HBM3", DurationMs: 12,
			Location: Location{Name: "fra", Kind: "onprem", Site: "fra-dc1", Region: "eu-central", Jurisdiction: "DE"}}).
		SetOutcome(OutcomeFeatures, nil).
		AddInput(input).
		AddOutput(Dataset{
			Namespace: "s3://features",
			Name:      "pipeline=" + testPipeline + "/location=fra",
			Facets: DatasetFacets{
				Schema: &SchemaFacet{Fields: []SchemaField{
					{Name: "user_id", Type: "utf8"}, {Name: "email", Type: "utf8"}, {Name: "amount_z", Type: "float64"},
				}},
				DataSource: &DataSourceFacet{Name: "s3", URI: "s3://features/"},
				ColumnLineage: &ColumnLineageFacet{Fields: map[string]ColumnLineageField{
					"user_id":  lineage("user_id", Hashed),
					"email":    lineage("email", Masked),
					"amount_z": lineage("amount", Transformed("standardize")),
				}},
			},
			OutputFacets: OutputDatasetFacets{
				OutputStatistics: &OutputStatisticsFacet{RowCount: rows, Size: 2048, FileCount: 1},
				Object:           &ObjectFacet{Key: objKey, Bytes: 2048, SHA256: fmt.Sprintf("%064x", first), Rows: rows},
			},
		})

	dead := NewEvent("", "sluice", testPipeline, at)
	dead.Run.RunID = runID
	dead.SetKafkaOffsets(topic, partition, first, last, []int64{first + 1}).
		SetOutcome(OutcomeDeadLetters, map[string]int64{`field "amount": want float64, got string`: 1}).
		AddInput(Dataset{Namespace: input.Namespace, Name: topic}).
		AddOutput(Dataset{
			Namespace: "s3://features", Name: "pipeline=" + testPipeline + "/dead-letters",
			OutputFacets: OutputDatasetFacets{Object: &ObjectFacet{
				Key:   fmt.Sprintf("dead-letters/pipeline=%s/%s-%d-%020d-%020d.ndjson", testPipeline, topic, partition, first, last),
				Bytes: 100, SHA256: fmt.Sprintf("%064x", first+1), Rows: 1}},
		})

	quarantine := NewEvent("", "sluice", testPipeline, at)
	quarantine.Run.RunID = runID
	quarantine.SetKafkaOffsets(topic, partition, first, last, []int64{last}).
		AddDecision(Decision{Jurisdiction: "US", Classes: []string{"phi"}, Executor: "onprem-fra-gpu", Allow: false,
			DecisionID: "d-us-1", Revision: "sha256:abc", Reasons: []string{"phi must stay in the US"}, Rules: []string{"HIPAA"}, Rows: 1}).
		SetOutcome(OutcomeQuarantine, map[string]int64{"phi must stay in the US": 1}).
		AddInput(Dataset{Namespace: input.Namespace, Name: topic}).
		AddOutput(Dataset{
			Namespace: "s3://quarantine-us", Name: "quarantine/pipeline=" + testPipeline,
			OutputFacets: OutputDatasetFacets{Object: &ObjectFacet{
				Key:   storage.QuarantineKey("", testPipeline, at, topic, partition, first, last),
				Bytes: 900, SHA256: fmt.Sprintf("%064x", last), Rows: 1}},
		})
	return []*Event{features, dead, quarantine}
}

// legacySig is the separate signature object of the second format (base64
// ed25519 signature of the segment's SHA-256, a newline).
func legacySig(key ed25519.PrivateKey, segment []byte) []byte {
	d := sha256.Sum256(segment)
	return []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(key, d[:])) + "\n")
}

// withoutSignature returns a segment's event lines: the segment as the
// earlier formats stored it.
func withoutSignature(segment []byte) []byte {
	events, sig, err := splitSignature(segment)
	if err != nil || sig == nil {
		panic(fmt.Sprintf("not a signed segment: %v", err))
	}
	return events
}

// signedWith returns events (a segment's event lines) with the signature
// line key makes for them.
func signedWith(key ed25519.PrivateKey, events []byte) []byte {
	return appendSignature(bytes.Clone(events), key)
}

// toLegacy rewrites the segment at key as an earlier trail stored it: the
// event lines alone, and a separate signature object made by sig.
func (m *memStore) toLegacy(key string, sig func(segment []byte) []byte) {
	events := withoutSignature(m.get(key))
	m.set(key, events)
	m.set(key+sigExt, sig(events))
}
