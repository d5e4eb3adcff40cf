package bridge

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
)

// clientFilter is the client leg of a signed client connection after its
// first CONNECT. nats-server accepts further CONNECT lines at any time and
// merges them into the session (issue 14, item 3: a second CONNECT could
// rename the connection), so every later CONNECT is rewritten with the
// same edit as the first. To find them the filter keeps the NATS client
// protocol's framing: it reads control lines (bounded by maxProtoLine) and
// passes the payload of PUB and HPUB through without looking at it.
//
// It mirrors nats-server's parser (server/parser.go, processPub,
// processHeaderPub, parseSize) where the two could disagree on where a
// payload ends, and closes the connection where it cannot be sure:
//   - a line is CONNECT when it starts with "connect" in any case;
//   - PUB/HPUB are the verb in any case followed by a space or tab; the
//     arguments split on spaces and tabs; a size is 1 to 9 ASCII digits;
//   - a PUB/HPUB line with a CR anywhere but right before its LF is
//     refused (nats-server drops the byte before LF whenever a CR was
//     seen, which would let the two disagree on the size).
//
// Every other line passes unchanged; a payload is followed by CRLF, which
// nats-server checks itself (it closes the connection otherwise).
type clientFilter struct {
	net.Conn
	r       *bufio.Reader
	rewrite func(line []byte) ([]byte, error)

	remaining int    // payload bytes (and their CRLF) still to pass
	pending   []byte // a line that did not fit the caller's buffer
	err       error  // sticky: the filter never resumes after an error
}

var errBadPub = errors.New("malformed PUB/HPUB")

// Read fills p with whole filtered frames while input is buffered; it
// blocks only when it has nothing to return yet.
func (f *clientFilter) Read(p []byte) (int, error) {
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
					f.fail(err)
				} else {
					f.err = err
				}
				continue
			}
		}
		out, err := f.frame(line)
		if err != nil {
			f.fail(err)
			continue
		}
		k := copy(p[n:], out)
		n += k
		if k < len(out) {
			// line may alias the bufio buffer: keep a copy.
			f.pending = append([]byte(nil), out[k:]...)
		}
	}
	if n > 0 {
		return n, nil
	}
	return 0, f.err
}

// frame decides what one control line becomes and sets up its payload.
func (f *clientFilter) frame(line []byte) ([]byte, error) {
	if len(line) == 0 {
		return line, nil
	}
	switch line[0] {
	case 'C', 'c':
		if isConnect(line) {
			return f.rewrite(line)
		}
	case 'P', 'p':
		if len(line) > 4 && (line[3] == ' ' || line[3] == '\t') && asciiFold(line[:3], "PUB") {
			size, err := pubSize(line[4:], 2, 3, false)
			if err != nil {
				return nil, err
			}
			f.remaining = size + 2
		}
	case 'H', 'h':
		if len(line) > 5 && (line[4] == ' ' || line[4] == '\t') && asciiFold(line[:4], "HPUB") {
			size, err := pubSize(line[5:], 3, 4, true)
			if err != nil {
				return nil, err
			}
			f.remaining = size + 2
		}
	}
	return line, nil
}

// pubSize returns the payload size of a PUB (2 or 3 arguments) or HPUB (3
// or 4, header size before total size) argument list ending in LF.
func pubSize(args []byte, lo, hi int, hdr bool) (int, error) {
	args = args[:len(args)-1] // the LF readLine ended on
	if len(args) > 0 && args[len(args)-1] == '\r' {
		args = args[:len(args)-1]
	}
	if bytes.IndexByte(args, '\r') >= 0 {
		return 0, fmt.Errorf("%w: CR inside the line", errBadPub)
	}
	var a [4][]byte
	n, start := 0, -1
	for i := 0; i <= len(args); i++ {
		if i < len(args) && args[i] != ' ' && args[i] != '\t' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			if n == len(a) {
				return 0, fmt.Errorf("%w: too many arguments", errBadPub)
			}
			a[n] = args[start:i]
			n++
			start = -1
		}
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%w: %d arguments", errBadPub, n)
	}
	size := parseSize(a[n-1])
	if size < 0 {
		return 0, fmt.Errorf("%w: bad size %q", errBadPub, a[n-1])
	}
	if hdr {
		h := parseSize(a[n-2])
		if h < 0 || h > size {
			return 0, fmt.Errorf("%w: bad header size %q", errBadPub, a[n-2])
		}
	}
	return size, nil
}

// parseSize is nats-server's: 1 to 9 ASCII digits, else -1.
func parseSize(d []byte) int {
	if len(d) == 0 || len(d) > 9 {
		return -1
	}
	n := 0
	for _, c := range d {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// isConnect reports whether nats-server would parse line as CONNECT: the
// verb in any case, whatever follows it.
func isConnect(line []byte) bool {
	return len(line) >= 7 && asciiFold(line[:7], "CONNECT")
}

// asciiFold compares b with the upper-case ASCII word w, ignoring case.
func asciiFold(b []byte, w string) bool {
	if len(b) != len(w) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}

// readLineFast is readLine without a copy when the line fits the buffer.
// The result may alias r's buffer until the next read.
func readLineFast(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == nil {
		if len(line) > maxProtoLine {
			return nil, errLineTooLong
		}
		return line, nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	first := append([]byte(nil), line...) // the next read reuses the buffer
	rest, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if len(first)+len(rest) > maxProtoLine {
		return nil, errLineTooLong
	}
	return append(first, rest...), nil
}

// fail ends the connection on a protocol violation: the client leg is
// closed outright (not half-closed), so nothing more of it is read.
func (f *clientFilter) fail(err error) {
	f.err = err
	_ = f.Conn.Close()
}

func (f *clientFilter) CloseWrite() error {
	if cw, ok := f.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return f.Conn.Close()
}
