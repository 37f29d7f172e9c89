package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage/backend"
)

const lineageUsage = `Usage:
  sluice lineage verify --store URL [--key FILE] [-o json]
  sluice lineage trace  --store URL --topic T --partition P --offset O [-o json]
  sluice lineage report --store URL [-o json]

URL is the lineage store of the pipeline (its spec's lineage.url):
file:///abs/path or s3://bucket/prefix?endpoint=host:port.
Run 'sluice lineage <command> -h' for details.
`

func cmdLineage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, lineageUsage)
		return fmt.Errorf("%w: lineage needs a sub-command (verify, trace, report)", errUsage)
	}
	switch args[0] {
	case "verify":
		return cmdLineageVerify(ctx, args[1:], stdout, stderr)
	case "trace":
		return cmdLineageTrace(ctx, args[1:], stdout, stderr)
	case "report":
		return cmdLineageReport(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, lineageUsage)
		return nil
	}
	fmt.Fprint(stderr, lineageUsage)
	return fmt.Errorf("%w: unknown lineage sub-command %q", errUsage, args[0])
}

func cmdLineageVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("lineage verify", "lineage verify --store URL [--key FILE] [-o json]",
		`Checks that the lineage is complete and unaltered: every segment's ed25519
signature, every event's link to the previous one (hash chain, one chain per
topic partition), that consecutive batches of a partition are contiguous,
and that within each batch every offset is accounted for exactly once as a
feature row, a dead letter or a quarantined row. Exits 1 on any problem.

By default the public key published beside the lineage is used; pass the
key you hold (--key) to rule out a replaced key.
`, stderr)
	store := fs.String("store", "", "lineage store `URL`")
	pubFile := fs.String("key", "", "PEM ed25519 public key `file` (default: the published one)")
	var out outputFlag
	out.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	asJSON, err := out.json()
	if err != nil {
		return err
	}
	st, err := openLineageStore(ctx, *store)
	if err != nil {
		return err
	}
	var pub []byte
	if *pubFile != "" {
		if pub, err = os.ReadFile(*pubFile); err != nil {
			return err
		}
	}
	var key = lineagePub(pub)
	if pub != nil && key == nil {
		return fmt.Errorf("%w: %s is not a PEM ed25519 public key", errUsage, *pubFile)
	}
	rep, err := lineage.Verify(ctx, st, lineagePrefix, key)
	if err != nil {
		return err
	}
	if asJSON {
		writeJSON(stdout, rep)
	} else {
		status := "OK"
		if !rep.OK {
			status = "FAILED"
		}
		fmt.Fprintf(stdout, "lineage %s: %d chains, %d segments, %d events, %d replays\n", status, rep.Chains, rep.Segments, rep.Events, rep.Replays)
		for _, p := range rep.Problems {
			fmt.Fprintln(stdout, "  problem:", p)
		}
	}
	if !rep.OK {
		return errFailed
	}
	return nil
}

func lineagePub(pem []byte) ed25519.PublicKey {
	if pem == nil {
		return nil
	}
	k, err := lineage.ParsePublicKey(pem)
	if err != nil {
		return nil
	}
	return k
}

func cmdLineageTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("lineage trace", "lineage trace --store URL --topic T --partition P --offset O [-o json]",
		`Shows where one Kafka record went: the lineage events whose offsets contain it,
with the outcome (features, dead letter, quarantine), the executor and its
location, every policy decision with its reasons, rule labels and policy
revision, and the object written with its sha256. Exits 1 if no event
covers the record.

Example:
  sluice lineage trace --store file://$PWD/.demo --topic events --partition 0 --offset 42
`, stderr)
	store := fs.String("store", "", "lineage store `URL`")
	topic := fs.String("topic", "", "Kafka topic")
	partition := fs.Int("partition", -1, "Kafka partition")
	offset := fs.Int64("offset", -1, "Kafka offset")
	var out outputFlag
	out.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	asJSON, err := out.json()
	if err != nil {
		return err
	}
	if *topic == "" || *partition < 0 || *offset < 0 {
		return fmt.Errorf("%w: trace needs --topic, --partition and --offset", errUsage)
	}
	st, err := openLineageStore(ctx, *store)
	if err != nil {
		return err
	}
	evs, err := lineage.Trace(ctx, st, lineagePrefix, *topic, *partition, *offset)
	if err != nil {
		return err
	}
	if asJSON {
		if evs == nil {
			evs = []lineage.Event{}
		}
		writeJSON(stdout, evs)
	} else {
		printTrace(stdout, evs, *topic, *partition, *offset)
	}
	if len(evs) == 0 {
		if !asJSON {
			fmt.Fprintf(stderr, "no lineage event covers %s/%d@%d\n", *topic, *partition, *offset)
		}
		return errFailed
	}
	return nil
}

