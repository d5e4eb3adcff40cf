package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
)

// lazyFS is the state behind the mount: the unflushed data of every file,
// and the switch a power cut throws. Data is kept by backing inode number,
// not on go-fuse's nodes: the kernel may forget an inode, and go-fuse its
// node, while the file still has data that was never fsynced.
type lazyFS struct {
	backing    string // the backing directory
	spaceCheck bool   // refuse writes the backing filesystem could not hold

	// gate orders every FUSE operation against a power cut: operations hold
	// it shared, powerCut exclusively, so an operation either completes
	// before the cut or fails with EIO after it.
	gate sync.RWMutex
	off  bool // powered off (or shut down); guarded by gate

	mu      sync.Mutex // guards files and opens; never held while waiting for an entry's lock
	files   map[uint64]*entry
	opens   map[uint64]int // open handles by inode: a deleted file's data matters while one is open
	pending atomic.Int64   // how much flushing every entry would grow the backing files

	writes, fsyncs atomic.Int64
}

// entry is a file with data the backing file does not have yet.
type entry struct {
	mu   sync.Mutex
	ino  uint64
	file *os.File // our own descriptor: flushes need no path, and the inode (so its number) lives as long as the entry
	data *fileData
	gone bool // flushed or dropped, and out of files: look again
}

func newLazyFS(backing string, spaceCheck bool) *lazyFS {
	return &lazyFS{backing: backing, spaceCheck: spaceCheck, files: map[uint64]*entry{}, opens: map[uint64]int{}}
}

// enter admits a FUSE operation, or says the power is off. leave ends it.
func (l *lazyFS) enter() bool {
	l.gate.RLock()
	if l.off {
		l.gate.RUnlock()
		return false
	}
	return true
}

func (l *lazyFS) leave() { l.gate.RUnlock() }

// entryOf returns ino's entry, locked, or nil when ino has none and open is
// nil; otherwise it makes one over the descriptor open returns.
func (l *lazyFS) entryOf(ino uint64, open func() (*os.File, error)) (*entry, error) {
	for {
		l.mu.Lock()
		e := l.files[ino]
		if e == nil && open != nil {
			var err error
			if e, err = newEntry(ino, open); err != nil {
				l.mu.Unlock()
				return nil, err
			}
			l.files[ino] = e
		}
		l.mu.Unlock()
		if e == nil {
			return nil, nil
		}
		e.mu.Lock()
		if !e.gone {
			return e, nil
		}
		e.mu.Unlock() // retired while we waited for it
	}
}

func newEntry(ino uint64, open func() (*os.File, error)) (*entry, error) {
	f, err := open()
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &entry{ino: ino, file: f, data: newFileData(st.Size())}, nil
}

// retire removes a locked entry whose data is flushed or dropped.
func (l *lazyFS) retire(e *entry) {
	l.pending.Add(-e.data.growth())
	l.mu.Lock()
	if l.files[e.ino] == e {
		delete(l.files, e.ino)
	}
	l.mu.Unlock()
	e.gone = true
	e.file.Close()
}

// entries is a snapshot of the current entries, for the whole-filesystem commands.
func (l *lazyFS) entries() []*entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	es := make([]*entry, 0, len(l.files))
	for _, e := range l.files {
		es = append(es, e)
	}
	return es
}

// size returns ino's logical size if ino holds data; if not, its backing
// file's size is its size.
func (l *lazyFS) size(ino uint64) (int64, bool) {
	e, _ := l.entryOf(ino, nil)
	if e == nil {
		return 0, false
	}
	defer e.mu.Unlock()
	return e.data.size, true
}

// read reads ino's logical contents; direct is the backing file, read as it
// is when ino has nothing unflushed.
func (l *lazyFS) read(ino uint64, p []byte, off int64, direct io.ReaderAt) (int, error) {
	e, _ := l.entryOf(ino, nil)
	if e == nil {
		return readFull(direct, p, off)
	}
	defer e.mu.Unlock()
	return e.data.readAt(p, off, e.file)
}

