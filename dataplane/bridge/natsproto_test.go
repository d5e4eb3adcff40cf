package bridge

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

func TestReadLine(t *testing.T) {
	line := func(n int) string { return strings.Repeat("x", n-2) + "\r\n" } // n bytes with CRLF
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr error
	}{
		{"short", "PING\r\nPONG\r\n", "PING\r\n", nil},
		{"exactly the limit", line(maxProtoLine), line(maxProtoLine), nil},
		{"just under", line(maxProtoLine - 1), line(maxProtoLine - 1), nil},
		{"one over", line(maxProtoLine + 1), "", errLineTooLong},
		{"endless", strings.Repeat("x", 3*maxProtoLine), "", errLineTooLong},
		{"no newline before EOF", "CONNECT {}", "", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The production buffer size, so long lines take the
			// ErrBufferFull path.
			got, err := readLine(bufio.NewReaderSize(strings.NewReader(tt.in), 4096))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if string(got) != tt.want {
				t.Errorf("got %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
}

func TestRewriteConnectRefuses(t *testing.T) {
	for _, in := range []string{
		"PING\r\n",
		"INFO {}\r\n",
		"CONNEC {}\r\n",
		"CONNECTX{}\r\n",
		"CONNECT []\r\n",
		"CONNECT null\r\n",
		"CONNECT \"x\"\r\n",
		"CONNECT {\"a\":\r\n",
		"CONNECT {} {}\r\n",
		"\r\n",
	} {
		t.Run(in, func(t *testing.T) {
			out, err := rewriteConnect([]byte(in), func(map[string]json.RawMessage) error { return nil })
			if err == nil {
				t.Errorf("rewriteConnect(%q) = %q, want an error", in, out)
			}
		})
	}
}

func TestRewriteConnectPassesUnknownFields(t *testing.T) {
	const fields = `"verbose":false,"lang":"go","x_future":{"a":[1,2,{"b":null}]},"name":"app"`
	in := "CONNECT {" + fields + "}\r\n"
	out, err := rewriteConnect([]byte(in), func(m map[string]json.RawMessage) error {
		m["added"] = json.RawMessage(`true`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(out, []byte("\r\n")) || bytes.Count(out, []byte("\n")) != 1 {
		t.Fatalf("output is not one CRLF line: %q", out)
	}
	got := connectFields(t, out)
	want := connectFields(t, []byte("CONNECT {"+fields+`,"added":true}`))
	if !jsonEqual(t, got, want) {
		t.Errorf("got %s, want %s", got, want)
	}

	editErr := errors.New("no")
	if _, err := rewriteConnect([]byte(in), func(map[string]json.RawMessage) error { return editErr }); !errors.Is(err, editErr) {
		t.Errorf("edit error = %v, want %v", err, editErr)
	}
}

// connectFields returns the JSON object of a CONNECT line.
func connectFields(t *testing.T, line []byte) map[string]any {
	t.Helper()
	body, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("CONNECT "))
	if !ok {
		t.Fatalf("not a CONNECT line: %q", line)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("CONNECT body %q: %v", body, err)
	}
	return m
}

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

// foldKeys returns the keys of m that nats-server would read as key.
func foldKeys(m map[string]any, key string) []string {
	var ks []string
	for k := range m {
		if strings.EqualFold(k, key) {
			ks = append(ks, k)
		}
	}
	return ks
}

type signResult struct {
	client, up net.Conn
	err        error
}

// signHandshake runs signClient between a fake client and a fake
// nats-server on net.Pipe and returns the CONNECT line the server got.
// The client pipelines extra bytes after its CONNECT; they must reach the
// returned client leg.
func signHandshake(t *testing.T, s *Signer, info, connect string, label func(string) string) (line []byte, res signResult, extra []byte) {
	t.Helper()
	return signHandshakeFace(t, s, info, connect, &clientFace{label: label})
}

func signHandshakeFace(t *testing.T, s *Signer, info, connect string, face *clientFace) (line []byte, res signResult, extra []byte) {
	t.Helper()
	cli, cliFar := net.Pipe()
	up, upFar := net.Pipe()
	t.Cleanup(func() { cli.Close(); cliFar.Close(); up.Close(); upFar.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range []net.Conn{cli, cliFar, up, upFar} {
		_ = c.SetDeadline(deadline)
	}
	done := make(chan signResult, 1)
	go func() {
		c, u, err := s.signClient(cli, up, face)
		done <- signResult{c, u, err}
	}()
	go func() { _, _ = upFar.Write([]byte(info)) }()

	infoc := make(chan []byte, 1)
	go func() {
		l, _ := readLine(bufio.NewReader(cliFar))
		infoc <- l
	}()
	var gotInfo []byte
	select {
	case gotInfo = <-infoc:
	case res = <-done: // refused before relaying INFO
		return nil, res, nil
	}
	if string(gotInfo) != info {
		t.Fatalf("client got INFO %q, want %q", gotInfo, info)
	}
	go func() { _, _ = cliFar.Write([]byte(connect + "PING\r\n")) }()
	line, err := readLine(bufio.NewReader(upFar))
	res = <-done
	if err != nil || res.err != nil {
		return nil, res, nil
	}
	extra = make([]byte, len("PING\r\n"))
	if _, err := io.ReadFull(res.client, extra); err != nil {
		t.Fatalf("reading pipelined bytes: %v", err)
	}
	return line, res, extra
}

func TestSignClientReplacesProxySig(t *testing.T) {
	s, err := NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	const nonce = "pZbwvbIUKgsfjXk"
	info := `INFO {"server_id":"S","nonce":"` + nonce + `","max_payload":1048576}` + "\r\n"
	// A client's own proxy_sig is never trusted, nor are spellings
	// nats-server's case-insensitive decoder would read as proxy_sig.
	connect := `CONNECT {"verbose":false,"proxy_sig":"forged","Proxy_Sig":"forged2","proxy_\u017fig":"forged3","x_unknown":7}` + "\r\n"
	line, res, extra := signHandshake(t, s, info, connect, nil)
	if res.err != nil {
		t.Fatal(res.err)
	}
	if string(extra) != "PING\r\n" {
		t.Errorf("pipelined bytes = %q, want PING", extra)
	}
	m := connectFields(t, line)
	if ks := foldKeys(m, "proxy_sig"); len(ks) != 1 || ks[0] != "proxy_sig" {
		t.Fatalf("proxy_sig keys = %q, want exactly [proxy_sig]", ks)
	}
	if m["x_unknown"] != float64(7) || m["verbose"] != false {
		t.Errorf("other fields changed: %v", m)
	}
	sig, err := base64.RawURLEncoding.DecodeString(m["proxy_sig"].(string))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := nkeys.FromPublicKey(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Verify([]byte(nonce), sig); err != nil {
		t.Errorf("proxy_sig does not verify over the INFO nonce: %v", err)
	}
	if err := pub.Verify([]byte("another nonce"), sig); err == nil {
		t.Error("proxy_sig verifies over a different nonce")
	}
}

func TestSignClientNeedsNonce(t *testing.T) {
	s, err := NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range []string{
		`INFO {"server_id":"S"}` + "\r\n",
		`INFO {"nonce":""}` + "\r\n",
		`-ERR 'nope'` + "\r\n",
	} {
		if _, res, _ := signHandshake(t, s, info, "CONNECT {}\r\n", nil); res.err == nil {
			t.Errorf("INFO %q: signClient did not refuse", info)
		}
	}
}

func TestSignClientNamesClients(t *testing.T) {
	s, err := NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	info := `INFO {"nonce":"abc"}` + "\r\n"
	alice := func(string) string { return "alice@example.com (laptop)" }
	unknown := func(string) string { return "" }
	tests := []struct {
		name    string
		connect string
		label   func(string) string
		want    any // the name nats-server gets; nil for none
	}{
		{"client name kept after label", `{"name":"worker"}`, alice, "alice@example.com (laptop) worker"},
		{"no client name", `{}`, alice, "alice@example.com (laptop)"},
		{"empty client name", `{"name":""}`, alice, "alice@example.com (laptop)"},
		{"non-string name replaced", `{"name":{"x":1}}`, alice, "alice@example.com (laptop)"},
		{"case variant cannot outvote the label", `{"NAME":"admin (prod)","name":"w"}`, alice, "alice@example.com (laptop) w"},
		{"unknown caller", `{"name":"worker"}`, unknown, "worker"},
		{"naming off", `{"name":"worker"}`, nil, "worker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, res, _ := signHandshake(t, s, info, "CONNECT "+tt.connect+"\r\n", tt.label)
			if res.err != nil {
				t.Fatal(res.err)
			}
			m := connectFields(t, line)
			if tt.label != nil && tt.label("") != "" {
				if ks := foldKeys(m, "name"); len(ks) != 1 {
					t.Errorf("name keys = %q, want one", ks)
				}
			}
			if got := m["name"]; got != tt.want {
				t.Errorf("name = %#v, want %#v", got, tt.want)
			}
		})
	}
}

// pipeLine writes data into the far end of a net.Pipe and returns the near end.
func pipeLine(t *testing.T, data string) net.Conn {
	t.Helper()
	near, far := net.Pipe()
	t.Cleanup(func() { near.Close(); far.Close() })
	_ = near.SetDeadline(time.Now().Add(5 * time.Second))
	go func() {
		_, _ = far.Write([]byte(data))
		_ = far.Close()
	}()
	return near
}

func TestDenials(t *testing.T) {
	const ip = "100.64.0.9"
	tests := []struct {
		name     string
		deniedIP string // "" for no denial
		reason   string
		server   string
		want     string
	}{
		{"violation gets the reason", ip, "not in group ops", authViolation + "rest", "-ERR 'Authorization Violation: not in group ops'\r\nrest"},
		{"no reason left", "", "", authViolation, authViolation},
		{"reason for someone else", "100.64.0.10", "no", authViolation, authViolation},
		{"other lines untouched", ip, "no", "+OK\r\n" + authViolation, "+OK\r\n" + authViolation},
		{"other errors untouched", ip, "no", "-ERR 'Maximum Connections Exceeded'\r\n", "-ERR 'Maximum Connections Exceeded'\r\n"},
		{"violation with different spacing untouched", ip, "no", "-ERR  'Authorization Violation'\r\n", "-ERR  'Authorization Violation'\r\n"},
		{"reason made protocol-safe", ip, "it's\r\n-ERR 'x'\nPING", authViolation, "-ERR 'Authorization Violation: it s  -ERR  x  PING'\r\n"},
		{"closed at once", ip, "no", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Denials
			if tt.deniedIP != "" {
				d.Add(tt.deniedIP, tt.reason)
			}
			c := pipeLine(t, tt.server)
			ec := &explainConn{Conn: c, r: bufio.NewReaderSize(c, 4096), ip: ip, denials: &d}
			got, err := io.ReadAll(ec)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("client read %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDenialIsTakenOnce(t *testing.T) {
	var d Denials
	d.Add("100.64.0.9", "no")
	if got := d.take("100.64.0.9"); got != "no" {
		t.Fatalf("take = %q, want no", got)
	}
	if got := d.take("100.64.0.9"); got != "" {
		t.Errorf("second take = %q, want nothing", got)
	}
}

func TestIdentityLabel(t *testing.T) {
	for _, c := range []struct {
		tags          []string
		login, device string
		want          string
	}{
		{nil, "alice@example.com", "laptop", "alice@example.com (laptop)"},
		{[]string{"tag:svc"}, "tagged-devices", "svc-1", "tag:svc (svc-1)"},
		{[]string{"tag:a", "tag:b"}, "", "box", "tag:a,tag:b (box)"},
		{nil, "", "orphan", "(orphan)"},
	} {
		if got := IdentityLabel(c.tags, c.login, c.device); got != c.want {
			t.Errorf("IdentityLabel(%v, %q, %q) = %q, want %q", c.tags, c.login, c.device, got, c.want)
		}
	}
}
