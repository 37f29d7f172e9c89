package storage

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/parquet/file"
)

// CountRows returns the number of rows of an object from its bytes, by the
// format its key names: a Parquet file (".parquet", read from the footer
// without decoding columns) or newline-terminated records (".ndjson",
// ".jsonl"). ok is false for any other key: the rows cannot be told. An
// error means the bytes are not in the format the key names.
func CountRows(key string, data []byte) (rows int64, ok bool, err error) {
	switch {
	case strings.HasSuffix(key, ".parquet"):
		pf, err := file.NewParquetReader(bytes.NewReader(data))
		if err != nil {
			return 0, true, fmt.Errorf("storage: %s: not a Parquet file: %w", key, err)
		}
		defer pf.Close()
		return pf.NumRows(), true, nil
	case strings.HasSuffix(key, ".ndjson"), strings.HasSuffix(key, ".jsonl"):
		if len(data) > 0 && data[len(data)-1] != '\n' {
			return 0, true, fmt.Errorf("storage: %s: last record is not terminated by a newline", key)
		}
		return int64(bytes.Count(data, []byte{'\n'})), true, nil
	}
	return 0, false, nil
}
