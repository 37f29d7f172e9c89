package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/backend"
)

const lineageUsage = `Usage:
  sluice lineage verify (--store URL | --spec FILE) [--key FILE] [--objects=false] [-o json]
  sluice lineage trace  --store URL (--topic T --partition P --offset O | --object KEY) [-o json]
  sluice lineage report --store URL [--residency] [--since T] [--until T] [-o json]
  sluice lineage export --store URL --openlineage URL [--api-key KEY] [--since T] [--until T]

URL is the lineage store of the pipeline (its spec's lineage.url):
file:///abs/path or s3://bucket/prefix?endpoint=host:port.
Run 'sluice lineage <command> -h' for details.
`

func cmdLineage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, lineageUsage)
		return fmt.Errorf("%w: lineage needs a sub-command (verify, trace, report, export)", errUsage)
	}
	switch args[0] {
	case "verify":
		return cmdLineageVerify(ctx, args[1:], stdout, stderr)
	case "trace":
		return cmdLineageTrace(ctx, args[1:], stdout, stderr)
	case "report":
		return cmdLineageReport(ctx, args[1:], stdout, stderr)
	case "export":
		return cmdLineageExport(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, lineageUsage)
		return nil
	}
	fmt.Fprint(stderr, lineageUsage)
	return fmt.Errorf("%w: unknown lineage sub-command %q", errUsage, args[0])
}

func cmdLineageVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("lineage verify", "lineage verify (--store URL | --spec FILE) [--key FILE] [--objects=false] [-o json]",
		`Checks that the lineage is complete and unaltered: every segment's ed25519
signature, every event's link to the previous one (hash chain, one chain per
topic partition), that consecutive batches of a partition are contiguous,
and that within each batch every offset is accounted for exactly once as a
feature row, a dead letter or a quarantined row.

With --objects (the default) it also reads every feature and quarantine
object the lineage names, from the store its event records (the sink URL,
with credentials from the environment as for the pipeline), and checks that
it exists with the recorded sha256, size and row count. Where the lineage
bucket has S3 Object Lock, every segment (and, in trails written before
signatures moved into the segments, every signature object) must carry
retention.

Exits 1 on any problem; the first broken link (by chain, then seq) is
printed first, naming chain, segment key, seq and object.

With --spec (the pipeline's spec) it also reads the offsets the
pipeline's consumer group has committed (source.brokers, source.group,
source.security) and checks that every committed offset is in its
partition's chain: the pipeline commits only after lineage is durable, so
a commit past a chain's end means a chain deleted whole or cut short (which
a folder or an unversioned bucket shows no other way) or offsets moved past
unprocessed records by hand. The commits are read before the lineage, so
a pipeline running meanwhile cannot cause a false alarm. --store defaults
to the spec's lineage.url.

By default the public key published beside the lineage is used; pass the
key you hold (--key) to rule out a replaced key.

A long trail takes a while (about 80 s per million events here): a
progress line goes to stderr every --progress (default 2s; 0: none).
`, stderr)
	store := fs.String("store", "", "lineage store `URL` (default with --spec: its lineage.url)")
	specFile := fs.String("spec", "", "pipeline spec `FILE`: also check its consumer group's committed offsets against the chains")
	pubFile := fs.String("key", "", "PEM ed25519 public key `file` (default: the published one)")
	objects := fs.Bool("objects", true, "check every feature and quarantine object's sha256, size and rows")
	every := fs.Duration("progress", 2*time.Second, "print progress to stderr this often (0: never)")
	var out outputFlag
	out.register(fs)
	asJSON, err := parseOutput(fs, &out, args)
	if err != nil {
		return err
	}
	// Commits first: the pipeline commits only after the lineage is
	// durable, so lineage read afterwards holds every commit seen here.
	var commits *lineage.Commits
	if *specFile != "" {
		spec, err := loadAuditSpec(*specFile, store)
		if err != nil {
			return err
		}
		if commits, err = specCommits(spec, false)(ctx); err != nil {
			return err
		}
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
	opts := lineage.VerifyOptions{Key: key, Commits: commits}
	if *objects {
		opts.Objects = openObjectStore
		opts.Rows = storage.CountRows
	}
	if *every > 0 {
		opts.Progress = verifyProgress(stderr, *every)
	}
	rep, err := lineage.VerifyWith(ctx, st, lineagePrefix, opts)
	if err != nil {
		return err
	}
	if asJSON {
		writeJSON(stdout, rep)
	} else {
		printVerify(stdout, rep, *objects)
	}
	if !rep.OK {
		return errFailed
	}
	return nil
}

