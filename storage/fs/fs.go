package fs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/sluice-dev/sluice/storage"
)

// tmpPrefix starts the name of a Put's temporary file. Iter skips such
// files and CheckKey-valid keys whose last segment starts with it are
// refused, so a half-written object is never listed or read.
const tmpPrefix = ".sluice-tmp-"

// Store is an ObjectStore in a local folder. Safe for concurrent use;
// concurrent Puts to one key leave one of the written objects whole.
type Store struct {
	root  string
	syncs dirSyncs
}

var _ storage.ObjectStore = (*Store)(nil)

// New returns a store rooted at root, creating the folder if needed.
func New(root string) (*Store, error) {
	if root == "" {
		return nil, errors.New("fs: empty root")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("fs: root %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("fs: create root: %w", err)
	}
	return &Store{root: abs, syncs: dirSyncs{fsync: syncDir}}, nil
}

// Root is the absolute path of the store's folder.
func (s *Store) Root() string { return s.root }

func (s *Store) path(key string) (string, error) {
	if err := storage.CheckKey(key); err != nil {
		return "", err
	}
	if strings.HasPrefix(key[strings.LastIndexByte(key, '/')+1:], tmpPrefix) {
		return "", fmt.Errorf("%w %q: names a temporary file", storage.ErrInvalidKey, key)
	}
	// CheckKey refused "..", "." and a leading slash, so the path stays
	// under root.
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Get opens the object at key.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, notExist(key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fs: get %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("fs: get %s: %w", key, storage.ErrNotExist)
	}
	return f, nil
}

// Stat returns the size of the object at key.
func (s *Store) Stat(ctx context.Context, key string) (storage.Attrs, error) {
	if err := ctx.Err(); err != nil {
		return storage.Attrs{}, err
	}
	p, err := s.path(key)
	if err != nil {
		return storage.Attrs{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return storage.Attrs{}, notExist(key, err)
	}
	if !fi.Mode().IsRegular() {
		return storage.Attrs{}, fmt.Errorf("fs: stat %s: %w", key, storage.ErrNotExist)
	}
	return storage.Attrs{Size: fi.Size()}, nil
}

func notExist(key string, err error) error {
	// ENOTDIR: a segment of key is a file, so key cannot exist.
	if errors.Is(err, iofs.ErrNotExist) || isNotDir(err) {
		return fmt.Errorf("fs: %s: %w", key, storage.ErrNotExist)
	}
	return fmt.Errorf("fs: %s: %w", key, err)
}

// Put writes r to key atomically and durably. With size >= 0, r must hold
// exactly size bytes, or nothing is written.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, "put", key, r, size, false)
}

// Create is Put that fails with storage.ErrExists when key already has an
// object: the finished temporary file is hard-linked to key, which the
// kernel refuses over an existing name, so of two Creates of a key exactly
// one succeeds.
func (s *Store) Create(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.put(ctx, "create", key, r, size, true)
}

func (s *Store) put(ctx context.Context, op, key string, r io.Reader, size int64, exclusive bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.path(key)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	f, err := createTemp(dir)
	if err != nil {
		return fmt.Errorf("fs: %s %s: %w", op, key, err)
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err := io.Copy(f, ctxReader{ctx: ctx, r: r})
	if err != nil {
		return fmt.Errorf("fs: %s %s: %w", op, key, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("fs: %s %s: read %d bytes, size says %d", op, key, n, size)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fs: %s %s: sync: %w", op, key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("fs: %s %s: %w", op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if exclusive {
		if err := os.Link(tmp, p); err != nil {
			if errors.Is(err, iofs.ErrExist) {
				return fmt.Errorf("fs: %s %s: %w", op, key, storage.ErrExists)
			}
			if errors.Is(err, iofs.ErrPermission) || errors.Is(err, errors.ErrUnsupported) {
				return fmt.Errorf("fs: %s %s: this filesystem refuses hard links, which create-only writes (lineage segments) need: %w", op, key, err)
			}
			return fmt.Errorf("fs: %s %s: %w", op, key, err)
		}
		// The object lives on under key; a temporary name left behind
		// (Iter skips them) is not worth failing a durable create for.
		_ = os.Remove(tmp)
	} else if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("fs: %s %s: %w", op, key, err)
	}
	committed = true
	if err := s.syncs.sync(dir); err != nil {
		return fmt.Errorf("fs: %s %s: sync folder: %w", op, key, err)
	}
	return nil
}

// createTemp creates a temporary file in dir, creating dir (and fsyncing
// the new folders' parents so they survive a crash) when needed. It retries
// when a concurrent Delete removed an emptied folder in between; a Delete
// looping on the same folders can win several rounds in a row (seen with
// 5 attempts under a loaded make test), hence the generous bound.
func createTemp(dir string) (*os.File, error) {
	var err error
	for range 100 {
		var f *os.File
		f, err = os.CreateTemp(dir, tmpPrefix+"*")
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, iofs.ErrNotExist) {
			return nil, err
		}
		// A concurrent Delete may remove a folder just made; go round.
		if err = mkdirAllSync(dir); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, err
}

func mkdirAllSync(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, iofs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Delete removes the object at key and then any folders it leaves empty.
// Deleting a missing key is not an error, as with S3.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.path(key)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, iofs.ErrNotExist) || isNotDir(err):
		return nil
	case err != nil:
		return fmt.Errorf("fs: delete %s: %w", key, err)
	case fi.IsDir():
		return nil // a "folder" is not an object
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("fs: delete %s: %w", key, err)
	}
	dir := filepath.Dir(p)
	if err := syncDir(dir); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("fs: delete %s: sync folder: %w", key, err)
	}
	// Best effort: os.Remove fails on a folder that is not empty, which
	// ends the climb.
	for dir != s.root && os.Remove(dir) == nil {
		dir = filepath.Dir(dir)
	}
	return nil
}

