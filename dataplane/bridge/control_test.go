package bridge

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// wireResponse is a Response as the control plane reads it.
type wireResponse struct {
	ID     int64           `json:"id"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  *ErrorBody      `json:"error"`
}

// harness runs Serve between two pipes, as the control plane would.
type harness struct {
	in   *io.PipeWriter
	out  *bufio.Reader
	done chan error
}

func newHarness(t *testing.T, handlers map[string]Handler) *harness {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ch := NewChannel(outW)
	for op, h := range handlers {
		ch.Handle(op, h)
	}
	h := &harness{in: inW, out: bufio.NewReader(outR), done: make(chan error, 1)}
	go func() { h.done <- ch.Serve(inR) }()
	t.Cleanup(func() { inW.Close(); outR.Close() })
	return h
}

func (h *harness) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(h.in, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) recv(t *testing.T) wireResponse {
	t.Helper()
	line, err := h.out.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var r wireResponse
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatalf("response %q: %v", line, err)
	}
	return r
}

func TestServeAnswers(t *testing.T) {
	handlers := map[string]Handler{
		"ok":       func(json.RawMessage) (any, error) { return ListenResult{Name: "client", Port: 4222}, nil },
		"echo":     func(args json.RawMessage) (any, error) { return args, nil },
		"notfound": func(json.RawMessage) (any, error) { return nil, coded(ErrNotFound, "no listener named %q", "x") },
		"wrapped": func(json.RawMessage) (any, error) {
			return nil, errors.Join(errors.New("ctx"), coded(ErrWhois, "whois"))
		},
		"uncoded":   func(json.RawMessage) (any, error) { return nil, errors.New("boom") },
		"validates": func(raw json.RawMessage) (any, error) { var a ListenArgs; return nil, DecodeArgs(raw, &a) },
	}
	tests := []struct {
		name   string
		line   string
		id     int64
		code   string // "" for success
		result string // expected result JSON on success
	}{
		{"not JSON", `this is not json`, 0, ErrBadRequest, ""},
		{"truncated JSON", `{"id":4,"op":"ok"`, 0, ErrBadRequest, ""},
		{"wrong type keeps the id", `{"id":3,"op":5}`, 3, ErrBadRequest, ""},
		{"unknown op", `{"id":7,"op":"launch"}`, 7, ErrUnknownOp, ""},
		{"missing op", `{"id":8}`, 8, ErrUnknownOp, ""},
		{"coded error travels back", `{"id":9,"op":"notfound"}`, 9, ErrNotFound, ""},
		{"wrapped coded error travels back", `{"id":10,"op":"wrapped"}`, 10, ErrWhois, ""},
		{"uncoded error", `{"id":11,"op":"uncoded"}`, 11, ErrFailed, ""},
		{"bad args", `{"id":12,"op":"validates","args":{"name":"x"}}`, 12, ErrBadArgs, ""},
		{"success", `{"id":13,"op":"ok"}`, 13, "", `{"name":"client","port":4222}`},
		{"args reach the handler", `{"id":14,"op":"echo","args":{"a":[1]}}`, 14, "", `{"a":[1]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, handlers)
			h.send(t, tt.line)
			r := h.recv(t)
			if r.ID != tt.id {
				t.Errorf("id = %d, want %d", r.ID, tt.id)
			}
			if tt.code == "" {
				if !r.OK || r.Error != nil || string(r.Result) != tt.result {
					t.Errorf("got ok=%v error=%v result=%s, want ok result %s", r.OK, r.Error, r.Result, tt.result)
				}
				return
			}
			if r.OK || r.Error == nil || r.Error.Code != tt.code || r.Error.Message == "" {
				t.Errorf("got ok=%v error=%+v, want code %s with a message", r.OK, r.Error, tt.code)
			}
		})
	}
}

func TestServeEndsAtEOF(t *testing.T) {
	ch := NewChannel(io.Discard)
	if err := ch.Serve(strings.NewReader(`{"id":1,"op":"x"}` + "\n")); err != nil {
		t.Errorf("Serve at EOF = %v, want nil", err)
	}
}

func TestServeRefusesHugeLine(t *testing.T) {
	ch := NewChannel(io.Discard)
	err := ch.Serve(strings.NewReader(strings.Repeat("x", maxRequestLine+1) + "\n"))
	if !errors.Is(err, bufio.ErrTooLong) {
		t.Errorf("Serve = %v, want %v", err, bufio.ErrTooLong)
	}
}

func TestEmit(t *testing.T) {
	var b strings.Builder
	ch := NewChannel(&b)
	if err := ch.Emit("netmap", nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Emit("fatal", ErrorBody{Code: ErrKey, Message: "m"}); err != nil {
		t.Fatal(err)
	}
	want := `{"event":"netmap"}` + "\n" + `{"event":"fatal","data":{"code":"ERR_KEY","message":"m"}}` + "\n"
	if b.String() != want {
		t.Errorf("wrote %q, want %q", b.String(), want)
	}
}

var errBroken = errors.New("broken pipe")

// failWriter fails every write and counts the attempts.
type failWriter struct{ n atomic.Int32 }

func (w *failWriter) Write([]byte) (int, error) { w.n.Add(1); return 0, errBroken }

// serveFailing runs Serve on a channel whose writes fail, feeding it lines
// through a pipe that stays open: Serve must end because of the write, not
// because its input ran out.
func serveFailing(t *testing.T, ch *Channel, lines ...string) error {
	t.Helper()
	inR, inW := io.Pipe()
	t.Cleanup(func() { inW.Close() })
	done := make(chan error, 1)
	go func() { done <- ch.Serve(inR) }()
	go func() {
		for _, l := range lines {
			if _, err := io.WriteString(inW, l+"\n"); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Serve kept running after a failed write")
		return nil
	}
}

func TestServeEndsOnWriteError(t *testing.T) {
	tests := []struct {
		name  string
		emit  bool // an event fails before any request
		lines []string
	}{
		{"synchronous answer", false, []string{"not json"}},
		{"handler answer", false, []string{`{"id":1,"op":"ok"}`}},
		{"failed event", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &failWriter{}
			ch := NewChannel(w)
			ch.Handle("ok", func(json.RawMessage) (any, error) { return struct{}{}, nil })
			if tt.emit {
				if err := ch.Emit("up", nil); !errors.Is(err, errBroken) {
					t.Fatalf("Emit = %v, want %v", err, errBroken)
				}
			}
			err := serveFailing(t, ch, tt.lines...)
			var we *WriteError
			if !errors.As(err, &we) || !errors.Is(err, errBroken) {
				t.Fatalf("Serve = %v, want a *WriteError wrapping %v", err, errBroken)
			}
			// The channel stays broken and writes nothing more: a half
			// line followed by a whole one would corrupt the stream.
			if err := ch.Emit("peers", nil); !errors.Is(err, errBroken) {
				t.Errorf("Emit after failure = %v, want %v", err, errBroken)
			}
			if n := w.n.Load(); n != 1 {
				t.Errorf("%d write attempts, want 1", n)
			}
		})
	}
}
