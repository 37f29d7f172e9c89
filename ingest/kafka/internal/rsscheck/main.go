// Command rsscheck measures the memory of a Source draining a large
// backlog: it starts a broker process (kfake, in a child process so that
// the broker's copy of the backlog does not count), which produces the
// backlog to itself, then consumes it with default batching and in-flight
// limits and reports the consumer's peak RSS (VmHWM), its peak Go heap and
// its RSS along the way.
//
//	go run ./ingest/kafka/internal/rsscheck -records 5000000
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest"
	"github.com/sluice-dev/sluice/ingest/kafka"
)

const topic = "backlog"

func main() {
	broker := flag.Bool("broker", false, "run as the broker child process")
	records := flag.Int("records", 5_000_000, "records in the backlog")
	partitions := flag.Int("partitions", 4, "partitions of the topic")
	flag.Parse()
	if *broker {
		runBroker(*records, *partitions)
		return
	}
	if err := run(*records, *partitions); err != nil {
		log.Fatal(err)
	}
}

// value is a record of about 190 bytes.
func value(p, seq int) []byte {
	return fmt.Appendf(nil, `{"p":%d,"seq":%d,"country":"DE","payload":{"merchant":"Fresh Market %05d","note":"%0120d"}}`,
		p, seq, seq%100000, seq)
}

// runBroker starts kfake, produces the backlog, prints the address, and
// serves until stdin closes; then it prints its own peak RSS.
func runBroker(records, partitions int) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), topic))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		log.Fatal(err)
	}
	const chunk = 20000
	for from := 0; from < records; from += chunk {
		recs := make([]*kgo.Record, 0, chunk)
		for i := from; i < min(from+chunk, records); i++ {
			p := i % partitions
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(p), Value: value(p, i/partitions)})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			log.Fatal(err)
		}
	}
	cl.Close()
	fmt.Println(c.ListenAddrs()[0])
	_, _ = io.Copy(io.Discard, os.Stdin)
	fmt.Printf("broker peak RSS %d MiB\n", status("VmHWM")>>10)
}

func run(records, partitions int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(self, "-broker", "-records", strconv.Itoa(records), "-partitions", strconv.Itoa(partitions))
	stdin, err := child.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	child.Stderr = os.Stderr
	start := time.Now()
	if err := child.Start(); err != nil {
		return err
	}
	out := bufio.NewScanner(stdout)
	if !out.Scan() {
		return fmt.Errorf("broker exited: %v", child.Wait())
	}
	addr := out.Text()
	fmt.Printf("backlog: %d records of ~190 bytes in %d partitions, produced in %s\n",
		records, partitions, time.Since(start).Round(time.Millisecond))
	fmt.Printf("consumer RSS before consuming: %d MiB\n", status("VmRSS")>>10)

	cfg := kafka.Config{
		Brokers: []string{addr},
		Topic:   topic,
		Group:   "rsscheck",
		Fields: []ingest.Field{
			{Name: "p", Type: arrow.PrimitiveTypes.Int32},
			{Name: "seq", Type: arrow.PrimitiveTypes.Int64},
			{Name: "country", Type: arrow.BinaryTypes.String, Nullable: true},
			{Name: "merchant", Path: "payload.merchant", Type: arrow.BinaryTypes.String},
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	ctx := context.Background()
	src, err := kafka.NewSource(ctx, cfg)
	if err != nil {
		return err
	}
	// A slow-ish pipeline: batches are released and acked by a worker, so
	// up to MaxInFlight of them are alive at once.
	work := make(chan *ingest.Batch, kafka.DefaultMaxInFlight)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for b := range work {
			time.Sleep(time.Millisecond)
			b.Record.Release()
			_ = b.Ack(ctx, nil)
		}
	}()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peakHeap uint64
	consumeStart := time.Now()
	var n, nextReport int64
	for n < int64(records) {
		b, err := src.Next(ctx)
		if err != nil {
			return err
		}
		n += b.Last - b.First + 1
		work <- b
		metrics.Read(sample)
		peakHeap = max(peakHeap, sample[0].Value.Uint64())
		if n >= nextReport {
			fmt.Printf("  %8d records  RSS %4d MiB  heap %4d MiB\n", n, status("VmRSS")>>10, sample[0].Value.Uint64()>>20)
			nextReport += int64(records / 10)
		}
	}
	elapsed := time.Since(consumeStart)
	close(work)
	wg.Wait()
	_ = src.Close()
	fmt.Printf("consumed %d records in %s (%.0f records/s)\n", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	fmt.Printf("consumer peak RSS (VmHWM) %d MiB, peak Go heap objects %d MiB\n", status("VmHWM")>>10, peakHeap>>20)
	stdin.Close()
	for out.Scan() {
		fmt.Println(out.Text())
	}
	return child.Wait()
}

// status returns a /proc/self/status field in KiB; 0 where unavailable.
func status(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}
