package s3_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/s3"
)

// noConditionalServer is an S3 endpoint that answers a PUT carrying
// If-None-Match with 501 Not Implemented, as servers without conditional
// writes do, and otherwise keeps objects by path.
type noConditionalServer struct {
	mu          sync.Mutex
	objects     map[string]bool
	conditional int // PUTs with If-None-Match seen
}

func (s *noConditionalServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)
	switch r.Method {
	case http.MethodPut:
		if r.Header.Get("If-None-Match") != "" {
			s.conditional++
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotImplemented)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented`+
				`</Code><Message>A header you provided implies functionality that is not implemented</Message></Error>`)
			return
		}
		s.objects[r.URL.Path] = true
		w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
		w.WriteHeader(http.StatusOK)
	case http.MethodHead:
		if strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 0 { // the bucket
			w.WriteHeader(http.StatusOK)
			return
		}
		if !s.objects[r.URL.Path] {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", "4")
		w.Header().Set("Last-Modified", "Fri, 27 Nov 2026 20:00:00 GMT")
		w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// TestCreateWithoutConditionalWrites: against a server that does not
// implement If-None-Match, Create still refuses an existing key (HEAD,
// then a plain PUT), and stops sending the header once refused.
func TestCreateWithoutConditionalWrites(t *testing.T) {
	srv := &noConditionalServer{objects: map[string]bool{}}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	store, err := s3.New(t.Context(), s3.Config{
		Endpoint: strings.TrimPrefix(ts.URL, "http://"), Bucket: "lineage-bucket", Region: "us-east-1",
		PathStyle: true, AccessKey: "AK", SecretKey: "SK",
	})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("seg1")
	if err := store.Create(t.Context(), "lineage/a.ndjson", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Create of a new key: %v", err)
	}
	if !srv.objects["/lineage-bucket/lineage/a.ndjson"] {
		t.Fatalf("the object was not written; server has %v", srv.objects)
	}
	err = store.Create(t.Context(), "lineage/a.ndjson", bytes.NewReader(data), int64(len(data)))
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("Create over an existing key: %v, want ErrExists", err)
	}
	if err := store.Create(t.Context(), "lineage/b.ndjson", bytes.NewReader(data), -1); err != nil {
		t.Fatalf("Create of another new key: %v", err)
	}
	if srv.conditional != 1 {
		t.Errorf("%d conditional PUTs sent; want 1 (the store learns the server lacks them)", srv.conditional)
	}
}
