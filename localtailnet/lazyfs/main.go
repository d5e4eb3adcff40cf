// lazyfs is a passthrough FUSE filesystem that, like Jepsen's LazyFS, holds
// file data written without fsync in memory, and on command drops it, as a
// power cut would. The fault tests mount it under a NATS node's JetStream
// store directory.
//
//	lazyfs -backing DIR -mount DIR -control SOCKET
//
// It prints {"ready":true} once it serves, then answers one-line commands
// on the control socket with one JSON line each:
//
//	stats     {"dirty_bytes":N,"dirty_files":N,"fsyncs":N,"writes":N}
//	sync      {"flushed_bytes":N}: flushes everything, as sync(2)
//	powercut  {"dropped_bytes":N,"dropped_files":N}: drops everything not
//	          fsynced, fails every later operation with EIO, unmounts
//	          (lazily if busy) and exits 0
//
// fsyncs counts what made a file durable on the writer's request: fsync,
// fdatasync and writes through an O_SYNC or O_DSYNC handle.
//
// SIGTERM or SIGINT is a clean shutdown: it flushes everything, then
// unmounts; it exits 1 if some data could not be written.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

type options struct {
	backing, mount, control string
	spaceCheck, debug       bool
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("lazyfs: ")
	var o options
	flag.StringVar(&o.backing, "backing", "", "directory that holds the files")
	flag.StringVar(&o.mount, "mount", "", "where to mount")
	flag.StringVar(&o.control, "control", "", "Unix socket to take commands on")
	flag.BoolVar(&o.spaceCheck, "space-check", true, "fail a write with ENOSPC when the backing filesystem could not hold it")
	flag.BoolVar(&o.debug, "debug", false, "log every FUSE request")
	flag.Parse()
	if o.backing == "" || o.mount == "" || o.control == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(o); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(o options) error {
	backing, err := filepath.Abs(o.backing)
	if err != nil {
		return err
	}
	l := newLazyFS(backing, o.spaceCheck)
	srv, err := mount(l, o.mount, o.debug)
	if err != nil {
		return err
	}
	ln, err := listenControl(o.control)
	if err != nil {
		return errors.Join(err, unmount(srv, o.mount))
	}
	defer ln.Close()
	c := newController(l)
	go c.serve(ln)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	gone := make(chan struct{})
	go func() { srv.Wait(); close(gone) }()
	fmt.Println(`{"ready":true}`)

	select {
	case <-c.cut:
		return unmount(srv, o.mount)
	case <-sigs:
		return errors.Join(l.shutdown(), unmount(srv, o.mount))
	case <-gone:
		return fmt.Errorf("%s was unmounted by someone else; what was not fsynced is lost", o.mount)
	}
}

// mount serves l at mnt. Attributes and entries are never cached and files
// are opened with direct I/O, so that every read, write and stat comes
// here. It mounts with mount(2) itself (we are root), so no fusermount.
func mount(l *lazyFS, mnt string, debug bool) (*fuse.Server, error) {
	// go-fuse would mount over a file, fail, and leave the mount behind.
	if fi, err := os.Stat(mnt); err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("mount point %s is not a directory", mnt)
	}
	root, err := fs.NewLoopbackRoot(l.backing)
	if err != nil {
		return nil, fmt.Errorf("backing directory: %w", err)
	}
	never := time.Duration(0)
	opts := &fs.Options{
		EntryTimeout:    &never,
		AttrTimeout:     &never,
		NegativeTimeout: &never,
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true,
			AllowOther:        true, // nats-server may run as another user
			FsName:            l.backing,
			Name:              "lazyfs",
			Debug:             debug,
		},
	}
	srv, err := fs.Mount(mnt, &node{LoopbackNode: root.(*fs.LoopbackNode), lfs: l}, opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s over %s (needs root and /dev/fuse): %w", mnt, l.backing, err)
	}
	return srv, nil
}

// unmount takes the mount away: a plain unmount, or, while files are still
// open (nats-server's, after a cut), a detach. It does not wait for the
// server's loops (go-fuse's Unmount does): a copy of the mount in another
// mount namespace (every `ip netns exec` makes one) keeps the connection
// open, and the loops would never end. Our exit closes /dev/fuse, which ends
// the connection everywhere; what still uses the files then fails.
func unmount(_ *fuse.Server, mnt string) error {
	if syscall.Unmount(mnt, 0) == nil {
		return nil
	}
	if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", mnt, err)
	}
	return nil
}
