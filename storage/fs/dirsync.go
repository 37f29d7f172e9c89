package fs

import "sync"

// dirSyncs makes the renames into a folder durable with as few folder
// fsyncs as possible: a Put that needs its rename made durable waits for
// an fsync of the folder that starts after the rename, and one such fsync
// serves every Put waiting on that folder (group commit). Puts of one
// pipeline batch land in a few shared folders at about the same time, so
// this saves fsyncs, each of which costs hundreds of microseconds of CPU
// on a virtual disk.
type dirSyncs struct {
	mu    sync.Mutex
	dirs  map[string]*dirSync
	fsync func(dir string) error // syncDir; a fake in tests
}

type dirSync struct {
	cond      *sync.Cond
	running   bool
	started   uint64 // fsyncs started
	completed uint64 // fsyncs completed; they run one at a time
	failed    uint64 // the latest fsync that failed (0: none)
	err       error  // its error
	waiters   int
}

// sync returns once an fsync of dir that started after the call began has
// completed. It fails if that fsync or a later one failed: after a failed
// fsync, a later one that succeeds does not prove the earlier writes
// reached the disk.
func (g *dirSyncs) sync(dir string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dirs == nil {
		g.dirs = map[string]*dirSync{}
	}
	d := g.dirs[dir]
	if d == nil {
		d = &dirSync{cond: sync.NewCond(&g.mu)}
		g.dirs[dir] = d
	}
	d.waiters++
	defer func() {
		if d.waiters--; d.waiters == 0 && !d.running {
			delete(g.dirs, dir)
		}
	}()
	// An fsync running now may have started before our rename: we need
	// the one after it.
	need := d.started + 1
	for d.completed < need {
		if d.running {
			d.cond.Wait()
			continue
		}
		d.running = true
		d.started++
		gen := d.started
		g.mu.Unlock()
		err := g.fsync(dir)
		g.mu.Lock()
		d.running = false
		d.completed = gen
		if err != nil {
			d.failed, d.err = gen, err
		}
		d.cond.Broadcast()
	}
	if d.failed >= need {
		return d.err
	}
	return nil
}
