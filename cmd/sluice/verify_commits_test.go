package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/lineage"
	"github.com/sluice-dev/sluice/transform"
)

// TestLineageVerifyAgainstCommits: `lineage verify --spec` reads the
// consumer group's committed offsets from a real Kafka-protocol broker
// and fails when a commit has no lineage: a chain deleted whole (which a
// folder store shows no other way) or a group moved past its records.
func TestLineageVerifyAgainstCommits(t *testing.T) {
	base := demoTrail(t, 2000)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	// What the trail covers, per partition, as verify reports it.
	code, out, errOut := sluice(t, "lineage", "verify", "--store", "file://"+base, "-o", "json")
	var rep lineage.VerifyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitOK || len(rep.Partitions) != 4 {
		t.Fatalf("verify: exit %d, %v, partitions %+v\n%s", code, err, rep.Partitions, errOut)
	}
	// The group committed exactly what the lineage records, as the
	// pipeline does.
	next := map[int]int64{}
	for _, c := range rep.Partitions {
		next[c.Partition] = c.Last + 1
	}
	commit(t, brokers, "audit-demo", next)
	spec := filepath.Join(t.TempDir(), "demo.yaml")
	writeFile(t, spec, demoSourceSpec(brokers[0], "audit-demo", "file://"+base))

	code, out, errOut = sluice(t, "lineage", "verify", "--spec", spec)
	if code != exitOK || !strings.Contains(out, "commits checked") {
		t.Fatalf("verify --spec of an intact trail: exit %d\n%s%s", code, out, errOut)
	}

	t.Run("chain deleted", func(t *testing.T) {
		dir := copyTree(t, base)
		if err := os.RemoveAll(filepath.Join(dir, lineagePrefix, "pipeline=demo", "chain=events-1")); err != nil {
			t.Fatal(err)
		}
		// Without the commits, nothing shows it.
		if code, out, _ := sluice(t, "lineage", "verify", "--store", "file://"+dir); code != exitOK {
			t.Fatalf("sanity: verify without --spec: exit %d\n%s", code, out)
		}
		code, out, errOut := sluice(t, "lineage", "verify", "--spec", spec, "--store", "file://"+dir)
		if code != exitFail || !strings.Contains(out, "chain demo/events-1") || !strings.Contains(out, "no chain records the partition") {
			t.Fatalf("verify --spec with a chain deleted: exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("group moved past its records", func(t *testing.T) {
		moved := map[int]int64{2: next[2] + 100}
		commit(t, brokers, "audit-demo", moved)
		defer commit(t, brokers, "audit-demo", map[int]int64{2: next[2]})
		code, out, errOut := sluice(t, "lineage", "verify", "--spec", spec)
		want := fmt.Sprintf("offsets %d..%d were committed without lineage", next[2], next[2]+99)
		if code != exitFail || !strings.Contains(out, "chain demo/events-2") || !strings.Contains(out, want) {
			t.Fatalf("verify --spec after a commit past the lineage: exit %d, want a problem saying %q\n%s%s", code, want, out, errOut)
		}
	})
	t.Run("serve", func(t *testing.T) {
		st, err := openLineageStore(context.Background(), "file://"+base)
		if err != nil {
			t.Fatal(err)
		}
		moved := map[int]int64{}
		for p, n := range next {
			moved[p] = n
		}
		moved[0] += 5
		var fail error
		h := newHTTPServer(httpOptions{Store: st, Commits: func(context.Context) (*lineage.Commits, error) {
			return &lineage.Commits{Pipeline: "demo", Topic: "events", Group: "audit-demo", Next: moved}, fail
		}})
		var v lineage.VerifyReport
		if rec := get(t, h, "/api/v1/verify", ""); rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &v) != nil {
			t.Fatalf("/api/v1/verify: %d %s", rec.Code, rec.Body)
		}
		if v.OK || v.Commits != "checked" || !strings.Contains(strings.Join(v.Problems, "\n"), "chain demo/events-0") {
			t.Fatalf("/api/v1/verify with a commit past the lineage: ok %v, commits %q, %v", v.OK, v.Commits, v.Problems)
		}
		fail = fmt.Errorf("broker unreachable")
		if rec := get(t, h, "/api/v1/verify", ""); rec.Code != 502 || !strings.Contains(rec.Body.String(), "broker unreachable") {
			t.Fatalf("/api/v1/verify when the commits cannot be read: %d %s", rec.Code, rec.Body)
		}
	})
	t.Run("wrong group", func(t *testing.T) {
		wrong := filepath.Join(t.TempDir(), "wrong.yaml")
		b, _ := os.ReadFile(spec)
		writeFile(t, wrong, []byte(strings.Replace(string(b), "group: audit-demo", "group: audit-dmeo", 1)))
		code, out, errOut := sluice(t, "lineage", "verify", "--spec", wrong)
		if code == exitOK || !strings.Contains(errOut, "committed no offsets") {
			t.Fatalf("verify --spec with a group that never committed: exit %d\n%s%s", code, out, errOut)
		}
	})
}

// TestSpecCommitsOfANewGroup: beside a running pipeline (sluice run
// --http) a group that has committed nothing yet is new, not an error; for
// an auditor's --spec it is (a wrong group name must not pass).
func TestSpecCommitsOfANewGroup(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	spec, err := transform.Parse("spec.yaml", demoSourceSpec(cluster.ListenAddrs()[0], "", "file:///tmp/unused"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := specCommits(spec, true)(context.Background())
	if err != nil || len(c.Next) != 0 || c.Group != "sluice-demo" {
		t.Fatalf("running pipeline, new group: %+v, %v", c, err)
	}
	if _, err := specCommits(spec, false)(context.Background()); !errors.Is(err, kafka.ErrNoCommits) {
		t.Fatalf("auditor, new group: %v, want ErrNoCommits", err)
	}
}

// demoSourceSpec is a valid spec named like the demo pipeline, reading
// its topic from broker as group (empty: the default group), with its
// lineage at lineageURL: what verify --spec needs of one.
func demoSourceSpec(broker, group, lineageURL string) []byte {
	source := fmt.Sprintf("{brokers: [%q], topic: events}", broker)
	if group != "" {
		source = fmt.Sprintf("{brokers: [%q], topic: events, group: %s}", broker, group)
	}
	return fmt.Appendf(nil, `name: demo
source: %s
schema:
  - {name: amount, type: float64}
features:
  - {name: amount_log, input: amount, ops: [log1p]}
executors:
  - {id: local, location: {kind: onprem, jurisdiction: DE}, sink: local}
sinks:
  - {name: local, url: "file:///tmp/unused"}
quarantine: {sink: local}
lineage: {url: %q}
`, source, lineageURL)
}

// commit sets group's committed offsets as a consumer without members can.
func commit(t *testing.T, brokers []string, group string, next map[int]int64) {
	t.Helper()
	var offs []kafkago.OffsetCommit
	for p, o := range next {
		offs = append(offs, kafkago.OffsetCommit{Partition: p, Offset: o})
	}
	cl := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 5 * time.Second}
	res, err := cl.OffsetCommit(context.Background(), &kafkago.OffsetCommitRequest{
		GroupID: group, GenerationID: -1, Topics: map[string][]kafkago.OffsetCommit{"events": offs},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Topics["events"] {
		if p.Error != nil {
			t.Fatal(p.Error)
		}
	}
}
