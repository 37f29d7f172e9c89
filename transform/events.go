package transform

import (
	"strconv"
	"time"

	"github.com/sluice-dev/sluice/gpuexec"
	"github.com/sluice-dev/sluice/ingest"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/policy"
	"github.com/sluice-dev/sluice/storage"
)

// newEvent starts a lineage event for one outcome of batch b. Its run id is
// derived from the batch and the outcome, so a replay names the same run.
func (r *Runner) newEvent(b *ingest.Batch, outcome, where string) *lineage.Event {
	ev := lineage.NewEvent(r.cfg.Producer, "sluice", r.cfg.Spec.Name, time.Now())
	ev.Run.RunID = lineage.RunIDFor(r.cfg.Spec.Name, b.Topic, strconv.Itoa(b.Partition),
		strconv.FormatInt(b.First, 10), strconv.FormatInt(b.Last, 10), outcome, where)
	ev.AddInput(lineage.Dataset{Namespace: r.cfg.SourceNamespace, Name: b.Topic})
	return ev
}

func (r *Runner) deadLetterEvent(b *ingest.Batch) *lineage.Event {
	offsets := make([]int64, len(b.DeadLetters))
	reasons := map[string]int64{}
	for i, dl := range b.DeadLetters {
		offsets[i] = dl.Offset
		reasons[dl.Reason]++
	}
	ev := r.newEvent(b, lineage.OutcomeDeadLetters, "")
	ev.SetKafkaOffsets(b.Topic, b.Partition, b.First, b.Last, offsets)
	ev.SetOutcome(lineage.OutcomeDeadLetters, reasons)
	ev.AddOutput(lineage.Dataset{Namespace: r.cfg.SourceNamespace, Name: r.cfg.Spec.Source.DeadLetterTopic})
	return ev
}

func (r *Runner) quarantineEvent(b *ingest.Batch, gs []*group, offsets []int64, sink string, obj storage.Object) *lineage.Event {
	ev := r.newEvent(b, lineage.OutcomeQuarantine, sink)
	ev.SetKafkaOffsets(b.Topic, b.Partition, b.First, b.Last, offsets)
	for _, g := range gs {
		for _, d := range g.decisions {
			ev.AddDecision(decisionFacet(g, d.executor, d.decision))
		}
	}
	own := map[string]int64{}
	for _, g := range gs {
		own[summarizeDeny(g)] += int64(len(g.rows))
	}
	ev.SetOutcome(lineage.OutcomeQuarantine, own)
	ev.AddOutput(r.objectDataset(sink, obj, nil))
	return ev
}

func (r *Runner) featureEvent(b *ingest.Batch, o *output) *lineage.Event {
	ev := r.newEvent(b, lineage.OutcomeFeatures, o.location.Name)
	ev.SetKafkaOffsets(b.Topic, b.Partition, b.First, b.Last, o.offsets)
	var applied gpuexec.Applied
	var dur time.Duration
	routing := &lineage.RoutingFacet{}
	for _, p := range o.execs {
		for _, g := range p.groups {
			if d, ok := g.decisionFor(p.exec.ID()); ok {
				ev.AddDecision(decisionFacet(g, p.exec.ID(), d))
			}
			routing.Choices = append(routing.Choices, routingChoice(g))
		}
		applied.Mask = append(applied.Mask, p.obligations.Mask...)
		applied.Drop = append(applied.Drop, p.obligations.Drop...)
		applied.Hash = append(applied.Hash, p.obligations.Hash...)
		dur += p.duration
	}
	// One executor per location per batch is the common case; with more,
	// the facet names the first and the summed duration.
	ex := o.execs[0].exec
	loc := ex.Location()
	ev.SetExecutor(lineage.ExecutorFacet{
		ID: ex.ID(), Kind: ex.Kind(), DurationMs: dur.Milliseconds(),
		Location: lineage.Location{Name: loc.Name, Kind: loc.Kind, Site: loc.Site, Provider: loc.Provider,
			Region: loc.Region, Jurisdiction: loc.Jurisdiction},
	})
	ev.Run.Facets.Routing = routing
	ev.SetOutcome(lineage.OutcomeFeatures, nil)
	ds := r.objectDataset(o.sink, o.object, &applied)
	if o.quality != nil {
		q := *o.quality
		q.Bytes = o.object.Bytes
		ds.OutputFacets.DataQualityMetrics = &q
	}
	ev.AddOutput(ds)
	return ev
}

