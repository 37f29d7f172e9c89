package lineage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sluice-dev/sluice/storage"
)

// Store is the object store lineage needs; storage.ObjectStore satisfies
// it. Implementations are safe for concurrent use.
type Store interface {
	// Put writes the object at key atomically; when it returns nil the
	// object is durable. size is the length of r, or -1.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Create is Put that fails with an error matching storage.ErrExists
	// when key already has an object; of racing Creates exactly one wins.
	Create(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the object at key; the caller closes it. A missing key
	// returns an error matching storage.ErrNotExist.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Iter calls fn for each key under prefix, in lexical order.
	Iter(ctx context.Context, prefix string, fn func(key string) error) error
}

// Key layout, under a prefix (WriterConfig.Prefix, default "lineage"):
//
//	PREFIX/pipeline=NAME/chain=CHAIN/SEQ.ndjson      segment (SEQ: first event's seq, 20 digits), signature line last
//	PREFIX/pipeline=NAME/chain=CHAIN/SEQ.ndjson.sig  earlier trails only: base64 ed25519 signature of the segment's SHA-256
//	PREFIX/pipeline=NAME/_keys/ed25519.pub           PEM public key
const (
	segmentExt  = ".ndjson"
	sigExt      = ".sig"
	pubKeyFile  = "_keys/ed25519.pub"
	seqDigits   = 20
	defaultRoot = "lineage"
)

// maxSegmentBytes bounds what Append writes and what readers load, so a
// planted huge object cannot exhaust memory.
const maxSegmentBytes = 256 << 20

func pipelineDir(prefix, pipeline string) string {
	return storage.JoinKey(prefix, "pipeline="+pipeline)
}

func chainDir(prefix, pipeline, chain string) string {
	return storage.JoinKey(pipelineDir(prefix, pipeline), "chain="+chain)
}

func segmentKey(dir string, seq uint64) string {
	return fmt.Sprintf("%s/%0*d%s", dir, seqDigits, seq, segmentExt)
}

// keyInfo is a parsed lineage key.
type keyInfo struct {
	kind     int    // kindSegment, kindSig or kindPub
	dir      string // the chain folder (segment, sig) or pipeline folder (pub)
	pipeline string
	chain    string
	seq      uint64
	segment  string // the segment key a sig belongs to
}

const (
	kindSegment = iota + 1
	kindSig
	kindPub
)

// parseKey recognises a lineage key by its last path elements, so any
// prefix depth works. ok is false for other keys.
func parseKey(key string) (keyInfo, bool) {
	parts := strings.Split(key, "/")
	if len(parts) < 3 {
		return keyInfo{}, false
	}
	n := len(parts)
	pdir, cdir, file := parts[n-3], parts[n-2], parts[n-1]
	pipeline, ok := strings.CutPrefix(pdir, "pipeline=")
	if !ok || pipeline == "" {
		return keyInfo{}, false
	}
	if cdir+"/"+file == pubKeyFile {
		return keyInfo{kind: kindPub, dir: strings.Join(parts[:n-2], "/"), pipeline: pipeline}, true
	}
	chain, ok := strings.CutPrefix(cdir, "chain=")
	if !ok || chain == "" {
		return keyInfo{}, false
	}
	ki := keyInfo{dir: strings.Join(parts[:n-1], "/"), pipeline: pipeline, chain: chain}
	name := file
	if s, ok := strings.CutSuffix(file, sigExt); ok {
		ki.kind = kindSig
		name = s
		ki.segment = key[:len(key)-len(sigExt)]
	} else {
		ki.kind = kindSegment
	}
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(digits) != seqDigits {
		return keyInfo{}, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return keyInfo{}, false
	}
	ki.seq = seq
	return ki, true
}

// validName reports whether s can name a pipeline or chain: it becomes one
// path element of a key.
func validName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 200 {
		return false
	}
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '.':
		default:
			return false
		}
	}
	return true
}

// readObject reads a whole object of at most limit bytes. found is false
// when the key does not exist.
func readObject(ctx context.Context, s Store, key string, limit int64) (data []byte, found bool, err error) {
	rc, err := s.Get(ctx, key)
	if errors.Is(err, storage.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("lineage: get %s: %w", key, err)
	}
	defer rc.Close()
	data, err = io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, true, fmt.Errorf("lineage: read %s: %w", key, err)
	}
	if int64(len(data)) > limit {
		return nil, true, fmt.Errorf("%w: %s is larger than %d bytes", ErrCorrupt, key, limit)
	}
	return data, true, nil
}

// normPrefix trims slashes and returns the Iter prefix for keys under p.
func normPrefix(p string) (string, string) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", ""
	}
	return p, p + "/"
}
