package lineage

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Window selects events by eventTime: Since (inclusive) to Until
// (exclusive). A zero bound is open.
type Window struct {
	Since, Until time.Time
}

// holds reports whether eventTime lies in w; dated is false when it
// cannot be parsed (such an event lies in no bounded window).
func (w Window) holds(eventTime string) (in, dated bool) {
	if w.Since.IsZero() && w.Until.IsZero() {
		return true, true
	}
	t, err := time.Parse(time.RFC3339Nano, eventTime)
	if err != nil {
		return false, false
	}
	if !w.Since.IsZero() && t.Before(w.Since) {
		return false, true
	}
	if !w.Until.IsZero() && !t.Before(w.Until) {
		return false, true
	}
	return true, true
}

// decisionGroups splits an event's decisions into the row groups they
// were about. The runner records, for each row group, one decision per
// executor it asked, one after the other; a new group starts where the
// jurisdiction, classes or row count change, or an executor repeats.
func decisionGroups(ds []Decision) [][]Decision {
	var out [][]Decision
	for i, d := range ds {
		if i > 0 {
			g := out[len(out)-1]
			p := g[0]
			same := p.Jurisdiction == d.Jurisdiction && p.Rows == d.Rows && slices.Equal(p.Classes, d.Classes) &&
				!slices.ContainsFunc(g, func(x Decision) bool { return x.Executor == d.Executor })
			if same {
				out[len(out)-1] = append(g, d)
				continue
			}
		}
		out = append(out, []Decision{d})
	}
	return out
}

// ResidencyMatrix says where rows of each jurisdiction were processed, and
// lists every row processed where its decision did not allow it.
type ResidencyMatrix struct {
	// Since and Until are the window (RFC 3339), empty when open.
	Since string `json:"since,omitempty"`
	Until string `json:"until,omitempty"`
	// Events is the number of events in the window.
	Events int `json:"events"`
	// Undated counts events skipped because their eventTime does not
	// parse (only with a bounded window).
	Undated int `json:"undated,omitempty"`
	// Cells count rows per (data jurisdiction, executor location,
	// outcome), sorted. Quarantined rows and dead letters were processed
	// nowhere: their Location is empty.
	Cells []ResidencyCell `json:"cells"`
	// ProcessedRows is the number of feature rows in the window.
	ProcessedRows int64 `json:"processedRows"`
	// ViolationRows is the number of feature rows processed where their
	// decision did not allow it; an audit wants 0.
	ViolationRows int64       `json:"violationRows"`
	Violations    []Violation `json:"violations"`
}

// ResidencyCell is one cell of the matrix.
type ResidencyCell struct {
	// Jurisdiction is the data's ("" for dead letters, which were not
	// decoded).
	Jurisdiction string `json:"jurisdiction"`
	// Location and LocationJurisdiction are the executor's location and
	// the jurisdiction it lies in.
	Location             string `json:"location"`
	LocationJurisdiction string `json:"locationJurisdiction"`
	Outcome              string `json:"outcome"`
	Rows                 int64  `json:"rows"`
}

// Violation is a row group processed without an allowing decision.
type Violation struct {
	Pipeline  string `json:"pipeline"`
	Chain     string `json:"chain"`
	Segment   string `json:"segment"`
	Seq       uint64 `json:"seq"`
	EventTime string `json:"eventTime"`
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	First     int64  `json:"first"`
	Last      int64  `json:"last"`
	// Jurisdiction and Classes describe the rows ("" when no decision
	// covers them).
	Jurisdiction string   `json:"jurisdiction"`
	Classes      []string `json:"classes,omitempty"`
	Executor     string   `json:"executor"`
	Location     string   `json:"location"`
	// DecisionID is the decision that denied, "" when there was none.
	DecisionID string `json:"decisionId,omitempty"`
	Rows       int64  `json:"rows"`
	Reason     string `json:"reason"`
	// Object is NAMESPACE/KEY of the features written.
	Object string `json:"object,omitempty"`
}

