package storage

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// WithPrefix returns a view of store in which every key lives under prefix:
// key k is stored as prefix/k, and Iter reports keys with prefix/ removed.
// Leading and trailing slashes of prefix are ignored; an empty prefix
// returns store itself. The view is as safe for concurrent use as store.
func WithPrefix(store ObjectStore, prefix string) ObjectStore {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return store
	}
	return &prefixed{store: store, prefix: prefix + "/"}
}

type prefixed struct {
	store  ObjectStore
	prefix string // ends in "/"
}

func (p *prefixed) full(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return p.prefix + key, nil
}

func (p *prefixed) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := p.full(key)
	if err != nil {
		return nil, err
	}
	return p.store.Get(ctx, k)
}

func (p *prefixed) Stat(ctx context.Context, key string) (Attrs, error) {
	k, err := p.full(key)
	if err != nil {
		return Attrs{}, err
	}
	return p.store.Stat(ctx, k)
}

func (p *prefixed) Iter(ctx context.Context, prefix string, fn func(key string) error) error {
	return p.store.Iter(ctx, p.prefix+prefix, func(key string) error {
		rel, ok := strings.CutPrefix(key, p.prefix)
		if !ok {
			return fmt.Errorf("storage: backend listed %q outside prefix %q", key, p.prefix)
		}
		return fn(rel)
	})
}

func (p *prefixed) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	k, err := p.full(key)
	if err != nil {
		return err
	}
	return p.store.Put(ctx, k, r, size)
}

func (p *prefixed) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	k, err := p.full(key)
	if err != nil {
		return err
	}
	return p.store.Create(ctx, k, r, size)
}

func (p *prefixed) Delete(ctx context.Context, key string) error {
	k, err := p.full(key)
	if err != nil {
		return err
	}
	return p.store.Delete(ctx, k)
}
