package bridge

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
)

// framedReader passes a NATS protocol stream through frame one control line
// at a time, and the payload each line announces untouched (frame says how
// long it is). It is the reading half of the bridge's protocol filters.
//
// Read fills p with whole frames while input is buffered and blocks only
// when it has nothing to return yet; a line frame drops returns nothing.
type framedReader struct {
	r     *bufio.Reader
	frame func(line []byte) (out []byte, payload int, err error)
	fail  func(err error) // a protocol violation: the stream ends here

	remaining int    // payload bytes (and their CRLF) still to pass
	pending   []byte // output that did not fit the caller's buffer
	err       error  // sticky: the reader never resumes after an error
}

func (f *framedReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(f.pending) > 0 {
			k := copy(p[n:], f.pending)
			f.pending = f.pending[k:]
			n += k
			continue
		}
		if f.err != nil {
			break
		}
		if f.remaining > 0 {
			want := min(f.remaining, len(p)-n)
			if n > 0 {
				if b := f.r.Buffered(); b == 0 {
					break
				} else if want > b {
					want = b
				}
			}
			k, err := f.r.Read(p[n : n+want])
			n += k
			f.remaining -= k
			if err != nil {
				f.err = err
			}
			continue
		}
		var line []byte
		if n > 0 {
			// Only a line that is already complete in the buffer.
			buf, _ := f.r.Peek(f.r.Buffered())
			if bytes.IndexByte(buf, '\n') < 0 {
				break
			}
			line, _ = f.r.ReadSlice('\n')
		} else {
			var err error
			if line, err = readLineFast(f.r); err != nil {
				if errors.Is(err, errLineTooLong) {
					f.stop(err)
				} else {
					f.err = err
				}
				continue
			}
		}
		out, payload, err := f.frame(line)
		if err != nil {
			f.stop(err)
			continue
		}
		f.remaining = payload
		k := copy(p[n:], out)
		n += k
		if k < len(out) {
			// out may alias the bufio buffer: keep a copy.
			f.pending = append([]byte(nil), out[k:]...)
		}
	}
	if n > 0 {
		return n, nil
	}
	return 0, f.err
}

func (f *framedReader) stop(err error) {
	f.err = err
	if f.fail != nil {
		f.fail(err)
	}
}

var errBadMsg = errors.New("malformed message line")

// verbArgs reports whether line starts with the verb w (in any case) and a
// space or tab, as nats-server's parser reads a verb that takes arguments,
// and returns the arguments.
func verbArgs(line []byte, w string) ([]byte, bool) {
	if len(line) <= len(w) || (line[len(w)] != ' ' && line[len(w)] != '\t') || !asciiFold(line[:len(w)], w) {
		return nil, false
	}
	return line[len(w)+1:], true
}

// msgSize returns the payload size a message line (PUB, HPUB, RMSG, HMSG,
// LMSG, MSG) announces: its last argument, and with headers the header size
// before it (which must not exceed it). The line has lo to hi arguments
// (hi < 0: no upper bound); args ends in the line's LF. It mirrors nats-server's parser
// where the two could disagree on where a payload ends and refuses the rest:
// a CR anywhere but right before the LF (nats-server then drops the byte
// before LF, whatever it is), a size that is not 1 to 9 ASCII digits.
func msgSize(args []byte, lo, hi int, hdr bool) (int, error) {
	args = args[:len(args)-1]
	if len(args) > 0 && args[len(args)-1] == '\r' {
		args = args[:len(args)-1]
	}
	if bytes.IndexByte(args, '\r') >= 0 {
		return 0, fmt.Errorf("%w: CR inside the line", errBadMsg)
	}
	// The last two arguments and the count, without allocating: this runs
	// for every message a route carries.
	var last, prev []byte
	count, end := 0, -1
	for i := len(args) - 1; i >= -1; i-- {
		blank := i < 0 || args[i] == ' ' || args[i] == '\t'
		if !blank && end < 0 {
			end = i
		} else if blank && end >= 0 {
			switch count {
			case 0:
				last = args[i+1 : end+1]
			case 1:
				prev = args[i+1 : end+1]
			}
			count++
			end = -1
		}
	}
	if count < lo || (hi >= 0 && count > hi) {
		return 0, fmt.Errorf("%w: %d arguments", errBadMsg, count)
	}
	size := parseSize(last)
	if size < 0 {
		return 0, fmt.Errorf("%w: bad size %q", errBadMsg, last)
	}
	if hdr {
		h := parseSize(prev)
		if h < 0 || h > size {
			return 0, fmt.Errorf("%w: bad header size %q", errBadMsg, prev)
		}
	}
	return size, nil
}