// verifyProgress prints a verify's progress to w, at most once per every.
func verifyProgress(w io.Writer, every time.Duration) func(lineage.VerifyProgress) {
	start := time.Now()
	last := start
	return func(p lineage.VerifyProgress) {
		if now := time.Now(); now.Sub(last) >= every {
			last = now
			fmt.Fprintf(w, "verify: %s %d/%d (%.0f%%), %d events, %s\n", p.Stage, p.Done, p.Total,
				100*float64(p.Done)/float64(max(p.Total, 1)), p.Events, now.Sub(start).Round(time.Second))
		}
	}
}

func printVerify(w io.Writer, rep lineage.VerifyReport, objects bool) {
	status := "OK"
	if !rep.OK {
		status = "FAILED"
	}
	checked := "objects not checked"
	if objects {
		checked = fmt.Sprintf("%d objects checked", rep.Objects)
	}
	fmt.Fprintf(w, "lineage %s: %d chains, %d segments, %d events, %d replays, %s, retention %s, commits %s\n",
		status, rep.Chains, rep.Segments, rep.Events, rep.Replays, checked, rep.Retention, rep.Commits)
	if len(rep.Problems) > 0 {
		fmt.Fprintln(w, "  first broken link:", rep.Problems[0])
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(w, "  problem:", p)
	}
}

// openObjectStore opens the store of a dataset namespace for verify: the
// sink URL the runner recorded.
func openObjectStore(ctx context.Context, namespace string) (lineage.ObjectReader, error) {
	return backend.Open(ctx, namespace)
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
	fs := newFlags("lineage trace", "lineage trace --store URL (--topic T --partition P --offset O | --object KEY) [-o json]",
		`Shows where one Kafka record went: the lineage events whose offsets contain it,
with the outcome (features, dead letter, quarantine), the executor and its
location, every policy decision with its reasons, rule labels and policy
revision, and the object written with its sha256. With --object it shows
the events that wrote an object instead: KEY is the object's key, its URL
as trace prints it, or a path ending in the key. Exits 1 if no event
matches.

Examples:
  sluice lineage trace --store file://$PWD/.demo --topic events --partition 0 --offset 42
  sluice lineage trace --store file://$PWD/.demo --object pipeline=demo/date=2026-03-14/location=fra/events-0-00000000000000000000-00000000000000004841.parquet
`, stderr)
	store := fs.String("store", "", "lineage store `URL`")
	topic := fs.String("topic", "", "Kafka topic")
	partition := fs.Int("partition", -1, "Kafka partition")
	offset := fs.Int64("offset", -1, "Kafka offset")
	object := fs.String("object", "", "object `KEY` (or URL, or path ending in the key)")
	var out outputFlag
	out.register(fs)
	asJSON, err := parseOutput(fs, &out, args)
	if err != nil {
		return err
	}
	byRecord := *topic != "" || *partition >= 0 || *offset >= 0
	switch {
	case *object != "" && byRecord:
		return fmt.Errorf("%w: trace takes --object or --topic/--partition/--offset, not both", errUsage)
	case *object == "" && (*topic == "" || *partition < 0 || *offset < 0):
		return fmt.Errorf("%w: trace needs --topic, --partition and --offset, or --object", errUsage)
	}
	st, err := openLineageStore(ctx, *store)
	if err != nil {
		return err
	}
	var evs []lineage.Event
	var what string
	if *object != "" {
		evs, err = lineage.TraceObject(ctx, st, lineagePrefix, *object)
		what = "object " + *object
	} else {
		evs, err = lineage.Trace(ctx, st, lineagePrefix, *topic, *partition, *offset)
		what = fmt.Sprintf("record %s/%d@%d", *topic, *partition, *offset)
	}
	if err != nil {
		return err
	}
	if asJSON {
		if evs == nil {
			evs = []lineage.Event{}
		}
		writeJSON(stdout, evs)
	} else {
		printTrace(stdout, evs, what)
	}
	if len(evs) == 0 {
		if !asJSON {
			fmt.Fprintf(stderr, "no lineage event covers %s\n", what)
		}
		return errFailed
	}
	return nil
}

