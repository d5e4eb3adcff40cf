package bridge

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
)

// reloading holds a value built from files and builds it again when one
// of them changes (its inode, size or modification time), checked at most
// once per get: a rotated certificate is served from the next handshake
// on, with no restart and no watcher goroutine. When the new files do not
// load (a half-written key, a cert that does not match it), the last good
// value is kept and warn is told, once per change.
type reloading[T any] struct {
	paths []string
	load  func() (T, error)
	warn  func(error)

	mu    sync.Mutex
	stamp string
	val   T
	ok    bool
}

func newReloading[T any](paths []string, load func() (T, error), warn func(error)) *reloading[T] {
	return &reloading[T]{paths: paths, load: load, warn: warn}
}

// get returns the current value; an error only when there has never been
// a good one.
func (r *reloading[T]) get() (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp, err := fileStamp(r.paths)
	if err == nil && stamp == r.stamp && r.ok {
		return r.val, nil
	}
	if err == nil {
		var v T
		if v, err = r.load(); err == nil {
			r.val, r.ok, r.stamp = v, true, stamp
			return v, nil
		}
	}
	if r.ok {
		// Keep serving the last good value; try again on the next change.
		if stamp != r.stamp && r.warn != nil {
			r.warn(err)
		}
		r.stamp = stamp
		return r.val, nil
	}
	var zero T
	return zero, err
}

// fileStamp identifies the current content of files without reading them.
func fileStamp(paths []string) (string, error) {
	var b strings.Builder
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		ino := uint64(0)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		fmt.Fprintf(&b, "%d/%d/%d;", ino, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

// readFileLimited reads a small file (a CA bundle), refusing a huge one.
func readFileLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return b, nil
}
