package main

import (
	"context"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is a loopback node (go-fuse's passthrough to the backing directory)
// whose regular files hold written data in memory until fsync.
//
// Metadata is not held back: mkdir, create, rename, unlink, rmdir, link,
// chmod and truncate reach the backing directory at once, as if every
// metadata change were journaled the moment it happened. nats-server
// fsyncs directories after creating and renaming files anyway, so on a
// journaling filesystem those changes would be durable by then; what this
// filesystem tests is what a cut does to file data that was not fsynced.
// So after a cut a created file exists with the size it last had on the
// backing side (0 if it was never fsynced), and a rename has happened.
type node struct {
	*fs.LoopbackNode
	lfs *lazyFS
}

// WrapChild makes every node the loopback creates one of ours (go-fuse
// calls it from NewInode).
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), lfs: n.lfs}
}

func (n *node) ino() uint64 { return n.StableAttr().Ino }

// backingPath is the node's path in the backing directory.
func (n *node) backingPath() string { return filepath.Join(n.RootData.Path, n.Path(nil)) }

// patchSize reports ino's logical size in size, when it has one of its own.
func (l *lazyFS) patchSize(ino uint64, size *uint64) {
	if s, ok := l.size(ino); ok {
		*size = uint64(s)
	}
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, syscall.EIO
	}
	defer n.lfs.leave()
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno == 0 {
		n.lfs.patchSize(ch.StableAttr().Ino, &out.Attr.Size)
	}
	return ch, errno
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	return n.getattr(ctx, f, out)
}

// getattr stats the backing file (through the handle when there is one:
// the file may have no name left) and reports the logical size.
func (n *node) getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var errno syscall.Errno
	if h, ok := f.(*handle); ok {
		errno = h.lf.Getattr(ctx, out)
	} else {
		errno = n.LoopbackNode.Getattr(ctx, nil, out)
	}
	if errno == 0 {
		n.lfs.patchSize(n.ino(), &out.Attr.Size)
	}
	return errno
}

// Statx says ENOSYS, after which the kernel falls back to Getattr for
// good: one place reports sizes.
func (n *node) Statx(ctx context.Context, f fs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	return syscall.ENOSYS
}

// otherAttrs are the attributes Setattr passes on unchanged.
const otherAttrs = fuse.FATTR_MODE | fuse.FATTR_UID | fuse.FATTR_GID | fuse.FATTR_ATIME | fuse.FATTR_MTIME

// Setattr applies a truncate to the backing file and the held data at
// once, and the other attributes to the backing file.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	h, _ := f.(*handle)
	if size, ok := in.GetSize(); ok {
		direct := func(size int64) error { return syscall.Truncate(n.backingPath(), size) }
		if h != nil {
			direct = func(size int64) error { return syscall.Ftruncate(h.fd, size) }
		}
		if err := n.lfs.truncate(n.ino(), int64(size), direct); err != nil {
			return toErrno(err)
		}
	}
	if in.Valid&otherAttrs != 0 {
		rest := *in
		rest.Valid &^= fuse.FATTR_SIZE
		var errno syscall.Errno
		if h != nil {
			errno = h.lf.Setattr(ctx, &rest, out)
		} else {
			errno = n.LoopbackNode.Setattr(ctx, nil, &rest, out)
		}
		if errno != 0 {
			return errno
		}
	}
	return n.getattr(ctx, f, out)
}

// backingFlags are the open flags for the backing file: O_DIRECT would
// only make our own reads and writes of it fail on unaligned buffers.
func backingFlags(flags uint32) uint32 { return flags &^ syscall.O_DIRECT }

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, 0, syscall.EIO
	}
	defer n.lfs.leave()
	fh, _, errno := n.LoopbackNode.Open(ctx, backingFlags(flags))
	if errno != 0 {
		return nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 {
		n.lfs.openedTruncated(n.ino())
	}
	return n.lfs.newHandle(n.ino(), fh, flags)
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, nil, 0, syscall.EIO
	}
	defer n.lfs.leave()
	ch, fh, _, errno := n.LoopbackNode.Create(ctx, name, backingFlags(flags), mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	ino := ch.StableAttr().Ino
	if flags&syscall.O_TRUNC != 0 {
		n.lfs.openedTruncated(ino)
	}
	n.lfs.patchSize(ino, &out.Attr.Size) // an existing file opened with O_CREAT
	h, fuseFlags, errno := n.lfs.newHandle(ino, fh, flags)
	return ch, h, fuseFlags, errno
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, syscall.EIO
	}
	defer n.lfs.leave()
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	ch, errno := n.LoopbackNode.Link(ctx, t.LoopbackNode, name, out)
	if errno == 0 {
		n.lfs.patchSize(ch.StableAttr().Ino, &out.Attr.Size)
	}
	return ch, errno
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	victim := n.GetChild(name)
	errno := n.LoopbackNode.Unlink(ctx, name)
	if errno == 0 && victim != nil {
		n.lfs.forgetIfDeleted(victim.StableAttr().Ino)
	}
	return errno
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	p, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	victim := p.GetChild(newName) // replaced, unless the names are exchanged
	errno := n.LoopbackNode.Rename(ctx, name, p.LoopbackNode, newName, flags)
	if errno == 0 && victim != nil && flags&fs.RENAME_EXCHANGE == 0 {
		n.lfs.forgetIfDeleted(victim.StableAttr().Ino)
	}
	return errno
}

// Tmpfile is refused: an O_TMPFILE file would bypass the held data (the
// loopback hands it a plain handle), and nats-server does not use it.
func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// CopyFileRange is refused (ENOSYS: for good), so the kernel copies with
// reads and writes, which go through the held data.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, len uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}
