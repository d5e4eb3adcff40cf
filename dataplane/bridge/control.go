// Package bridge is the data plane of nats-tsnet: a tsnet node and the byte
// paths through it. It makes no policy decisions of its own; the TypeScript
// control plane tells it what to listen on, where to forward and whom to
// admit, over a JSON-lines protocol on stdin/stdout. Stdio is the control
// channel because nothing else on the host can open it: no socket file, no
// port, no permissions to get wrong.
package bridge

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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

// Channel is the stdio control channel. Writes are serialized so that
// responses and events never interleave mid-line.
type Channel struct {
	mu       sync.Mutex
	out      *json.Encoder
	handlers map[string]Handler
}

func NewChannel(w io.Writer) *Channel {
	return &Channel{out: json.NewEncoder(w), handlers: map[string]Handler{}}
}

func (c *Channel) Handle(op string, h Handler) { c.handlers[op] = h }

func (c *Channel) write(v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.out.Encode(v); err != nil {
		// The control plane is gone; there is nobody left to serve.
		fmt.Fprintf(os.Stderr, "control channel write failed: %v\n", err)
		os.Exit(3)
	}
}

// Emit sends an event.
func (c *Channel) Emit(name string, data any) { c.write(Event{Event: name, Data: data}) }

// Serve reads requests until EOF. EOF means the control plane died or let go
// of us; the caller should shut down rather than run unsupervised.
func (c *Channel) Serve(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var req Request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			c.write(Response{ID: req.ID, Error: &ErrorBody{Code: "ERR_BAD_REQUEST", Message: err.Error()}})
			continue
		}
		h, ok := c.handlers[req.Op]
		if !ok {
			c.write(Response{ID: req.ID, Error: &ErrorBody{Code: "ERR_UNKNOWN_OP", Message: "unknown op " + req.Op}})
			continue
		}
		// Handlers may block (whois, dial); run them concurrently.
		go func(req Request) {
			res, err := h(req.Args)
			if err != nil {
				code := "ERR_FAILED"
				var ce *CodedError
				if errors.As(err, &ce) {
					code = ce.Code
				}
				c.write(Response{ID: req.ID, Error: &ErrorBody{Code: code, Message: err.Error()}})
				return
			}
			c.write(Response{ID: req.ID, OK: true, Result: res})
		}(req)
	}
	return sc.Err()
}
