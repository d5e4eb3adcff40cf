package bridge

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"time"
)

// clientFilter is the client leg of a signed client connection after its
// first CONNECT. nats-server accepts further CONNECT lines at any time and
// merges them into the session (a second CONNECT could
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
//
// With a quota (quota.go) it also follows the client's subscriptions (SUB,
// UNSUB) and PINGs, and holds the connection to its quota: a SUB over it
// is dropped and a PUB or HPUB over it ends the connection, each told with
// nats-server's own -ERR.
type clientFilter struct {
	net.Conn
	r       *bufio.Reader
	rewrite func(line []byte) ([]byte, error)
	q       *connQuota // nil: no quota

	fr     framedReader
	ending bool // a payload over the quota was refused: the stream ends
}

// Read fills p with whole filtered frames while input is buffered; it
// blocks only when it has nothing to return yet.
func (f *clientFilter) Read(p []byte) (int, error) {
	if f.fr.r == nil {
		f.fr = framedReader{r: f.r, frame: f.frame, fail: f.fail}
	}
	if f.ending {
		return 0, f.endOverPayload()
	}
	return f.fr.Read(p)
}

// endOverPayload waits until nats-server has answered the PING that
// carries the payload violation (the server's leg turns its PONG into the
// -ERR and ends), then ends this leg. A server that does not answer in
// time gets the client leg closed outright.
func (f *clientFilter) endOverPayload() error {
	select {
	case <-f.q.ended:
	case <-time.After(quotaWait):
		_ = f.Conn.Close()
	}
	return errOverPayload
}

// frame decides what one control line becomes and how much payload follows.
func (f *clientFilter) frame(line []byte) ([]byte, int, error) {
	if f.ending {
		return nil, 0, nil // nothing after a refused payload reaches nats-server
	}
	if len(line) == 0 {
		return line, 0, nil
	}
	switch line[0] {
	case 'C', 'c':
		if isConnect(line) {
			out, err := f.rewrite(line)
			return out, 0, err
		}
	case 'P', 'p':
		if args, ok := verbArgs(line, "PUB"); ok {
			return f.pub(line, args, 2, 3, false)
		}
		if f.q != nil && len(line) >= 4 && asciiFold(line[:4], "PING") {
			f.q.ping(pongWant{}) // nats-server reads anything up to LF after PING as PING
		}
	case 'H', 'h':
		if args, ok := verbArgs(line, "HPUB"); ok {
			return f.pub(line, args, 3, 4, true)
		}
	case 'S', 's':
		if f.q != nil {
			if args, ok := verbArgs(line, "SUB"); ok {
				return f.sub(line, args), 0, nil
			}
		}
	case 'U', 'u':
		if f.q != nil {
			if args, ok := verbArgs(line, "UNSUB"); ok {
				f.unsub(args)
			}
		}
	}
	return line, 0, nil
}

// pub frames a PUB or HPUB and holds it to the payload quota.
func (f *clientFilter) pub(line, args []byte, lo, hi int, hdr bool) ([]byte, int, error) {
	size, err := msgSize(args, lo, hi, hdr)
	if err != nil {
		return nil, 0, err
	}
	if f.q != nil && f.q.overPayload(size) {
		// The message is never read: its line goes upstream as the PING
		// whose PONG becomes nats-server's -ERR, and the connection ends.
		f.q.refused(ErrQuotaPayload)
		f.q.ping(pongWant{err: errPayloadTooLong, last: true})
		f.ending = true
		return []byte(injectedPing), 0, nil
	}
	return line, size + 2, nil
}

// sub records a SUB, or replaces one over the quota with the PING that
// carries nats-server's -ERR (nats-server keeps the connection open).
func (f *clientFilter) sub(line, args []byte) []byte {
	a := splitArgs(args)
	var subject, queue, sid []byte
	switch len(a) {
	case 2:
		subject, sid = a[0], a[1]
	case 3:
		subject, queue, sid = a[0], a[1], a[2]
	default:
		return line // nats-server closes the connection on it
	}
	if f.q.subscribe(subject, queue, sid) {
		return line
	}
	f.q.refused(ErrQuotaSubs)
	f.q.ping(pongWant{err: errTooManySubs})
	return []byte(injectedPing)
}

// unsub records an UNSUB: "UNSUB <sid> [max]".
func (f *clientFilter) unsub(args []byte) {
	a := splitArgs(args)
	if len(a) < 1 || len(a) > 2 {
		return // nats-server closes the connection on it
	}
	max := int64(-1)
	if len(a) == 2 {
		max = int64(parseSize(a[1]))
	}
	f.q.unsubscribe(a[0], max)
}

// splitArgs splits the arguments of a SUB or UNSUB line as nats-server
// does (splitArg, on blanks, CR and LF). Like its parser it drops the byte
// before LF when the line holds a CR anywhere.
func splitArgs(args []byte) [][]byte {
	args = args[:len(args)-1] // the LF the line ended on
	if bytes.IndexByte(args, '\r') >= 0 && len(args) > 0 {
		args = args[:len(args)-1]
	}
	return bytes.FieldsFunc(args, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' })
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
func (f *clientFilter) fail(error) {
	_ = f.Conn.Close()
}

// Close ends the connection and lets go of its quota.
func (f *clientFilter) Close() error {
	if f.q != nil {
		f.q.release()
	}
	return f.Conn.Close()
}

func (f *clientFilter) CloseWrite() error { return halfClose(f.Conn) }
