package main

import (
	"errors"
	"io"
	"slices"
)

// pageSize is the unit in which written data is held back, as a kernel's
// page cache holds it: a write dirties whole pages.
const pageSize = 4096

// backingFile is what the dirty-page logic needs of the file underneath
// (an *os.File in the filesystem, a fake in the unit tests).
type backingFile interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Sync() error
}

// fileData is one file's not-yet-durable state: the pages written since its
// last fsync, and its logical size, which the backing file catches up with
// only on fsync. It has no lock of its own; its owner serialises access.
//
// Invariants: size >= base (truncation applies to the backing file at once,
// and writes only grow size); every dirty page is pageSize long and holds
// the file's full contents for its range, with zeros at and after size.
type fileData struct {
	pages map[int64][]byte // dirty pages by page index
	size  int64            // the size readers see
	base  int64            // the backing file's size as of the last flush or truncate
}

func newFileData(backingSize int64) *fileData {
	return &fileData{pages: map[int64][]byte{}, size: backingSize, base: backingSize}
}

// readAt fills p with the logical contents at off: the backing file's bytes
// (zeros past its end), overlaid with the dirty pages. It stops at size.
func (d *fileData) readAt(p []byte, off int64, b backingFile) (int, error) {
	if off >= d.size {
		return 0, nil
	}
	p = p[:min(int64(len(p)), d.size-off)]
	got, err := readFull(b, p, off)
	if err != nil {
		return 0, err
	}
	clear(p[got:])
	end := off + int64(len(p))
	for idx := off / pageSize; idx*pageSize < end; idx++ {
		pg, ok := d.pages[idx]
		if !ok {
			continue
		}
		start := idx * pageSize
		lo, hi := max(start, off), min(start+pageSize, end)
		copy(p[lo-off:hi-off], pg[lo-start:hi-start])
	}
	return len(p), nil
}

// writeAt copies p into the pages at off and grows size to cover it. A page
// that becomes dirty is first filled with its current contents unless the
// write covers all of it.
func (d *fileData) writeAt(p []byte, off int64, b backingFile) error {
	for len(p) > 0 {
		idx, at := off/pageSize, off%pageSize
		pg, ok := d.pages[idx]
		if !ok {
			pg = make([]byte, pageSize)
			if at != 0 || len(p) < pageSize {
				if err := d.loadPage(pg, idx, b); err != nil {
					return err
				}
			}
			d.pages[idx] = pg
		}
		n := copy(pg[at:], p)
		p, off = p[n:], off+int64(n)
		d.size = max(d.size, off)
	}
	return nil
}

// loadPage fills pg with page idx's current logical contents, which (the
// page not being dirty) are the backing file's, up to size.
func (d *fileData) loadPage(pg []byte, idx int64, b backingFile) error {
	start := idx * pageSize
	if start >= d.size {
		return nil
	}
	_, err := readFull(b, pg[:min(pageSize, d.size-start)], start)
	return err
}

// truncate records that the backing file was just truncated (or extended)
// to size: pages past it go, the page it ends in keeps zeros after it.
func (d *fileData) truncate(size int64) {
	for idx, pg := range d.pages {
		start := idx * pageSize
		switch {
		case start >= size:
			delete(d.pages, idx)
		case size < start+pageSize:
			clear(pg[size-start:])
		}
	}
	d.size, d.base = size, size
}

// flush makes the logical contents durable in b: the dirty pages in file
// order, then the size, then fsync. Only when all of that succeeded are the
// pages forgotten; after a failure they stay dirty (some may have reached b,
// as some pages reach the disk when a real fsync fails).
func (d *fileData) flush(b backingFile) error {
	idxs := make([]int64, 0, len(d.pages))
	for idx := range d.pages {
		idxs = append(idxs, idx)
	}
	slices.Sort(idxs)
	for _, idx := range idxs {
		start := idx * pageSize
		if _, err := b.WriteAt(d.pages[idx][:min(pageSize, d.size-start)], start); err != nil {
			return err
		}
	}
	if err := b.Truncate(d.size); err != nil {
		return err
	}
	if err := b.Sync(); err != nil {
		return err
	}
	clear(d.pages)
	d.base = d.size
	return nil
}

// dirty reports whether anything would be lost by a power cut now.
func (d *fileData) dirty() bool { return len(d.pages) > 0 || d.size != d.base }

// dirtyBytes counts the bytes in dirty pages, up to size: page granularity,
// as a kernel counts dirty memory.
func (d *fileData) dirtyBytes() int64 {
	var n int64
	for idx := range d.pages {
		n += min(pageSize, d.size-idx*pageSize)
	}
	return n
}

// growth is how much a flush would grow the backing file.
func (d *fileData) growth() int64 { return d.size - d.base }

// readFull reads into p at off until p is full or the file ends; it returns
// how much it read, and no error for the end of the file.
func readFull(r io.ReaderAt, p []byte, off int64) (int, error) {
	n, err := r.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}
