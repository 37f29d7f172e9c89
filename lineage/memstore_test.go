package lineage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/sluice-dev/sluice/storage"
)

// memStore is an in-memory Store with the semantics storage.ObjectStore
// promises (atomic Put, exclusive Create, lexical Iter, ErrNotExist), plus hooks to fail
// writes and to count reads.
type memStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	// failPut, when set, is asked before each Put; a non-nil error fails it.
	failPut func(key string) error
	gets    int
}

func newMemStore() *memStore { return &memStore{objects: map[string][]byte{}} }

func (m *memStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return m.put(key, r, size, false)
}

func (m *memStore) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return m.put(key, r, size, true)
}

func (m *memStore) put(key string, r io.Reader, size int64, exclusive bool) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if size >= 0 && int64(len(data)) != size {
		return fmt.Errorf("memstore: put %s: size %d, read %d", key, size, len(data))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failPut != nil {
		if err := m.failPut(key); err != nil {
			return err
		}
	}
	if _, ok := m.objects[key]; ok && exclusive {
		return fmt.Errorf("memstore: create %s: %w", key, storage.ErrExists)
	}
	m.objects[key] = data
	return nil
}

// failWrites makes every write of a key ending in suffix fail with msg,
// until failPut is set to nil.
func (m *memStore) failWrites(suffix, msg string) {
	m.failPut = func(key string) error {
		if strings.HasSuffix(key, suffix) {
			return errors.New(msg)
		}
		return nil
	}
}

func (m *memStore) Delete(ctx context.Context, key string) error {
	m.del(key)
	return nil
}

func (m *memStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	data, ok := m.objects[key]
	if !ok {
		return nil, fmt.Errorf("memstore: %s: %w", key, storage.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(slices.Clone(data))), nil
}

func (m *memStore) Iter(ctx context.Context, prefix string, fn func(string) error) error {
	m.mu.Lock()
	keys := slices.Sorted(maps.Keys(m.objects))
	m.mu.Unlock()
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) get(key string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.objects[key])
}

func (m *memStore) set(key string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[key] = data
}

func (m *memStore) del(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, key)
}

func (m *memStore) readCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gets
}

// keys returns the keys with suffix, sorted.
func (m *memStore) keys(suffix string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.objects {
		if strings.HasSuffix(k, suffix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func (m *memStore) clone() *memStore {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := newMemStore()
	for k, v := range m.objects {
		c.objects[k] = slices.Clone(v)
	}
	return c
}
