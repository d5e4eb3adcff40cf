package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests below mount the filesystem in this process, so they need root
// and /dev/fuse.

type mounted struct {
	l       *lazyFS
	backing string // the backing directory
	mnt     string // the mount point
	t       *testing.T
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
}

// mountAt mounts a lazy filesystem over backing.
func mountAt(t *testing.T, backing string) *mounted {
	t.Helper()
	needRoot(t)
	mnt := t.TempDir()
	l := newLazyFS(backing, true)
	srv, err := mount(l, mnt, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unmount(srv, mnt); err != nil {
			t.Error(err)
		}
	})
	return &mounted{l: l, backing: backing, mnt: mnt, t: t}
}

func mountNew(t *testing.T) *mounted { return mountAt(t, t.TempDir()) }

func (m *mounted) path(name string) string { return filepath.Join(m.mnt, name) }

// write writes data at off in name (created if need be) without fsync.
func (m *mounted) write(name string, data []byte, off int64, flag int) {
	m.t.Helper()
	f, err := os.OpenFile(m.path(name), os.O_RDWR|os.O_CREATE|flag, 0o644)
	if err != nil {
		m.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		m.t.Fatal(err)
	}
}

func (m *mounted) fsync(name string) {
	m.t.Helper()
	f, err := os.OpenFile(m.path(name), os.O_RDONLY, 0)
	if err != nil {
		m.t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		m.t.Fatal(err)
	}
}

// cut cuts the power and returns what was dropped.
func (m *mounted) cut() cutResult {
	m.t.Helper()
	r, ok := m.l.powerCut()
	if !ok {
		m.t.Fatal("power was off already")
	}
	return r
}

// backed returns name's contents in the backing directory.
func (m *mounted) backed(name string) []byte {
	m.t.Helper()
	b, err := os.ReadFile(filepath.Join(m.backing, name))
	if err != nil {
		m.t.Fatal(err)
	}
	return b
}

func equal(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes %.40q, want %d bytes %.40q", what, len(got), got, len(want), want)
	}
}

func TestUnsyncedWriteIsDroppedByPowerCut(t *testing.T) {
	m := mountNew(t)
	m.write("a", []byte("hello"), 0, 0)
	got, err := os.ReadFile(m.path("a"))
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "read through the mount", got, []byte("hello"))
	if fi, err := os.Stat(m.path("a")); err != nil || fi.Size() != 5 {
		t.Fatalf("stat through the mount: %v, size %d, want 5", err, fi.Size())
	}
	equal(t, "backing before the cut", m.backed("a"), nil)
	if r := m.cut(); r != (cutResult{DroppedBytes: 5, DroppedFiles: 1}) {
		t.Fatalf("cut dropped %+v", r)
	}
	// Created but never fsynced: the name went through, the data did not.
	equal(t, "backing after the cut", m.backed("a"), nil)
}

func TestFsyncedDataSurvives(t *testing.T) {
	m := mountNew(t)
	m.write("a", []byte("durable"), 0, 0)
	m.fsync("a")
	equal(t, "backing after fsync", m.backed("a"), []byte("durable"))
	m.write("a", []byte(" and lost"), 7, 0)
	m.cut()
	equal(t, "backing after the cut", m.backed("a"), []byte("durable"))
}

func TestSyncOpenedWritesSurvive(t *testing.T) {
	m := mountNew(t)
	m.write("sync", []byte("O_SYNC"), 0, os.O_SYNC)
	m.write("dsync", []byte("O_DSYNC"), 0, syscall.O_DSYNC)
	// The kernel passed the flags on: the writes were flushed without fsync.
	if s := m.l.stats(); s.DirtyBytes != 0 || s.Fsyncs != 2 {
		t.Fatalf("stats after synchronous writes: %+v", s)
	}
	m.cut()
	equal(t, "O_SYNC file", m.backed("sync"), []byte("O_SYNC"))
	equal(t, "O_DSYNC file", m.backed("dsync"), []byte("O_DSYNC"))
}

func TestRenameGoesThrough(t *testing.T) {
	m := mountNew(t)
	m.write("tmp", []byte("meta"), 0, 0)
	m.fsync("tmp")
	m.write("unsynced", []byte("data"), 0, 0)
	for _, p := range [][2]string{{"tmp", "final"}, {"unsynced", "moved"}} {
		if err := os.Rename(m.path(p[0]), m.path(p[1])); err != nil {
			t.Fatal(err)
		}
	}
	equal(t, "renamed file through the mount", must(os.ReadFile(m.path("moved"))), []byte("data"))
	m.cut()
	equal(t, "renamed fsynced file", m.backed("final"), []byte("meta"))
	equal(t, "renamed unsynced file", m.backed("moved"), nil)
	if _, err := os.Stat(filepath.Join(m.backing, "tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old name still in the backing directory: %v", err)
	}
}

