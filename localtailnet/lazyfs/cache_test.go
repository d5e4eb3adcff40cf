package main

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
)

// memFile is a backing file in memory, whose writes can be made to fail.
type memFile struct {
	data     []byte
	writeErr error
	syncs    int
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if m.writeErr != nil {
		return 0, m.writeErr
	}
	if end := off + int64(len(p)); end > int64(len(m.data)) {
		m.data = append(m.data, make([]byte, end-int64(len(m.data)))...)
	}
	return copy(m.data[off:], p), nil
}

func (m *memFile) Truncate(size int64) error {
	if size <= int64(len(m.data)) {
		m.data = m.data[:size]
	} else {
		m.data = append(m.data, make([]byte, size-int64(len(m.data)))...)
	}
	return nil
}

func (m *memFile) Sync() error { m.syncs++; return nil }

// pattern is n recognisable bytes.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i%251)
	}
	return b
}

// readAll reads d's whole logical contents.
func readAll(t *testing.T, d *fileData, b backingFile) []byte {
	t.Helper()
	p := make([]byte, d.size+100)
	n, err := d.readAt(p, 0, b)
	if err != nil {
		t.Fatal(err)
	}
	return p[:n]
}

func TestWriteOverBackingAtPageBoundaries(t *testing.T) {
	b := &memFile{data: pattern(10000, 1)}
	d := newFileData(10000)
	want := bytes.Clone(b.data)
	write := func(off int, p []byte) {
		t.Helper()
		if err := d.writeAt(p, int64(off), b); err != nil {
			t.Fatal(err)
		}
		if end := off + len(p); end > len(want) {
			want = append(want, make([]byte, end-len(want))...)
		}
		copy(want[off:], p)
	}
	write(4090, pattern(12, 100))   // straddles pages 0 and 1
	write(8192, pattern(4096, 200)) // exactly page 2: not loaded
	write(9990, pattern(30, 50))    // across the backing EOF
	write(20000, []byte("tail"))    // past EOF: zeros in between
	if got := readAll(t, d, b); !bytes.Equal(got, want) {
		t.Fatalf("logical contents differ from the model")
	}
	if len(b.data) != 10000 {
		t.Fatalf("backing changed before flush: %d bytes", len(b.data))
	}
	// A read starting inside a page and ending inside another.
	p := make([]byte, 5000)
	n, err := d.readAt(p, 4000, b)
	if err != nil || n != 5000 || !bytes.Equal(p, want[4000:9000]) {
		t.Fatalf("mid read: n=%d err=%v equal=%v", n, err, bytes.Equal(p, want[4000:9000]))
	}
	if n, _ := d.readAt(p, d.size, b); n != 0 {
		t.Fatalf("read at EOF returned %d bytes", n)
	}
}

func TestFlushMakesBackingEqualLogical(t *testing.T) {
	b := &memFile{data: pattern(5000, 1)}
	d := newFileData(5000)
	d.writeAt([]byte("xyz"), 4095, b)
	d.writeAt([]byte("end"), 12000, b)
	want := readAll(t, d, b)
	if err := d.flush(b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.data, want) || b.syncs != 1 || d.dirty() || d.base != 12003 {
		t.Fatalf("after flush: backing equal=%v syncs=%d dirty=%v base=%d", bytes.Equal(b.data, want), b.syncs, d.dirty(), d.base)
	}
}

func TestFailedFlushStaysDirty(t *testing.T) {
	b := &memFile{writeErr: syscall.ENOSPC}
	d := newFileData(0)
	d.writeAt([]byte("data"), 0, b)
	if err := d.flush(b); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("flush: %v, want ENOSPC", err)
	}
	if !d.dirty() || d.dirtyBytes() != 4 || b.syncs != 0 {
		t.Fatalf("after failed flush: dirty=%v bytes=%d syncs=%d", d.dirty(), d.dirtyBytes(), b.syncs)
	}
}

func TestTruncateTrimsPages(t *testing.T) {
	b := &memFile{data: pattern(3000, 1)}
	d := newFileData(3000)
	d.writeAt(pattern(9000, 7), 0, b) // pages 0..2
	b.Truncate(5000)                  // what the caller does first
	d.truncate(5000)
	if len(d.pages) != 2 || d.size != 5000 || d.base != 5000 {
		t.Fatalf("after truncate: %d pages, size %d, base %d", len(d.pages), d.size, d.base)
	}
	b.Truncate(9000)
	d.truncate(9000) // grows again: zeros after 5000, also in the trimmed page
	got := readAll(t, d, b)
	want := append(pattern(9000, 7)[:5000], make([]byte, 4000)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("after truncating down and up, contents differ")
	}
}

func TestDirtyBytesClipsAtSize(t *testing.T) {
	d := newFileData(0)
	b := &memFile{}
	d.writeAt([]byte("0123456789"), 0, b)
	if d.dirtyBytes() != 10 || d.growth() != 10 {
		t.Fatalf("dirtyBytes %d growth %d, want 10 10", d.dirtyBytes(), d.growth())
	}
	d.writeAt([]byte("x"), 5000, b)
	if d.dirtyBytes() != 4096+905 {
		t.Fatalf("dirtyBytes %d, want %d", d.dirtyBytes(), 4096+905)
	}
}

// TestRandomAgainstModel checks reads, writes and truncates at random
// offsets against a plain byte slice, then that a flush leaves exactly it.
func TestRandomAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := &memFile{data: pattern(7000, 3)}
	d := newFileData(7000)
	model := bytes.Clone(b.data)
	for i := range 2000 {
		switch r.IntN(10) {
		case 0:
			size := r.IntN(30000)
			b.Truncate(int64(size))
			d.truncate(int64(size))
			model = append(model[:min(size, len(model))], make([]byte, max(0, size-len(model)))...)
		default:
			off, p := r.IntN(30000), pattern(1+r.IntN(9000), byte(i))
			if err := d.writeAt(p, int64(off), b); err != nil {
				t.Fatal(err)
			}
			if end := off + len(p); end > len(model) {
				model = append(model, make([]byte, end-len(model))...)
			}
			copy(model[off:], p)
		}
		off := r.IntN(len(model) + 1)
		p := make([]byte, r.IntN(10000))
		n, err := d.readAt(p, int64(off), b)
		if err != nil || !bytes.Equal(p[:n], model[off:min(off+len(p), len(model))]) {
			t.Fatalf("step %d: read at %d differs from the model (err %v)", i, off, err)
		}
	}
	if err := d.flush(b); err != nil || !bytes.Equal(b.data, model) {
		t.Fatalf("after flush the backing differs from the model (err %v)", err)
	}
}