func printTrace(w io.Writer, evs []lineage.Event, topic string, partition int, offset int64) {
	for _, ev := range evs {
		f := ev.Run.Facets
		fmt.Fprintf(w, "record %s/%d@%d\n", topic, partition, offset)
		if f.KafkaOffsets != nil {
			fmt.Fprintf(w, "  batch      offsets %d..%d\n", f.KafkaOffsets.First, f.KafkaOffsets.Last)
		}
		if f.Outcome != nil {
			fmt.Fprintf(w, "  outcome    %s\n", f.Outcome.Kind)
			for r, n := range f.Outcome.Reasons {
				fmt.Fprintf(w, "             %d × %s\n", n, r)
			}
		}
		if f.Executor != nil {
			l := f.Executor.Location
			fmt.Fprintf(w, "  executor   %s (%s) at %s: %s %s, jurisdiction %s, %d ms\n",
				f.Executor.ID, f.Executor.Kind, l.Name, l.Kind, strings.TrimSpace(l.Provider+" "+l.Site+" "+l.Region), l.Jurisdiction, f.Executor.DurationMs)
		}
		if f.ResidencyDecision != nil {
			for _, d := range f.ResidencyDecision.Decisions {
				verdict := "deny "
				if d.Allow {
					verdict = "allow"
				}
				fmt.Fprintf(w, "  decision   %s %s %v → %s  (%d rows; decision %s; revision %.19s…)\n",
					verdict, d.Jurisdiction, d.Classes, d.Executor, d.Rows, d.DecisionID, d.Revision)
				for _, r := range d.Reasons {
					fmt.Fprintf(w, "             reason: %s\n", r)
				}
				if len(d.Rules) > 0 {
					fmt.Fprintf(w, "             rules: %s\n", strings.Join(d.Rules, ", "))
				}
				if o := d.Obligations; len(o.Hash)+len(o.Mask)+len(o.Drop) > 0 {
					fmt.Fprintf(w, "             obligations: hash %v mask %v drop %v\n", o.Hash, o.Mask, o.Drop)
				}
			}
		}
		for _, o := range ev.Outputs {
			if obj := o.OutputFacets.Object; obj != nil {
				fmt.Fprintf(w, "  object     %s/%s (%d rows, %d bytes, sha256 %s)\n", o.Namespace, obj.Key, obj.Rows, obj.Bytes, obj.SHA256)
			} else {
				fmt.Fprintf(w, "  output     %s %s\n", o.Namespace, o.Name)
			}
		}
		fmt.Fprintf(w, "  event      run %s at %s\n\n", ev.Run.RunID, ev.EventTime)
	}
}

func cmdLineageReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("lineage report", "lineage report --store URL [-o json]",
		`Summarises the lineage for an auditor: rows per data jurisdiction, executor,
location and outcome, and decisions per policy rule label.
`, stderr)
	store := fs.String("store", "", "lineage store `URL`")
	var out outputFlag
	out.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	asJSON, err := out.json()
	if err != nil {
		return err
	}
	st, err := openLineageStore(ctx, *store)
	if err != nil {
		return err
	}
	rep, err := lineage.Report(ctx, st, lineagePrefix)
	if err != nil {
		return err
	}
	if asJSON {
		writeJSON(stdout, rep)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "JURISDICTION\tOUTCOME\tEXECUTOR\tLOCATION\tROWS\n")
	for _, r := range rep.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", orDash(r.Jurisdiction), r.Outcome, orDash(r.Executor), orDash(r.Location), r.Rows)
	}
	fmt.Fprintf(tw, "\nRULE\tDECISIONS\tALLOWED\tDENIED\t\n")
	for _, r := range rep.Rules {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", r.Rule, r.Decisions, r.Allowed, r.Denied)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\n%d events\n", rep.Events)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func openLineageStore(ctx context.Context, url string) (lineage.Store, error) {
	if url == "" {
		return nil, fmt.Errorf("%w: --store URL is required (file:///abs/path or s3://bucket/prefix?endpoint=host:port)", errUsage)
	}
	st, err := backend.Open(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return st, nil
}