func TestReadsMergeAtPageBoundariesAndPastEOF(t *testing.T) {
	backing := t.TempDir()
	base := pattern(10000, 1)
	os.WriteFile(filepath.Join(backing, "f"), base, 0o644)
	m := mountAt(t, backing)
	model := bytes.Clone(base)
	for _, w := range []struct {
		off int
		s   string
	}{{4094, "across"}, {8190, "pages"}, {9998, "over EOF"}, {15000, "far"}} {
		m.write("f", []byte(w.s), int64(w.off), 0)
		if end := w.off + len(w.s); end > len(model) {
			model = append(model, make([]byte, end-len(model))...)
		}
		copy(model[w.off:], w.s)
	}
	equal(t, "whole file", must(os.ReadFile(m.path("f"))), model)
	f := must(os.Open(m.path("f")))
	defer f.Close()
	p := make([]byte, 6000)
	n, _ := f.ReadAt(p, 4000)
	equal(t, "read from 4000", p[:n], model[4000:10000])
	equal(t, "backing before fsync", m.backed("f"), base)
	m.fsync("f")
	equal(t, "backing after fsync", m.backed("f"), model)
}

func TestTruncate(t *testing.T) {
	m := mountNew(t)
	m.write("f", pattern(10000, 1), 0, 0)
	m.fsync("f")
	m.write("f", pattern(9000, 9), 0, 0)
	if err := os.Truncate(m.path("f"), 5000); err != nil {
		t.Fatal(err)
	}
	equal(t, "backing after truncate", m.backed("f"), pattern(5000, 1)) // at once
	if err := os.Truncate(m.path("f"), 8000); err != nil {
		t.Fatal(err)
	}
	want := append(pattern(9000, 9)[:5000], make([]byte, 3000)...)
	equal(t, "read after truncating down and up", must(os.ReadFile(m.path("f"))), want)
	m.cut()
	equal(t, "backing after the cut", m.backed("f"), append(pattern(5000, 1), make([]byte, 3000)...))
}

func TestOpenWithTruncate(t *testing.T) {
	m := mountNew(t)
	m.write("f", []byte("old contents"), 0, 0)
	m.write("f", []byte("new"), 0, os.O_TRUNC)
	equal(t, "after O_TRUNC", must(os.ReadFile(m.path("f"))), []byte("new"))
}

func TestStats(t *testing.T) {
	m := mountNew(t)
	m.write("a", []byte("0123456789"), 0, 0)
	m.write("b", []byte("x"), 5000, 0) // page 1 up to 5001; page 0 holds zeros, not dirty
	m.write("c", []byte("synced"), 0, 0)
	m.fsync("c")
	want := stats{DirtyBytes: 10 + 905, DirtyFiles: 2, Fsyncs: 1, Writes: 3}
	if s := m.l.stats(); s != want {
		t.Fatalf("stats %+v, want %+v", s, want)
	}
	// A deleted file's data does not count: no cut could lose it.
	os.Remove(m.path("a"))
	want.DirtyBytes, want.DirtyFiles = 905, 1
	if s := m.l.stats(); s != want {
		t.Fatalf("stats after deleting a: %+v, want %+v", s, want)
	}
	if n, err := m.l.syncAll(); err != nil || n != 905 {
		t.Fatalf("sync flushed %d (%v), want 905", n, err)
	}
	equal(t, "b after sync", m.backed("b"), append(make([]byte, 5000), 'x'))
}

