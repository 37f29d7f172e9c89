package storage

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// Object keys are derived only from the data they hold (pipeline, day,
// location, topic, partition and offset range), so a replay after a crash
// writes the same bytes to the same key and storage ends with one copy.
//
// Offsets are zero-padded to 20 digits (enough for any int64), so that the
// lexical order in which object stores list keys is the offset order within
// a partition. Partition numbers are not padded: keys of one partition
// already share their TOPIC-PARTITION- stem. Segment values (pipeline,
// location, topic) are used as given; the pipeline spec validates them.

// dateLayout is the date= partition value, in UTC.
const dateLayout = "2006-01-02"

// FeatureKey is the key of the feature object for offsets first..last of a
// topic partition:
//
//	PREFIX/pipeline=NAME/date=YYYY-MM-DD/location=LOC/TOPIC-PARTITION-FIRST-LAST.parquet
//
// date is taken in UTC. An empty prefix gives a key with no leading slash.
// The pipeline=, date= and location= segments are Hive-style partitions,
// so DuckDB, Spark and Athena read them as columns.
func FeatureKey(prefix, pipeline string, date time.Time, location, topic string, partition int, first, last int64) string {
	return JoinKey(prefix,
		"pipeline="+pipeline,
		"date="+date.UTC().Format(dateLayout),
		"location="+location,
		objectName(topic, partition, first, last))
}

// QuarantineKey is the key of the object holding rows of offsets
// first..last that no executor was allowed to process:
//
//	PREFIX/quarantine/pipeline=NAME/date=YYYY-MM-DD/TOPIC-PARTITION-FIRST-LAST.parquet
//
// It is meant for a store (bucket) in a location where the data may rest.
func QuarantineKey(prefix, pipeline string, date time.Time, topic string, partition int, first, last int64) string {
	return JoinKey(prefix,
		"quarantine",
		"pipeline="+pipeline,
		"date="+date.UTC().Format(dateLayout),
		objectName(topic, partition, first, last))
}

func objectName(topic string, partition int, first, last int64) string {
	return fmt.Sprintf("%s-%d-%020d-%020d.parquet", topic, partition, first, last)
}

// ParseObjectKey reads the topic, partition and offsets from a key made by
// FeatureKey or QuarantineKey (its last element, TOPIC-PARTITION-FIRST-LAST
// .parquet; the topic may contain dashes). ok is false for any other key.
func ParseObjectKey(key string) (topic string, partition int, first, last int64, ok bool) {
	name, ok := strings.CutSuffix(path.Base(key), ".parquet")
	if !ok {
		return "", 0, 0, 0, false
	}
	f := strings.Split(name, "-")
	n := len(f)
	if n < 4 {
		return "", 0, 0, 0, false
	}
	p, err1 := strconv.Atoi(f[n-3])
	a, err2 := strconv.ParseInt(f[n-2], 10, 64)
	b, err3 := strconv.ParseInt(f[n-1], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return "", 0, 0, 0, false
	}
	return strings.Join(f[:n-3], "-"), p, a, b, true
}