func printTrace(w io.Writer, evs []lineage.Event, what string) {
	for _, ev := range evs {
		f := ev.Run.Facets
		fmt.Fprintln(w, what)
		if f.KafkaOffsets != nil {
			k := f.KafkaOffsets
			fmt.Fprintf(w, "  batch      %s/%d offsets %d..%d (%d of them in this event)\n", k.Topic, k.Partition, k.First, k.Last, lineage.Count(k.Ranges))
		}
		if f.Outcome != nil {
			fmt.Fprintf(w, "  outcome    %s\n", f.Outcome.Kind)
			for _, r := range slices.Sorted(maps.Keys(f.Outcome.Reasons)) {
				fmt.Fprintf(w, "             %d × %s\n", f.Outcome.Reasons[r], r)
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
				fmt.Fprintf(w, "  object     %s (%d rows, %d bytes, sha256 %s)\n", lineage.ObjectURL(o.Namespace, obj.Key), obj.Rows, obj.Bytes, obj.SHA256)
			} else {
				fmt.Fprintf(w, "  output     %s %s\n", o.Namespace, o.Name)
			}
		}
		seq := "?"
		if f.Chain != nil {
			seq = strconv.FormatUint(f.Chain.Seq, 10)
		}
		fmt.Fprintf(w, "  event      seq %s, run %s at %s\n\n", seq, ev.Run.RunID, ev.EventTime)
	}
}

func cmdLineageReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("lineage report", "lineage report --store URL [--residency] [--since T] [--until T] [-o json]",
		`Summarises the lineage for an auditor: rows per data jurisdiction, executor,
location and outcome, and decisions per policy rule label.

With --residency it prints the residency matrix instead: rows per data
jurisdiction and executor location (with the jurisdiction the location is
in), and every row group processed where its decision did not allow it (a
deny for the executor that ran it, no decision about that executor, or rows
no decision covers). That count must be 0; otherwise the command lists the
groups and exits 1.

--since (inclusive) and --until (exclusive) select events by eventTime:
RFC 3339 (2026-03-14T09:00:00Z) or a UTC date (2026-03-14).
`, stderr)
	store := fs.String("store", "", "lineage store `URL`")
	residency := fs.Bool("residency", false, "print the residency matrix and the rows processed against their decision")
	var win windowFlags
	win.register(fs)
	var out outputFlag
	out.register(fs)
	asJSON, err := parseOutput(fs, &out, args)
	if err != nil {
		return err
	}
	window, err := win.window()
	if err != nil {
		return err
	}
	st, err := openLineageStore(ctx, *store)
	if err != nil {
		return err
	}
	if *residency {
		m, err := lineage.Residency(ctx, st, lineagePrefix, window)
		if err != nil {
			return err
		}
		if asJSON {
			writeJSON(stdout, m)
		} else {
			printResidency(stdout, m)
		}
		if m.ViolationRows > 0 || len(m.Violations) > 0 {
			return errFailed
		}
		return nil
	}
	rep, err := lineage.ReportWindow(ctx, st, lineagePrefix, window)
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