// TestConcurrentHandles writes one file through many handles at once,
// across page boundaries, while others fsync, sync and read stats.
func TestConcurrentHandles(t *testing.T) {
	m := mountNew(t)
	const writers, chunk = 8, 3001
	model := make([]byte, writers*chunk)
	var wg sync.WaitGroup
	for i := range writers {
		p := pattern(chunk, byte(i))
		copy(model[i*chunk:], p)
		wg.Go(func() {
			f, err := os.OpenFile(m.path("f"), os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			if _, err := f.WriteAt(p, int64(i*chunk)); err != nil {
				t.Error(err)
			}
			if i%2 == 0 {
				if err := f.Sync(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			m.l.stats()
			if _, err := m.l.syncAll(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	equal(t, "through the mount", must(os.ReadFile(m.path("f"))), model)
	m.fsync("f")
	equal(t, "backing after fsync", m.backed("f"), model)
}

// TestDeletedOpenFile: a deleted file's data stays readable through the
// handles still open, and is forgotten when the last one closes.
func TestDeletedOpenFile(t *testing.T) {
	m := mountNew(t)
	f := must(os.OpenFile(m.path("f"), os.O_RDWR|os.O_CREATE, 0o644))
	f.WriteAt([]byte("still here"), 0)
	if err := os.Remove(m.path("f")); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 20)
	n, _ := f.ReadAt(p, 0)
	equal(t, "read after unlink", p[:n], []byte("still here"))
	if s := m.l.stats(); s.DirtyFiles != 0 {
		t.Fatalf("a deleted file counts as dirty: %+v", s)
	}
	f.Close()
	// The kernel sends the release after close returns.
	for deadline := time.Now().Add(2 * time.Second); len(m.l.entries()) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the deleted file's data outlived its last handle")
		}
	}
}

func TestEverythingFailsAfterTheCut(t *testing.T) {
	m := mountNew(t)
	m.write("a", []byte("a"), 0, 0)
	f := must(os.OpenFile(m.path("a"), os.O_RDWR, 0))
	defer f.Close()
	m.cut()
	for what, err := range map[string]error{
		"write":  second(f.WriteAt([]byte("b"), 0)),
		"fsync":  f.Sync(),
		"stat":   second(os.Stat(m.path("a"))),
		"mkdir":  os.Mkdir(m.path("d"), 0o755),
		"create": os.WriteFile(m.path("new"), nil, 0o644),
		"rename": os.Rename(m.path("a"), m.path("b")),
	} {
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("%s after the cut: %v, want EIO", what, err)
		}
	}
	for _, name := range []string{"d", "new", "b"} {
		if _, err := os.Stat(filepath.Join(m.backing, name)); err == nil {
			t.Errorf("%s reached the backing directory after the cut", name)
		}
	}
}

func TestShutdownFlushes(t *testing.T) {
	m := mountNew(t)
	m.write("a", []byte("kept"), 0, 0)
	if err := m.l.shutdown(); err != nil {
		t.Fatal(err)
	}
	equal(t, "backing after shutdown", m.backed("a"), []byte("kept"))
	if err := os.WriteFile(m.path("late"), nil, 0o644); !errors.Is(err, syscall.EIO) {
		t.Fatalf("create after shutdown: %v, want EIO", err)
	}
}

// TestNoSpace mounts over a 1 MiB tmpfs: writes fail with ENOSPC when the
// data held plus what is on the tmpfs would not fit, and an fsync fails
// with the backing filesystem's ENOSPC when space went while data was held.
func TestNoSpace(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	m := mountAt(t, dir)
	ballast := filepath.Join(dir, "ballast")

	os.WriteFile(ballast, make([]byte, 900<<10), 0o644)
	f := must(os.OpenFile(m.path("f"), os.O_RDWR|os.O_CREATE, 0o644))
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, 200<<10), 0); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write with the disk nearly full: %v, want ENOSPC", err)
	}
	os.Remove(ballast)
	if _, err := f.WriteAt(make([]byte, 600<<10), 0); err != nil {
		t.Fatalf("write after removing the ballast: %v", err)
	}
	if _, err := f.WriteAt(make([]byte, 600<<10), 600<<10); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write past what the tmpfs holds, counting held data: %v, want ENOSPC", err)
	}
	os.WriteFile(ballast, make([]byte, 600<<10), 0o644) // space goes while 600K are held
	if err := f.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fsync with the disk full: %v, want ENOSPC", err)
	}
	os.Remove(ballast)
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync after removing the ballast: %v", err)
	}
}

func TestControlSocket(t *testing.T) {
	l := newLazyFS(t.TempDir(), true)
	sock := filepath.Join(t.TempDir(), "c.sock")
	ln, err := listenControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := newController(l)
	go c.serve(ln)
	conn := must(net.Dial("unix", sock))
	defer conn.Close()
	lines := bufio.NewScanner(conn)
	ask := func(cmd string) map[string]any {
		t.Helper()
		conn.Write([]byte(cmd + "\n"))
		if !lines.Scan() {
			t.Fatalf("no answer to %q: %v", cmd, lines.Err())
		}
		var a map[string]any
		if err := json.Unmarshal(lines.Bytes(), &a); err != nil {
			t.Fatalf("answer to %q: %v", cmd, err)
		}
		return a
	}
	if a := ask("stats"); len(a) != 4 || a["dirty_bytes"] != 0.0 {
		t.Fatalf("stats: %v", a)
	}
	if a := ask("sync"); a["flushed_bytes"] != 0.0 {
		t.Fatalf("sync: %v", a)
	}
	if a := ask("reboot"); a["error"] == nil {
		t.Fatalf("unknown command: %v", a)
	}
	if a := ask("powercut"); a["dropped_files"] != 0.0 {
		t.Fatalf("powercut: %v", a)
	}
	<-c.cut // the signal to unmount and exit
	if a := ask("powercut"); a["error"] == nil {
		t.Fatalf("second powercut: %v", a)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func second[T any](_ T, err error) error { return err }
