// Package bridge is the data plane of nats-tsnet: a tsnet node and the byte
// paths through it. It makes no policy decisions of its own; the TypeScript
// control plane tells it what to listen on, where to forward and whom to
// admit, over a JSON-lines protocol on stdin/stdout. Stdio is the control
// channel because nothing else on the host can open it: no socket file, no
// port, no permissions to get wrong.
package bridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Request is one control command from the control plane.
type Request struct {
	ID   int64           `json:"id"`
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response answers exactly one Request, matched by ID.
type Response struct {
	ID     int64      `json:"id"`
	OK     bool       `json:"ok"`
	Result any        `json:"result,omitempty"`
	Error  *ErrorBody `json:"error,omitempty"`
}

// ErrorBody carries a stable code the control plane can branch on.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// CodedError is an error with a stable code for the control protocol.
type CodedError struct {
	Code string
	Err  error
}

func (e *CodedError) Error() string { return e.Err.Error() }
func (e *CodedError) Unwrap() error { return e.Err }

func coded(code string, format string, a ...any) error {
	return &CodedError{Code: code, Err: fmt.Errorf(format, a...)}
}

// Event is an unsolicited message (peer changes, connection notes, fatal errors).
type Event struct {
	Event string `json:"event"`
	Data  any    `json:"data,omitempty"`
}

// Handler serves one op; args is the raw JSON of Request.Args.
type Handler func(args json.RawMessage) (any, error)

// WriteError means the control channel could not be written: the control
// plane is gone or has stopped reading. The channel is dead from then on.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "control channel write failed: " + e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// Channel is the stdio control channel. Writes are serialized so that
// responses and events never interleave mid-line.
type Channel struct {
	handlers map[string]Handler

	mu     sync.Mutex
	out    *json.Encoder
	werr   error         // first write error; sticky
	broken chan struct{} // closed when werr is set
}

func NewChannel(w io.Writer) *Channel {
	return &Channel{out: json.NewEncoder(w), handlers: map[string]Handler{}, broken: make(chan struct{})}
}

// Handle registers h for op. Call it before Serve.
func (c *Channel) Handle(op string, h Handler) { c.handlers[op] = h }

// write sends one line. After the first failure nothing more is written: a
// partly written line followed by a whole one would corrupt the stream the
// control plane parses, and the reader is most likely gone anyway.
func (c *Channel) write(v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if err := c.out.Encode(v); err != nil {
		c.werr = &WriteError{Err: err}
		close(c.broken)
		return c.werr
	}
	return nil
}

func (c *Channel) writeErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.werr
}

// Emit sends an event. A failure also ends Serve with a *WriteError, so
// callers that cannot do anything about it may ignore the result.
func (c *Channel) Emit(name string, data any) error {
	return c.write(Event{Event: name, Data: data})
}

// maxRequestLine bounds one control line. The control plane is trusted, but
// a runaway line must not grow memory without limit.
const maxRequestLine = 1 << 20

// Serve reads requests until EOF, a read error, or a failed write
// (returned as *WriteError). EOF means the control plane died or let go of
// us; the caller should shut down rather than run unsupervised.
//
// Requests are read on their own goroutine so that a response that cannot
// be written (handlers answer asynchronously) ends Serve at once instead of
// at the next request. After a write failure that goroutine may stay
// blocked in r.Read until r is closed; the caller is about to exit.
func (c *Channel) Serve(r io.Reader) error {
	lines := make(chan []byte)
	readDone := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), maxRequestLine)
		for sc.Scan() {
			select {
			case lines <- bytes.Clone(sc.Bytes()):
			case <-c.broken:
				return
			}
		}
		readDone <- sc.Err()
	}()
	for {
		select {
		case <-c.broken:
			return c.writeErr()
		case err := <-readDone:
			return err
		case line := <-lines:
			if err := c.dispatch(line); err != nil {
				return err
			}
		}
	}
}

// dispatch answers malformed requests at once and starts a handler for the
// rest. It returns only write errors.
func (c *Channel) dispatch(line []byte) error {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return c.write(Response{ID: req.ID, Error: &ErrorBody{Code: ErrBadRequest, Message: err.Error()}})
	}
	h, ok := c.handlers[req.Op]
	if !ok {
		return c.write(Response{ID: req.ID, Error: &ErrorBody{Code: ErrUnknownOp, Message: "unknown op " + req.Op}})
	}
	// Handlers may block (whois, dial); run them concurrently. A failed
	// write closes c.broken, which is how Serve learns of it.
	go func() {
		res, err := h(req.Args)
		if err != nil {
			code := ErrFailed
			var ce *CodedError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			_ = c.write(Response{ID: req.ID, Error: &ErrorBody{Code: code, Message: err.Error()}})
			return
		}
		_ = c.write(Response{ID: req.ID, OK: true, Result: res})
	}()
	return nil
}