func printResidency(w io.Writer, m lineage.ResidencyMatrix) {
	switch {
	case m.Since != "" && m.Until != "":
		fmt.Fprintf(w, "events at or after %s and before %s\n\n", m.Since, m.Until)
	case m.Since != "":
		fmt.Fprintf(w, "events at or after %s\n\n", m.Since)
	case m.Until != "":
		fmt.Fprintf(w, "events before %s\n\n", m.Until)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "DATA JURISDICTION\tOUTCOME\tLOCATION\tLOCATION JURISDICTION\tROWS\n")
	for _, c := range m.Cells {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", orDash(c.Jurisdiction), c.Outcome, orDash(c.Location), orDash(c.LocationJurisdiction), c.Rows)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d events, %d feature rows processed\n", m.Events, m.ProcessedRows)
	if m.Undated > 0 {
		fmt.Fprintf(w, "%d events without a readable eventTime left out\n", m.Undated)
	}
	fmt.Fprintf(w, "rows processed where their decision did not allow it: %d\n", m.ViolationRows)
	for _, v := range m.Violations {
		fmt.Fprintf(w, "  VIOLATION chain %s/%s: segment %s: seq %d: %s/%d@%d..%d: %d rows of %s %v on %s at %s: %s",
			v.Pipeline, v.Chain, v.Segment, v.Seq, v.Topic, v.Partition, v.First, v.Last, v.Rows, orDash(v.Jurisdiction), v.Classes, v.Executor, v.Location, v.Reason)
		if v.DecisionID != "" {
			fmt.Fprintf(w, " (decision %s)", v.DecisionID)
		}
		fmt.Fprintln(w)
	}
}

func cmdLineageExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("lineage export", "lineage export --store URL --openlineage URL [--api-key KEY] [--since T] [--until T] [-o json]",
		`Sends the lineage events to an OpenLineage endpoint, for teams that already
run one (e.g. Marquez): each event is POSTed as JSON to URL/api/v1/lineage
(--endpoint changes the path), in chain order, with "Authorization: Bearer
KEY" when --api-key or $OPENLINEAGE_API_KEY is set. A 5xx or 429 answer or a
network error is retried with backoff; any other refusal stops the export
with the event it refused. Sending again is safe: consumers key events by
run id and time.

Example:
  sluice lineage export --store file://$PWD/.demo --openlineage http://localhost:5000 --since 2026-03-14
`, stderr)
	store := fs.String("store", "", "lineage store `URL`")
	target := fs.String("openlineage", "", "OpenLineage server `URL`, e.g. http://marquez:5000")
	endpoint := fs.String("endpoint", "api/v1/lineage", "`path` below the URL that takes events")
	apiKey := fs.String("api-key", os.Getenv("OPENLINEAGE_API_KEY"), "bearer `token` (default $OPENLINEAGE_API_KEY)")
	var win windowFlags
	win.register(fs)
	var out outputFlag
	out.register(fs)
	asJSON, err := parseOutput(fs, &out, args)
	if err != nil {
		return err
	}
	window, err := win.window()
	if err != nil {
		return err
	}
	if *target == "" {
		return fmt.Errorf("%w: export needs --openlineage URL", errUsage)
	}
	st, err := openLineageStore(ctx, *store)
	if err != nil {
		return err
	}
	rep, err := lineage.Export(ctx, st, lineagePrefix, lineage.ExportConfig{
		URL: *target, Endpoint: *endpoint, APIKey: *apiKey, Window: window,
	})
	if asJSON {
		writeJSON(stdout, rep)
	} else {
		fmt.Fprintf(stdout, "sent %d events (%d outside the window, %d retries)\n", rep.Sent, rep.Skipped, rep.Retries)
	}
	return err
}

// windowFlags are --since and --until.
type windowFlags struct{ since, until string }

func (w *windowFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&w.since, "since", "", "only events at or after `T` (RFC 3339 or YYYY-MM-DD, UTC)")
	fs.StringVar(&w.until, "until", "", "only events before `T` (RFC 3339 or YYYY-MM-DD, UTC)")
}

func (w *windowFlags) window() (lineage.Window, error) {
	var out lineage.Window
	var err error
	if out.Since, err = parseTimeFlag("since", w.since); err != nil {
		return out, err
	}
	if out.Until, err = parseTimeFlag("until", w.until); err != nil {
		return out, err
	}
	if !out.Since.IsZero() && !out.Until.IsZero() && !out.Since.Before(out.Until) {
		return out, fmt.Errorf("%w: --since %s is not before --until %s", errUsage, w.since, w.until)
	}
	return out, nil
}

func parseTimeFlag(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: --%s %q: want RFC 3339 (2026-03-14T09:00:00Z) or a date (2026-03-14)", errUsage, name, v)
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