// Residency reads the events under prefix whose eventTime lies in w and
// builds the residency matrix. For a features event each row group is
// judged by the decision about the executor its sluice_executor facet
// names: a deny, no decision about that executor, or rows of the event
// that no decision covers are violations. (The runner writes one features
// event per location and names its first executor; a location with
// several executors in one batch would show its other executors' groups
// as "no decision about executor".) Replayed offsets count as often as they were recorded.
func Residency(ctx context.Context, store Store, prefix string, w Window) (ResidencyMatrix, error) {
	m := ResidencyMatrix{Cells: []ResidencyCell{}, Violations: []Violation{}}
	if !w.Since.IsZero() {
		m.Since = FormatTime(w.Since)
	}
	if !w.Until.IsZero() {
		m.Until = FormatTime(w.Until)
	}
	type cellKey struct{ jur, loc, locJur, outcome string }
	cells := map[cellKey]int64{}
	err := Walk(ctx, store, prefix, func(e Entry) error {
		in, dated := w.holds(e.Event.EventTime)
		if !dated {
			m.Undated++
		}
		if !in {
			return nil
		}
		m.Events++
		ev := &e.Event
		f := ev.Run.Facets
		outcome := ""
		if f.Outcome != nil {
			outcome = f.Outcome.Kind
		}
		var ranges int64
		if f.KafkaOffsets != nil {
			ranges = Count(f.KafkaOffsets.Ranges)
		}
		var decisions []Decision
		if f.ResidencyDecision != nil {
			decisions = f.ResidencyDecision.Decisions
		}
		if outcome != OutcomeFeatures {
			groups := decisionGroups(decisions)
			if len(groups) == 0 {
				cells[cellKey{outcome: outcome}] += ranges
			}
			for _, g := range groups {
				cells[cellKey{jur: g[0].Jurisdiction, outcome: outcome}] += g[0].Rows
			}
			return nil
		}

		var exec string
		var loc Location
		if f.Executor != nil {
			exec, loc = f.Executor.ID, f.Executor.Location
		}
		violation := func(g []Decision, decisionID string, rows int64, reason string) {
			v := Violation{
				Pipeline: e.Pipeline, Chain: e.Chain, Segment: e.Segment, EventTime: ev.EventTime,
				Executor: exec, Location: loc.Name, DecisionID: decisionID, Rows: rows, Reason: reason,
			}
			if f.Chain != nil {
				v.Seq = f.Chain.Seq
			}
			if k := f.KafkaOffsets; k != nil {
				v.Topic, v.Partition, v.First, v.Last = k.Topic, k.Partition, k.First, k.Last
			}
			if len(g) > 0 {
				v.Jurisdiction, v.Classes = g[0].Jurisdiction, g[0].Classes
			}
			for _, o := range ev.Outputs {
				if o.OutputFacets.Object != nil {
					v.Object = ObjectURL(o.Namespace, o.OutputFacets.Object.Key)
					break
				}
			}
			m.Violations = append(m.Violations, v)
			m.ViolationRows += rows
		}
		var covered int64
		for _, g := range decisionGroups(decisions) {
			rows := g[0].Rows
			covered += rows
			m.ProcessedRows += rows
			cells[cellKey{g[0].Jurisdiction, loc.Name, loc.Jurisdiction, outcome}] += rows
			var d *Decision
			for i := range g {
				if g[i].Executor == exec {
					d = &g[i]
					break
				}
			}
			switch {
			case exec == "":
				violation(g, "", rows, "processed on an executor the event does not name")
			case d == nil:
				violation(g, "", rows, fmt.Sprintf("no decision about executor %s", exec))
			case !d.Allow:
				violation(g, d.DecisionID, rows, fmt.Sprintf("decision denies executor %s: %s", d.Executor, strings.Join(d.Reasons, "; ")))
			}
		}
		if extra := ranges - covered; extra > 0 {
			m.ProcessedRows += extra
			cells[cellKey{"", loc.Name, loc.Jurisdiction, outcome}] += extra
			violation(nil, "", extra, "rows processed that no decision covers")
		}
		return nil
	})
	if err != nil {
		return m, err
	}
	for k, n := range cells {
		m.Cells = append(m.Cells, ResidencyCell{Jurisdiction: k.jur, Location: k.loc, LocationJurisdiction: k.locJur, Outcome: k.outcome, Rows: n})
	}
	slices.SortFunc(m.Cells, func(a, b ResidencyCell) int {
		return cmp.Or(cmp.Compare(a.Jurisdiction, b.Jurisdiction), cmp.Compare(a.Outcome, b.Outcome),
			cmp.Compare(a.Location, b.Location), cmp.Compare(a.LocationJurisdiction, b.LocationJurisdiction))
	})
	return m, nil
}

// TraceObject returns the events whose sluice_object names key: the
// object's key in its store, NAMESPACE/KEY as trace prints it, or any path
// or URL that ends in "/" + the object's key. It reads every segment.
func TraceObject(ctx context.Context, store Store, prefix, key string) ([]Event, error) {
	key = strings.TrimSpace(key)
	var out []Event
	err := Walk(ctx, store, prefix, func(e Entry) error {
		for _, o := range e.Event.Outputs {
			obj := o.OutputFacets.Object
			if obj == nil || obj.Key == "" {
				continue
			}
			if key == obj.Key || key == ObjectURL(o.Namespace, obj.Key) || strings.HasSuffix(key, "/"+obj.Key) {
				out = append(out, e.Event)
				return nil
			}
		}
		return nil
	})
	return out, err
}

// ObjectURL names the object at key of the store namespace names (a store
// URL): the key joins the URL's path, before any query, so
// ObjectURL("s3://b/p?endpoint=h:9000", "k.parquet") is
// "s3://b/p/k.parquet?endpoint=h:9000". A namespace that is not a URL is
// joined with "/".
func ObjectURL(namespace, key string) string {
	u, err := url.Parse(namespace)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return strings.TrimRight(namespace, "/") + "/" + key
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/" + key
	u.RawPath = ""
	return u.String()
}
