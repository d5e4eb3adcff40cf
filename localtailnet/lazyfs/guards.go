package main

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The loopback's operations that need nothing from us but the power gate:
// after a cut they fail with EIO, so that no directory change made after
// the cut reaches the backing directory either.

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	return n.LoopbackNode.Statfs(ctx, out)
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, syscall.EIO
	}
	defer n.lfs.leave()
	return n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, syscall.EIO
	}
	defer n.lfs.leave()
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	return n.LoopbackNode.Rmdir(ctx, name)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, syscall.EIO
	}
	defer n.lfs.leave()
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, syscall.EIO
	}
	defer n.lfs.leave()
	return n.LoopbackNode.Readlink(ctx)
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, 0, syscall.EIO
	}
	defer n.lfs.leave()
	return n.LoopbackNode.OpendirHandle(ctx, flags)
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if !n.lfs.enter() {
		return nil, syscall.EIO
	}
	defer n.lfs.leave()
	return n.LoopbackNode.Readdir(ctx)
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !n.lfs.enter() {
		return 0, syscall.EIO
	}
	defer n.lfs.leave()
	return n.LoopbackNode.Getxattr(ctx, attr, dest)
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	return n.LoopbackNode.Setxattr(ctx, attr, data, flags)
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if !n.lfs.enter() {
		return syscall.EIO
	}
	defer n.lfs.leave()
	return n.LoopbackNode.Removexattr(ctx, attr)
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if !n.lfs.enter() {
		return 0, syscall.EIO
	}
	defer n.lfs.leave()
	return n.LoopbackNode.Listxattr(ctx, dest)
}
