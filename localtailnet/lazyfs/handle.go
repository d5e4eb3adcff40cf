package main

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// handle is an open regular file. Its writes go to the inode's held data
// (shared with every other handle of the inode); its reads see that data
// over the backing file.
type handle struct {
	lfs  *lazyFS
	ino  uint64
	lf   *fs.LoopbackFile // owns the backing descriptor, closed on Release
	fd   int              // lf's descriptor
	sync bool             // opened O_SYNC or O_DSYNC: each write is durable before it returns
}

var (
	_ fs.FileReader   = (*handle)(nil)
	_ fs.FileWriter   = (*handle)(nil)
	_ fs.FileWritever = (*handle)(nil)
	_ fs.FileFsyncer  = (*handle)(nil)
	_ fs.FileFlusher  = (*handle)(nil)
	_ fs.FileReleaser = (*handle)(nil)
)

// newHandle wraps the loopback's handle of a just opened backing file. It
// opens with direct I/O, so that the kernel caches no data and every read
// and write comes here.
func (l *lazyFS) newHandle(ino uint64, fh fs.FileHandle, flags uint32) (*handle, uint32, syscall.Errno) {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return nil, 0, syscall.EIO // not what the loopback returns: a go-fuse change
	}
	fd, ok := lf.PassthroughFd()
	if !ok {
		lf.Release(context.Background())
		return nil, 0, syscall.EBADF
	}
	l.opened(ino)
	h := &handle{lfs: l, ino: ino, lf: lf, fd: fd, sync: flags&syscall.O_DSYNC != 0} // O_SYNC includes O_DSYNC's bit
	return h, fuse.FOPEN_DIRECT_IO, 0
}

// reopen gives the inode's entry a read-write descriptor of its own, by
// way of /proc (which works for a file that no longer has a name).
func (h *handle) reopen() (*os.File, error) {
	proc := fmt.Sprintf("/proc/self/fd/%d", h.fd)
	name, err := os.Readlink(proc)
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Open(proc, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reopen %s for writing: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if !h.lfs.enter() {
		return nil, syscall.EIO
	}
	defer h.lfs.leave()
	n, err := h.lfs.read(h.ino, dest, off, fdReader(h.fd))
	if err != nil {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	return h.Writev(ctx, [][]byte{data}, off)
}

func (h *handle) Writev(ctx context.Context, iov [][]byte, off int64) (uint32, syscall.Errno) {
	if !h.lfs.enter() {
		return 0, syscall.EIO
	}
	defer h.lfs.leave()
	if err := h.lfs.write(h.ino, iov, off, h.reopen); err != nil {
		return 0, toErrno(err)
	}
	if h.sync {
		if err := h.lfs.fsync(h.ino, h.fd); err != nil {
			return 0, toErrno(err)
		}
	}
	var n int
	for _, b := range iov {
		n += len(b)
	}
	return uint32(n), 0
}

// Fsync serves fsync and fdatasync alike: the size is data here.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if !h.lfs.enter() {
		return syscall.EIO
	}
	defer h.lfs.leave()
	return toErrno(h.lfs.fsync(h.ino, h.fd))
}

// Flush is close(2), which makes nothing durable.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if !h.lfs.enter() {
		return syscall.EIO
	}
	defer h.lfs.leave()
	return h.lf.Flush(ctx)
}

// Release closes the backing descriptor, also after a cut. What the inode
// holds stays, as a page cache keeps a closed file's dirty pages.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	errno := h.lf.Release(ctx)
	h.lfs.released(h.ino)
	return errno
}

// fdReader reads a descriptor with pread(2).
type fdReader int

func (fd fdReader) ReadAt(p []byte, off int64) (int, error) {
	var n int
	for n < len(p) {
		m, err := syscall.Pread(int(fd), p[n:], off+int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}
