package fs_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/fs"
	"github.com/sluice-dev/sluice/storage/storagetest"
)

func TestAcceptance(t *testing.T) {
	store, err := fs.New(filepath.Join(t.TempDir(), "new", "root"))
	if err != nil {
		t.Fatal(err)
	}
	storagetest.Run(t, store)
	// No temporary file survives the suite, failed Puts included.
	err = filepath.WalkDir(store.Root(), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".sluice-tmp-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLayoutOnDisk(t *testing.T) {
	root := t.TempDir()
	store, err := fs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.Put(ctx, "a/b/c.txt", strings.NewReader("hi"), 2); err != nil {
		t.Fatal(err)
	}
	// The key is a plain file under root, readable by ordinary tools.
	got, err := os.ReadFile(filepath.Join(root, "a", "b", "c.txt"))
	if err != nil || string(got) != "hi" {
		t.Fatalf("file on disk = %q, %v", got, err)
	}
	// Deleting the last object removes the folders it emptied, not root.
	if err := store.Delete(ctx, "a/b/c.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "a")); !os.IsNotExist(err) {
		t.Errorf("emptied folder a still there: %v", err)
	}
	if _, err := os.Stat(root); err != nil {
		t.Errorf("root removed: %v", err)
	}
}

func TestTempNamesAreNotKeys(t *testing.T) {
	store, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	err = store.Put(context.Background(), "a/.sluice-tmp-1", bytes.NewReader(nil), 0)
	if !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Put on a temporary name: err = %v, want ErrInvalidKey", err)
	}
}

func TestNewRejectsEmptyRoot(t *testing.T) {
	if _, err := fs.New(""); err == nil {
		t.Fatal("New(\"\"): want an error")
	}
}

func TestPutDeleteRaceOnSharedFolder(t *testing.T) {
	// Delete removes folders it empties while another Put may be creating
	// a file in them; every Put must still succeed and land.
	store, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	done := make(chan error, 2)
	go func() {
		for range 200 {
			if err := store.Put(ctx, "d/x/a", strings.NewReader("a"), 1); err != nil {
				done <- err
				return
			}
			if err := store.Delete(ctx, "d/x/a"); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	go func() {
		for i := range 200 {
			key := "d/x/b"
			if err := store.Put(ctx, key, strings.NewReader("b"), 1); err != nil {
				done <- err
				return
			}
			if i%2 == 0 {
				if err := store.Delete(ctx, key); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("Put/Delete race: %v", err)
		}
	}
	if _, err := store.Stat(ctx, "d/x/b"); err != nil {
		t.Fatalf("last Put of d/x/b lost: %v", err)
	}
}
