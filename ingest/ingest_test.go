package ingest

import (
	"errors"
	"fmt"
	"testing"
)

func TestSizeError(t *testing.T) {
	var err error = &SizeError{Size: 5 << 20, Limit: 1 << 20}
	// The message is the dead letter's Reason: it names the size, the
	// limit and the spec key that raises it.
	if got, want := err.Error(), "record is 5242880 bytes; the limit is 1048576 (batching.max_record_bytes)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("offset 7: %w", err)
	if !errors.Is(wrapped, ErrTooLarge) {
		t.Error("errors.Is(err, ErrTooLarge) = false")
	}
	for _, other := range []error{ErrMalformed, ErrFieldType, ErrMissingField} {
		if errors.Is(wrapped, other) {
			t.Errorf("a size error matches %v", other)
		}
	}
	var se *SizeError
	if !errors.As(wrapped, &se) || se.Size != 5<<20 || se.Limit != 1<<20 {
		t.Errorf("errors.As = %+v", se)
	}
}
