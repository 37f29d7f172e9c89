package storage

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidKey is returned (wrapped) when a key cannot name an object.
var ErrInvalidKey = errors.New("storage: invalid key")

// CheckKey reports whether key is a valid object key, the same for every
// backend so that a pipeline that runs against a folder also runs against
// S3: non-empty, slash-separated, relative (no leading slash), no empty,
// "." or ".." segment, no trailing slash, no backslash and no NUL. The error
// wraps ErrInvalidKey.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if strings.ContainsAny(key, "\\\x00") {
		return fmt.Errorf("%w %q: contains a backslash or NUL", ErrInvalidKey, key)
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%w %q: empty segment (leading, trailing or double slash)", ErrInvalidKey, key)
		case ".", "..":
			return fmt.Errorf("%w %q: %q segment", ErrInvalidKey, key, seg)
		}
	}
	return nil
}

// JoinKey joins key segments with slashes, skipping empty ones and trimming
// slashes at their ends, so an empty prefix adds no leading slash.
func JoinKey(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		p = strings.Trim(p, "/")
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(p)
	}
	return b.String()
}