// write holds iov, written at off, in memory; open gives the entry its
// descriptor if ino has none yet.
func (l *lazyFS) write(ino uint64, iov [][]byte, off int64, open func() (*os.File, error)) error {
	e, err := l.entryOf(ino, open)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	end := off
	for _, b := range iov {
		end += int64(len(b))
	}
	if err := l.checkSpace(end - e.data.size); err != nil {
		return err
	}
	growth := e.data.growth()
	defer func() { l.pending.Add(e.data.growth() - growth) }()
	for _, b := range iov {
		if err := e.data.writeAt(b, off, e.file); err != nil {
			return err
		}
		off += int64(len(b))
	}
	l.writes.Add(1)
	return nil
}

// checkSpace refuses to grow the files by grow bytes when the backing
// filesystem, after taking what is pending already, has no room for them:
// a real filesystem reserves space at write time, not at fsync. Concurrent
// writes may together overshoot a little; this is a test's disk-full switch,
// not an allocator.
func (l *lazyFS) checkSpace(grow int64) error {
	if grow <= 0 || !l.spaceCheck {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(l.backing, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", l.backing, err)
	}
	if l.pending.Load()+grow > int64(st.Bavail)*st.Bsize {
		return syscall.ENOSPC
	}
	return nil
}

// truncate sets ino's size: at once in the backing file (through ino's own
// descriptor if it has an entry, else with direct) and in what is held.
func (l *lazyFS) truncate(ino uint64, size int64, direct func(size int64) error) error {
	e, _ := l.entryOf(ino, nil)
	if e == nil {
		return direct(size)
	}
	defer e.mu.Unlock()
	if err := e.file.Truncate(size); err != nil {
		return err
	}
	l.truncated(e, size)
	return nil
}

// truncated records, on a locked entry, that its backing file was truncated to size.
func (l *lazyFS) truncated(e *entry, size int64) {
	growth := e.data.growth()
	e.data.truncate(size)
	l.pending.Add(e.data.growth() - growth)
}

// openedTruncated records that ino's backing file was opened with O_TRUNC.
func (l *lazyFS) openedTruncated(ino uint64) {
	if e, _ := l.entryOf(ino, nil); e != nil {
		l.truncated(e, 0)
		e.mu.Unlock()
	}
}

// fsync makes ino durable, as fsync(2) on it; fd is the handle's backing
// descriptor, fsynced itself when ino holds nothing.
func (l *lazyFS) fsync(ino uint64, fd int) error {
	l.fsyncs.Add(1)
	e, _ := l.entryOf(ino, nil)
	if e == nil {
		return syscall.Fsync(fd)
	}
	defer e.mu.Unlock()
	if err := e.data.flush(e.file); err != nil {
		return err
	}
	l.retire(e)
	return nil
}

// opened and released count a file's open handles; when the last closes
// and the file has no name left, what it held can never be read again.
func (l *lazyFS) opened(ino uint64) {
	l.mu.Lock()
	l.opens[ino]++
	l.mu.Unlock()
}

func (l *lazyFS) released(ino uint64) {
	l.mu.Lock()
	if l.opens[ino]--; l.opens[ino] <= 0 {
		delete(l.opens, ino)
	}
	l.mu.Unlock()
	l.forgetIfDeleted(ino)
}

// forgetIfDeleted drops ino's entry if the file is deleted and not open:
// its data is unreachable, and the entry's descriptor would keep its
// blocks allocated in the backing filesystem.
func (l *lazyFS) forgetIfDeleted(ino uint64) {
	l.mu.Lock()
	open := l.opens[ino] > 0
	l.mu.Unlock()
	if open {
		return
	}
	if e, _ := l.entryOf(ino, nil); e != nil {
		if deleted(e.file) {
			l.retire(e)
		}
		e.mu.Unlock()
	}
}

// deleted reports whether f no longer has a name.
func deleted(f *os.File) bool {
	var st syscall.Stat_t
	return syscall.Fstat(int(f.Fd()), &st) == nil && st.Nlink == 0
}

// toErrno turns an error from the backing filesystem into the errno FUSE
// returns for it, logging what is not a plain errno.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return fs.OK
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	log.Printf("lazyfs: %v", err)
	return syscall.EIO
}
