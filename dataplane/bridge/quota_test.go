package bridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// quotaPair is a client filter and a server filter sharing one quota, on
// in-memory streams: clientIn is what the client sends, serverIn what
// nats-server sends.
type quotaPair struct {
	q      *connQuota
	client *clientFilter
	server *serverFilter
}

func newQuotaPair(t *testing.T, q Quota, clientIn, serverIn string) *quotaPair {
	t.Helper()
	cq := newConnQuota(q)
	cc := pipeLine(t, clientIn)
	sc := pipeLine(t, serverIn)
	return &quotaPair{
		q:      cq,
		client: &clientFilter{Conn: cc, r: bufio.NewReaderSize(cc, 4096), rewrite: testRewrite, q: cq},
		server: newServerFilter(sc, cq),
	}
}

// readAll reads r to its end in pieces of chunk bytes.
func readAll(r io.Reader, chunk int) (string, error) {
	var out []byte
	buf := make([]byte, chunk)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return string(out), err
		}
	}
}

func TestQuotaSubsOverQuotaBecomeThePingWhosePongIsTheError(t *testing.T) {
	for _, chunk := range []int{1, 7, 4096} {
		p := newQuotaPair(t, Quota{Subs: 2, Payload: -1},
			"SUB a 1\r\nPING\r\nsub b q 2\r\nSUB c 3\r\nSUB\td\t4\r\nPING\r\n",
			"PONG\r\nPONG\r\nPONG\r\nPONG\r\n")
		var logged []string
		p.q.log = func(kind string) { logged = append(logged, kind) }
		out, err := readAll(p.client, chunk)
		if err != nil {
			t.Fatal(err)
		}
		if want := "SUB a 1\r\nPING\r\nsub b q 2\r\nPING\r\nPING\r\nPING\r\n"; out != want {
			t.Fatalf("read %d: client stream\n got %q\nwant %q", chunk, out, want)
		}
		back, err := readAll(p.server, chunk)
		if err != nil {
			t.Fatal(err)
		}
		// The client's own PINGs get PONGs; each refused SUB nats-server's -ERR, in order.
		if want := "PONG\r\n" + errTooManySubs + errTooManySubs + "PONG\r\n"; back != want {
			t.Fatalf("read %d: server stream\n got %q\nwant %q", chunk, back, want)
		}
		if len(logged) != 1 || logged[0] != ErrQuotaSubs {
			t.Errorf("refusals logged %q, want one %q", logged, ErrQuotaSubs)
		}
	}
}

func TestQuotaFollowsNatsServersSubscriptions(t *testing.T) {
	tests := []struct {
		name, client, server string
		want                 int
	}{
		{"UNSUB ends a subscription", "SUB a 1\r\nSUB b 2\r\nUNSUB 1\r\n", "", 1},
		{"a repeated sid is one subscription", "SUB a 1\r\nSUB b 1\r\n", "", 1},
		{"an invalid subject holds none", "SUB a..b 1\r\nSUB >.a 2\r\nSUB .a 3\r\nSUB a. 4\r\nSUB a.> 5\r\n", "", 1},
		{"UNSUB with a max ends after that many messages", "SUB a 1\r\nUNSUB 1 2\r\n", "MSG a 1 3\r\nabc\r\nMSG a 1 r 0\r\n\r\n", 0},
		{"UNSUB with a max not reached yet", "SUB a 1\r\nUNSUB 1 3\r\n", "MSG a 1 3\r\nabc\r\nHMSG a 1 12 12\r\nNATS/1.0\r\n\r\n\r\n", 1},
		{"a SUB refused for permissions holds none",
			"SUB secret.x 1\r\nSUB ok 2\r\nSUB secret.x 3\r\nSUB jobs q1 4\r\n",
			"-ERR 'Permissions Violation for Subscription to \"secret.x\"'\r\n" +
				"-ERR 'Permissions Violation for Subscription to \"jobs\" using queue \"q1\"'\r\n", 2},
		{"a payload that looks like a PONG or a violation is a payload",
			"SUB a 1\r\nPING\r\nSUB b 2\r\n",
			"MSG a 1 6\r\nPONG\r\n\r\n" + fmt.Sprintf("MSG a 1 %d\r\n%s\r\n", len(violationB), violationB), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newQuotaPair(t, Quota{Subs: 10, Payload: -1}, tt.client, tt.server)
			if _, err := readAll(p.client, 4096); err != nil {
				t.Fatal(err)
			}
			if _, err := readAll(p.server, 4096); err != nil {
				t.Fatal(err)
			}
			if n := p.q.count(); n != tt.want {
				t.Errorf("subscriptions counted = %d, want %d", n, tt.want)
			}
		})
	}
}