// Iter calls fn for every key that starts with prefix (a plain string
// prefix: "a/b" matches "a/b", "a/b/c" and "a/bc"), in lexical byte order.
func (s *Store) Iter(ctx context.Context, prefix string, fn func(key string) error) error {
	// Only the folder named by prefix up to its last slash can hold
	// matching keys.
	base := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = prefix[:i]
	}
	dir := s.root
	if base != "" {
		if storage.CheckKey(base) != nil {
			return nil // no valid key lies under such a prefix
		}
		dir = filepath.Join(s.root, filepath.FromSlash(base))
		base += "/"
	}
	return s.walk(ctx, dir, base, prefix, fn)
}

// walk visits dir, whose keys start with rel (empty or ending in "/"), in
// key order. Sorting entries by name, with "/" appended to folder names,
// makes the depth-first order equal to the lexical order of full keys: a
// key under folder x starts with "x/", and "x/" sorts against a sibling
// "x-y" or "x0" exactly as every key under it does.
func (s *Store) walk(ctx context.Context, dir, rel, prefix string, fn func(string) error) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, iofs.ErrNotExist) || isNotDir(err) {
		// Nothing under prefix, or a folder a concurrent Delete removed.
		return nil
	}
	if err != nil {
		return err
	}
	type item struct {
		name string // with "/" for a folder
		dir  bool
	}
	items := make([]item, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			continue
		}
		switch {
		case e.IsDir():
			items = append(items, item{name + "/", true})
		case e.Type().IsRegular():
			items = append(items, item{name, false})
		}
	}
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.name, b.name) })
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		key := rel + it.name
		// Skip entries that can neither match nor hold a match.
		if !strings.HasPrefix(key, prefix) && !strings.HasPrefix(prefix, key) {
			continue
		}
		if it.dir {
			if err := s.walk(ctx, filepath.Join(dir, strings.TrimSuffix(it.name, "/")), key, prefix, fn); err != nil {
				return err
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		if err := fn(key); err != nil {
			return err
		}
	}
	return nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }
