package main

import (
	"errors"
	"fmt"
)

// The whole-filesystem commands of the control socket and of shutdown.

// stats is the answer to the stats command. Deleted files do not count:
// their data is gone with or without a power cut.
type stats struct {
	DirtyBytes int64 `json:"dirty_bytes"`
	DirtyFiles int64 `json:"dirty_files"`
	Fsyncs     int64 `json:"fsyncs"`
	Writes     int64 `json:"writes"`
}

func (l *lazyFS) stats() stats {
	s := stats{Fsyncs: l.fsyncs.Load(), Writes: l.writes.Load()}
	for _, e := range l.entries() {
		e.mu.Lock()
		if !e.gone && e.data.dirty() && !deleted(e.file) {
			s.DirtyBytes += e.data.dirtyBytes()
			s.DirtyFiles++
		}
		e.mu.Unlock()
	}
	return s
}

type cutResult struct {
	DroppedBytes int64 `json:"dropped_bytes"`
	DroppedFiles int64 `json:"dropped_files"`
}

// powerCut drops everything not flushed, as losing power would, and makes
// every later operation fail with EIO. The backing files keep their sizes:
// the logical sizes revert to them. It says false if the power was off already.
func (l *lazyFS) powerCut() (cutResult, bool) {
	l.gate.Lock()
	defer l.gate.Unlock()
	if l.off {
		return cutResult{}, false
	}
	l.off = true
	var r cutResult
	for _, e := range l.entries() {
		e.mu.Lock()
		if !e.gone {
			if e.data.dirty() && !deleted(e.file) {
				r.DroppedBytes += e.data.dirtyBytes()
				r.DroppedFiles++
			}
			l.retire(e)
		}
		e.mu.Unlock()
	}
	return r, true
}

// syncAll flushes every file, as sync(2) would, and reports how many dirty
// bytes it wrote. It goes on past a file that fails and returns every error.
func (l *lazyFS) syncAll() (int64, error) {
	var flushed int64
	var errs []error
	for _, e := range l.entries() {
		e.mu.Lock()
		if !e.gone {
			n := e.data.dirtyBytes()
			if err := e.data.flush(e.file); err != nil {
				errs = append(errs, fmt.Errorf("flush %s: %w", e.file.Name(), err))
			} else {
				flushed += n
				l.retire(e)
			}
		}
		e.mu.Unlock()
	}
	return flushed, errors.Join(errs...)
}

// shutdown flushes everything and then refuses every later operation, so
// that nothing is accepted that the unmount would lose.
func (l *lazyFS) shutdown() error {
	l.gate.Lock()
	defer l.gate.Unlock()
	l.off = true
	_, err := l.syncAll()
	return err
}
