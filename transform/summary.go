package transform

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/sluice-dev/sluice/gpuexec"
)

// Summary writes a one-screen, human-readable overview of the spec: what
// it reads, which fields carry which data classes, the features and their
// op chains, where it may run and where results, quarantined rows and
// lineage go. `sluice validate` prints it for a valid spec.
func (s *Spec) Summary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	line := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }

	purpose := s.Purpose
	if purpose == "" {
		purpose = "(none)"
	}
	line("pipeline\t%s (purpose %s)", s.Name, purpose)
	if s.File != "" {
		line("file\t%s", s.File)
	}
	src := s.Source
	line("source\ttopic %s, group %s, start %s, format %s", src.Topic, src.Group, src.StartOffset, src.Format)
	line("\tbrokers %s", strings.Join(src.Brokers, ", "))
	line("\tdead letters to %s", src.DeadLetterTopic)
	b := s.Batching
	line("batching\t%d records, %s or %s, whichever comes first", b.MaxRecords, formatBytes(b.MaxBytes), b.Linger)
	line("\ta record over %s is a dead letter, not decoded", formatBytes(b.MaxRecordBytes))

	keys := []string{}
	if len(s.Entity) > 0 {
		keys = append(keys, "entity "+strings.Join(s.Entity, ", "))
	}
	if s.EventTime != "" {
		keys = append(keys, "event time "+s.EventTime)
	}
	if s.Residency.Jurisdiction != "" {
		keys = append(keys, "jurisdiction from "+s.Residency.Jurisdiction)
	}
	line("schema\t%d fields; %s", len(s.Schema), strings.Join(keys, "; "))
	for _, f := range s.Schema {
		typ := f.Type
		if f.Nullable {
			typ += " nullable"
		}
		extra := strings.Join(f.Classes, ", ")
		if f.Path != "" && f.Path != f.Name {
			extra = strings.TrimSpace("from " + f.Path + "  " + extra)
		}
		if extra == "" {
			line("  %s\t%s", f.Name, typ)
			continue
		}
		line("  %s\t%s\t%s", f.Name, typ, extra)
	}

	line("features\t%d", len(s.Features))
	for _, f := range s.Features {
		chain := []string{f.Input}
		for _, op := range f.Ops {
			chain = append(chain, formatOp(op))
		}
		line("  %s\t=\t%s", f.Name, strings.Join(chain, " → "))
	}

	line("executors\t%d", len(s.Executors))
	for _, e := range s.Executors {
		l := e.Location
		where := []string{l.Kind}
		for _, part := range []string{l.Provider, l.Site, l.Region} {
			if part != "" {
				where = append(where, part)
			}
		}
		certs := "no certifications"
		if len(l.Certifications) > 0 {
			certs = "certified " + strings.Join(l.Certifications, ", ")
		}
		kind := e.Kind
		if e.Endpoint != "" {
			kind += " at " + e.Endpoint
		}
		line("  %s\t%s\t%s, jurisdiction %s, location %s, %s → sink %s", e.ID, kind, strings.Join(where, " "), l.Jurisdiction, l.Name, certs, e.Sink)
	}

	line("sinks\t%d", len(s.Sinks))
	for _, k := range s.Sinks {
		line("  %s\t%s\t%s", k.Name, k.URL, k.Compression)
	}
	line("quarantine\tsink %s, %s", s.Quarantine.Sink, s.Quarantine.Compression)
	signed := "not signed (no signing_key)"
	if s.Lineage.SigningKey != "" {
		signed = "signed with " + s.Lineage.SigningKey
	}
	line("lineage\t%s, %s", s.Lineage.URL, signed)
}

// formatOp writes an op the way a person would: clip(0..50000).
func formatOp(op gpuexec.Op) string {
	switch op.Kind {
	case gpuexec.OpFillMissing:
		return fmt.Sprintf("fill_missing(%g)", op.Value)
	case gpuexec.OpClip, gpuexec.OpMinMax:
		return fmt.Sprintf("%s(%g..%g)", op.Kind, op.Min, op.Max)
	case gpuexec.OpStandardize:
		return fmt.Sprintf("standardize(mean %g, std %g)", op.Mean, op.Std)
	case gpuexec.OpBucketize:
		bs := make([]string, len(op.Boundaries))
		for i, b := range op.Boundaries {
			bs[i] = fmt.Sprintf("%g", b)
		}
		return "bucketize(" + strings.Join(bs, ", ") + ")"
	case gpuexec.OpHashBucket:
		return fmt.Sprintf("hash_bucket(%d)", op.Buckets)
	case gpuexec.OpCategorify:
		return fmt.Sprintf("categorify(%d categories)", len(op.Vocabulary))
	}
	return string(op.Kind)
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
