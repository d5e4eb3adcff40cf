package bridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
)

// serverFilter is nats-server's leg of a client connection with a quota
// (quota.go). It keeps the framing of the server's stream to the client
// (MSG and HMSG payloads pass unread) to follow what nats-server does with
// the client's subscriptions, and to put the bridge's -ERR lines between
// messages, never inside one:
//   - MSG and HMSG count deliveries per sid: an UNSUB with a max ends the
//     subscription after that many;
//   - -ERR 'Permissions Violation for Subscription to ...' undoes the SUB
//     nats-server refused;
//   - a PONG answering a PING the bridge put in place of a refused line
//     becomes that line's -ERR; after a payload violation the stream ends;
//   - an INFO tells the client the largest message its quota allows, as
//     nats-server's own INFO after CONNECT tells it the connection's
//     (generateClientInfoJSON), so that clients refuse larger ones
//     themselves.
//
// nats-server writes its protocol in one spelling (upper case, single
// spaces, CRLF), so the filter reads only that; anything else passes.
type serverFilter struct {
	net.Conn
	fr     framedReader
	q      *connQuota
	ending bool // the -ERR that ends the connection is on its way out
	done   bool
}

// serverReadBuffer: the server's leg carries every message the client
// receives, so it reads in larger pieces than a handshake needs.
const serverReadBuffer = 32 * 1024

func newServerFilter(up net.Conn, q *connQuota) *serverFilter {
	f := &serverFilter{Conn: up, q: q}
	f.fr = framedReader{r: bufio.NewReaderSize(up, serverReadBuffer), frame: f.frame, fail: f.fail}
	return f
}

func (f *serverFilter) Read(p []byte) (int, error) {
	if f.done {
		return 0, io.EOF
	}
	n, err := f.fr.Read(p)
	if f.ending && len(f.fr.pending) == 0 {
		// Everything up to and including the -ERR is out: the end.
		f.done = true
		f.q.serverEnded()
	}
	if err != nil {
		f.q.serverEnded()
	}
	return n, err
}

var (
	prefixMsg     = []byte("MSG ")
	prefixHmsg    = []byte("HMSG ")
	prefixSubPerm = []byte("-ERR 'Permissions Violation for Subscription to ")
	prefixInfo    = []byte("INFO ")
	linePong      = []byte("PONG\r\n")
)

func (f *serverFilter) frame(line []byte) ([]byte, int, error) {
	if f.ending {
		return nil, 0, nil
	}
	switch {
	case bytes.HasPrefix(line, prefixMsg):
		return f.msg(line, line[len(prefixMsg):], 3, false)
	case bytes.HasPrefix(line, prefixHmsg):
		return f.msg(line, line[len(prefixHmsg):], 4, true)
	case bytes.Equal(line, linePong):
		w := f.q.pong()
		if w.err == "" {
			return line, 0, nil
		}
		f.ending = w.last
		return []byte(w.err), 0, nil
	case bytes.HasPrefix(line, prefixInfo):
		return f.info(line), 0, nil
	case bytes.HasPrefix(line, prefixSubPerm):
		if subject, queue, ok := parseSubViolation(line[len(prefixSubPerm):]); ok {
			f.q.refusedSub(subject, queue)
		}
	}
	return line, 0, nil
}

// msg frames "MSG <subject> <sid> [reply] <size>" (HMSG: a header size
// before the size) and counts the delivery on its sid.
func (f *serverFilter) msg(line, args []byte, minArgs int, hdr bool) ([]byte, int, error) {
	size, err := msgSize(args, minArgs, -1, hdr)
	if err != nil {
		return nil, 0, err
	}
	if sid := secondField(args); sid != nil {
		f.q.delivered(sid)
	}
	return line, size + 2, nil
}

// info lowers an INFO's max_payload to the payload quota. An INFO it
// cannot read passes as it is: the quota holds whatever the client thinks.
func (f *serverFilter) info(line []byte) []byte {
	quota := f.q.payload.Load()
	if quota < 0 {
		return line
	}
	out, err := rewriteInfo(line, func(m map[string]json.RawMessage) error {
		var max int64
		if json.Unmarshal(m["max_payload"], &max) != nil || max <= quota {
			return errUnchanged
		}
		m["max_payload"], _ = json.Marshal(quota)
		return nil
	})
	if err != nil {
		return line
	}
	return out
}

var errUnchanged = errors.New("nothing to change")

// secondField is the second space-separated field of args: a message's sid.
func secondField(args []byte) []byte {
	_, rest, ok := bytes.Cut(args, []byte(" "))
	if !ok {
		return nil
	}
	sid, _, _ := bytes.Cut(rest, []byte(" "))
	return sid
}

// parseSubViolation reads the rest of nats-server's
// `Permissions Violation for Subscription to %q[ using queue %q]'`.
func parseSubViolation(rest []byte) (subject, queue string, ok bool) {
	q, err := strconv.QuotedPrefix(string(rest))
	if err != nil {
		return "", "", false
	}
	if subject, err = strconv.Unquote(q); err != nil {
		return "", "", false
	}
	tail := string(rest[len(q):])
	const using = " using queue "
	if len(tail) > len(using) && tail[:len(using)] == using {
		qq, err := strconv.QuotedPrefix(tail[len(using):])
		if err != nil {
			return "", "", false
		}
		if queue, err = strconv.Unquote(qq); err != nil {
			return "", "", false
		}
	}
	return subject, queue, true
}

// fail: a stream the filter cannot frame is not passed on.
func (f *serverFilter) fail(error) {
	_ = f.Conn.Close()
	f.q.serverEnded()
}

func (f *serverFilter) CloseWrite() error { return halfClose(f.Conn) }