const violationB = "-ERR 'Permissions Violation for Subscription to \"b\"'\r\n"

// nats-server counts deliveries from the SUB on: an UNSUB whose max was
// already delivered ends the subscription at once, a higher one later.
func TestQuotaUnsubMaxCountsFromTheSub(t *testing.T) {
	q := newConnQuota(Quota{Subs: -1, Payload: -1})
	q.subscribe([]byte("a"), nil, []byte("1"))
	q.subscribe([]byte("b"), nil, []byte("2"))
	for range 2 {
		q.delivered([]byte("1"))
		q.delivered([]byte("2"))
	}
	q.unsubscribe([]byte("1"), 2)
	q.unsubscribe([]byte("2"), 3)
	if n := q.count(); n != 1 {
		t.Fatalf("count = %d, want 1 (sid 1 ended at once)", n)
	}
	q.delivered([]byte("2"))
	if n := q.count(); n != 0 {
		t.Fatalf("count = %d, want 0 (sid 2 ended at its max)", n)
	}
}

func TestQuotaServerStreamPassesUntouched(t *testing.T) {
	in := "INFO {\"max_payload\":4096}\r\nMSG a 1 6\r\nPONG\r\n\r\nHMSG a 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n+OK\r\n-ERR 'x'\r\nPONG\r\n"
	for _, chunk := range []int{1, 5, 4096} {
		p := newQuotaPair(t, Quota{Subs: -1, Payload: -1}, "", in)
		out, err := readAll(p.server, chunk)
		if err != nil || out != in {
			t.Fatalf("read %d: got %q, %v", chunk, out, err)
		}
	}
}