func routingChoice(g *group) lineage.RoutingChoice {
	c := lineage.RoutingChoice{
		Jurisdiction: g.jurisdiction, Classes: g.classes(), Rows: int64(len(g.rows)),
		Chosen: g.choice.Chosen, Bursting: g.choice.Bursting, Why: g.choice.Why,
		Candidates: []lineage.RoutingCandidate{},
	}
	for _, k := range g.choice.Candidates {
		c.Candidates = append(c.Candidates, lineage.RoutingCandidate{
			ID: k.ID, Location: k.Location, Kind: k.Kind, Healthy: k.Healthy, Eligible: k.Eligible,
			EstimatedMs: k.EstimatedMs, CostUSD: k.CostUSD, QueueDepth: k.QueueDepth, Reason: k.Reason,
		})
	}
	return c
}

// objectDataset describes a written object; with applied set it also
// carries column lineage, marking the inputs that were hashed or masked.
func (r *Runner) objectDataset(sink string, obj storage.Object, applied *gpuexec.Applied) lineage.Dataset {
	s, _ := r.cfg.Spec.Sink(sink)
	ds := lineage.Dataset{Namespace: s.URL, Name: obj.Key}
	ds.OutputFacets.Object = &lineage.ObjectFacet{Key: obj.Key, Bytes: obj.Bytes, SHA256: obj.SHA256, Rows: obj.Rows}
	ds.OutputFacets.OutputStatistics = &lineage.OutputStatisticsFacet{RowCount: obj.Rows, Size: obj.Bytes, FileCount: 1}
	if applied == nil {
		return ds
	}
	fields := map[string]lineage.ColumnLineageField{}
	transformOf := func(col string) []lineage.Transformation {
		for _, c := range applied.Hash {
			if c == col {
				return []lineage.Transformation{lineage.Hashed}
			}
		}
		for _, c := range applied.Mask {
			if c == col {
				return []lineage.Transformation{lineage.Masked}
			}
		}
		return nil
	}
	in := func(col string, extra ...lineage.Transformation) lineage.ColumnLineageField {
		ts := append(transformOf(col), extra...)
		if len(ts) == 0 {
			ts = []lineage.Transformation{lineage.Identity}
		}
		return lineage.ColumnLineageField{InputFields: []lineage.InputField{{
			Namespace: r.cfg.SourceNamespace, Name: r.cfg.Spec.Source.Topic, Field: col, Transformations: ts,
		}}}
	}
	var schema []lineage.SchemaField
	for _, p := range r.plan.Passthrough {
		fields[p] = in(p)
		schema = append(schema, lineage.SchemaField{Name: p})
	}
	for _, st := range r.plan.Steps {
		var ops []lineage.Transformation
		for _, op := range st.Ops {
			ops = append(ops, lineage.Transformed(string(op.Kind)))
		}
		fields[st.Output] = in(st.Input, ops...)
		schema = append(schema, lineage.SchemaField{Name: st.Output})
	}
	ds.Facets.ColumnLineage = &lineage.ColumnLineageFacet{Fields: fields}
	ds.Facets.Schema = &lineage.SchemaFacet{Fields: schema}
	return ds
}

func decisionFacet(g *group, executor string, d policy.Decision) lineage.Decision {
	return lineage.Decision{
		Jurisdiction: g.jurisdiction, Classes: g.classes(), Executor: executor, Allow: d.Allow,
		DecisionID: d.DecisionID, Revision: d.Revision, Reasons: d.Reasons, Rules: d.Rules,
		Obligations: lineage.Obligations{Mask: d.Obligations.Mask, Drop: d.Obligations.Drop, Hash: d.Obligations.Hash},
		Rows:        int64(len(g.rows)),
	}
}
