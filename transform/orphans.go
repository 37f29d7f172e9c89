package transform

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-dev/sluice/ingest"
	"github.com/sluice-dev/sluice/storage"
)

// sweepOrphans deletes the feature and quarantine objects of b's partition
// that start after last, the highest offset its lineage chain records (-1
// for none). Such objects were written by an attempt that crashed before
// its lineage segment: nothing references them, and the records they hold
// are about to be processed again, possibly cut at other offsets, so
// keeping them would leave a second copy under another key. It runs once
// per partition per process, over the days around the batch's date.
func (r *Runner) sweepOrphans(ctx context.Context, b *ingest.Batch, last int64) error {
	day := b.Time.UTC()
	stores := map[storage.ObjectStore]bool{}
	for _, st := range r.cfg.Sinks {
		stores[st] = true
	}
	var deleted []string
	for st := range stores {
		for _, d := range []time.Time{day.AddDate(0, 0, -1), day, day.AddDate(0, 0, 1)} {
			date := d.Format("2006-01-02")
			for _, prefix := range []string{
				"pipeline=" + r.cfg.Spec.Name + "/date=" + date + "/",
				"quarantine/pipeline=" + r.cfg.Spec.Name + "/date=" + date + "/",
			} {
				err := st.Iter(ctx, prefix, func(key string) error {
					topic, part, first, _, ok := storage.ParseObjectKey(key)
					if !ok || topic != b.Topic || part != b.Partition || first <= last {
						return nil
					}
					if err := st.Delete(ctx, key); err != nil {
						return err
					}
					deleted = append(deleted, key)
					return nil
				})
				if err != nil {
					return fmt.Errorf("sweep unrecorded objects: %w", err)
				}
			}
		}
	}
	if len(deleted) > 0 {
		r.cfg.Logger.Warn("deleted objects of a crashed attempt that no lineage references",
			"topic", b.Topic, "partition", b.Partition, "after", last, "keys", deleted)
	}
	return nil
}