// Every INFO tells the client the largest message its quota allows; a
// larger quota, or none, leaves nats-server's figure.
func TestQuotaInfoTellsTheClientItsPayload(t *testing.T) {
	const info = `INFO {"server_id":"S","max_payload":1048576,"connect_urls":["a:4222"],"headers":true}` + "\r\n"
	for _, tt := range []struct {
		quota int64
		want  int64
	}{{2048, 2048}, {-1, 1048576}, {8 << 20, 1048576}, {0, 0}} {
		p := newQuotaPair(t, Quota{Subs: -1, Payload: tt.quota}, "", "PING\r\n"+info)
		out, err := readAll(p.server, 4096)
		if err != nil {
			t.Fatal(err)
		}
		line, ok := strings.CutPrefix(out, "PING\r\nINFO ")
		if !ok || !strings.HasSuffix(line, "}\r\n") {
			t.Fatalf("quota %d: stream %q", tt.quota, out)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m["max_payload"] != float64(tt.want) || m["server_id"] != "S" || m["headers"] != true {
			t.Errorf("quota %d: INFO %v", tt.quota, m)
		}
	}
}

func TestQuotaPayloadOverQuotaEndsTheConnection(t *testing.T) {
	for _, in := range []string{
		"PUB a 4\r\nfine\r\nPUB a 10\r\n0123456789\r\nPUB a 1\r\nx\r\n",
		"PUB a 4\r\nfine\r\nHPUB a 12 20\r\nNATS/1.0\r\n\r\n01234567\r\n",
		"PUB a 4\r\nfine\r\npub a r 6\r\nCONNECT {\"name\":\"evil\"}\r\n",
	} {
		t.Run(strings.Fields(in)[4], func(t *testing.T) {
			p := newQuotaPair(t, Quota{Subs: -1, Payload: 5}, in, "PONG\r\nMSG a 1 3\r\nabc\r\n")
			// nats-server answers the PING only once it is sent: read the client's leg up to it first.
			const upstream = "PUB a 4\r\nfine\r\nPING\r\n"
			var out []byte
			buf := make([]byte, 4096)
			for len(out) < len(upstream) {
				n, err := p.client.Read(buf)
				out = append(out, buf[:n]...)
				if err != nil {
					t.Fatalf("client leg ended early: %q, %v", out, err)
				}
			}
			if string(out) != upstream {
				t.Errorf("client stream = %q: nothing after the refused line may pass", out)
			}
			back, err := readAll(p.server, 4096)
			if err != nil {
				t.Fatal(err)
			}
			if back != errPayloadTooLong {
				t.Errorf("server stream = %q, want the payload violation and its end", back)
			}
			if n, err := p.client.Read(buf); n != 0 || !errors.Is(err, errOverPayload) {
				t.Errorf("client leg then gave %q, %v", buf[:n], err)
			}
		})
	}
}

// A payload violation whose PING nats-server never answers still ends.
func TestErrQuotaPayloadOverQuotaWithoutAnAnswer(t *testing.T) {
	p := newQuotaPair(t, Quota{Subs: -1, Payload: 1}, "PUB a 2\r\nhi\r\n", "")
	done := make(chan error, 1)
	go func() { _, err := readAll(p.client, 4096); done <- err }()
	_, _ = readAll(p.server, 4096) // the server's stream ends without a PONG
	select {
	case err := <-done:
		if !errors.Is(err, errOverPayload) {
			t.Fatal(err)
		}
	case <-time.After(quotaWait + 2*time.Second):
		t.Fatal("client leg still open")
	}
}

func TestQuotasReachEveryConnectionOfTheAddress(t *testing.T) {
	var qs Quotas
	def := Quota{Subs: 1, Payload: 10}
	a1 := qs.open("100.64.0.7", def, nil)
	a2 := qs.open("100.64.0.7", def, nil)
	b := qs.open("100.64.0.8", def, nil)
	qs.Set("100.64.0.7", Quota{Subs: 50, Payload: -1})
	for i, c := range []*connQuota{a1, a2} {
		if c.subs.Load() != 50 || c.overPayload(1<<30) {
			t.Errorf("connection %d of the address keeps %d subs", i, c.subs.Load())
		}
	}
	if b.subs.Load() != 1 || !b.overPayload(11) {
		t.Error("another address's connection changed")
	}
	a1.release()
	a1.release()
	a2.release()
	qs.Set("100.64.0.7", Quota{Subs: 2})
	if len(qs.ips) != 1 {
		t.Errorf("released connections are still held: %v", qs.ips)
	}
	// A new connection starts from the default, whatever was decided before.
	if c := qs.open("100.64.0.7", def, nil); c.subs.Load() != 1 {
		t.Error("a new connection did not start from the default")
	}
}

func TestQuotaArgsAndListenValidate(t *testing.T) {
	for _, a := range []QuotaArgs{{IP: "100.64.0.7:1", Subs: 1}, {IP: "", Subs: 1}, {IP: "100.64.0.7", Subs: -2}, {IP: "100.64.0.7", Payload: -5}} {
		if err := a.Validate(); err == nil {
			t.Errorf("%+v validated", a)
		}
	}
	if err := (QuotaArgs{IP: "fd7a:115c:a1e0::7", Subs: -1, Payload: 0}).Validate(); err != nil {
		t.Error(err)
	}
	base := ListenArgs{Name: "c", Port: 4222, Target: "127.0.0.1:14222", ClientQuota: &Quota{Subs: 1, Payload: 1}}
	if err := base.Validate(); err == nil {
		t.Error("clientQuota without signClients validated")
	}
	base.SignClients = true
	if err := base.Validate(); err != nil {
		t.Error(err)
	}
	base.ClientQuota = &Quota{Subs: -3}
	if err := base.Validate(); err == nil {
		t.Error("a quota below -1 validated")
	}
}

// The client face end to end: the quota is registered before the CONNECT
// reaches nats-server, so a `quota` sent while the callout decides finds
// the connection, and the refusal is logged once.
func TestQuotaClientsWrapsTheHandshake(t *testing.T) {
	s, err := NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	var mu sync.Mutex
	n := &Node{Log: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, nil))}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(logged.String(), "code=ERR_QUOTA_SUBS") {
			t.Errorf("the refusal was not logged: %s", logged.String())
		}
	}()
	f := &Forwarder{Name: "client", Post: func(c, up net.Conn) (net.Conn, net.Conn, error) { return s.signClient(c, up, &clientFace{}) }}
	n.quotaClients(f, Quota{Subs: 1, Payload: -1})

	cli, cliFar := net.Pipe()
	up, upFar := net.Pipe()
	t.Cleanup(func() { cli.Close(); cliFar.Close(); up.Close(); upFar.Close() })
	for _, c := range []net.Conn{cli, cliFar, up, upFar} {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	type res struct {
		c, u net.Conn
		err  error
	}
	done := make(chan res, 1)
	go func() { c, u, err := f.Post(cli, up); done <- res{c, u, err} }()
	go func() { _, _ = upFar.Write([]byte(`INFO {"nonce":"n"}` + "\r\n")) }()
	cr := bufio.NewReader(cliFar)
	if _, err := readLine(cr); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = cliFar.Write([]byte("CONNECT {}\r\nSUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB d 4\r\nSUB e 5\r\nSUB f 6\r\n"))
	}()
	ur := bufio.NewReader(upFar)
	if _, err := readLine(ur); err != nil { // the CONNECT: nats-server would now ask the callout
		t.Fatal(err)
	}
	// pipe addresses are not IPs: the registry holds the connection under the address's text
	var ip string
	for k := range n.Quotas.ips {
		ip = k
	}
	if ip == "" {
		t.Fatal("the connection was not registered before its CONNECT went upstream")
	}
	n.Quotas.Set(ip, Quota{Subs: 5, Payload: -1})
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	buf := make([]byte, 256)
	k, _ := r.c.Read(buf)
	if got := string(buf[:k]); got != "SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB d 4\r\nSUB e 5\r\nPING\r\n" {
		t.Errorf("after the raise to 5, five SUBs pass and the sixth is refused: got %q", got)
	}
	_ = r.c.Close()
	if len(n.Quotas.ips) != 0 {
		t.Error("closing the connection did not release its quota")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestValidSubject(t *testing.T) {
	for s, ok := range map[string]bool{"a": true, "a.b": true, "a.*": true, "a.>": true, ">": true, "*.b": true, "a>.b": true,
		"": false, ".": false, "a.": false, ".a": false, "a..b": false, ">.a": false, "a.>.b": false} {
		if validSubject([]byte(s)) != ok {
			t.Errorf("validSubject(%q) = %v", s, !ok)
		}
	}
}

// BenchmarkServerFilter measures the server's leg with a quota on a stream
// of 1 KiB messages to one subscription, read as Pump's io.Copy does.
func BenchmarkServerFilter(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1024)
	frame := fmt.Appendf(nil, "MSG orders.created.eu 17 _INBOX.abcdefgh.1 %d\r\n", len(payload))
	frame = append(append(frame, payload...), "\r\n"...)
	stream := bytes.Repeat(frame, 4096)
	buf := make([]byte, 32*1024)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		q := newConnQuota(Quota{Subs: 100, Payload: -1})
		q.subscribe([]byte("orders.>"), nil, []byte("17"))
		f := &serverFilter{q: q}
		f.fr = framedReader{r: bufio.NewReaderSize(bytes.NewReader(stream), serverReadBuffer), frame: f.frame}
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{f}, buf)
		if err != nil || n != int64(len(stream)) {
			b.Fatalf("copied %d, err %v", n, err)
		}
	}
}
