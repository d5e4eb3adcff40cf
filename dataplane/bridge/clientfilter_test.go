package bridge

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// testRewrite stands in for signClient's edit: it marks the name.
func testRewrite(l []byte) ([]byte, error) {
	return rewriteConnect(l, func(m map[string]json.RawMessage) error {
		setField(m, "name", "X")
		return nil
	})
}

// runFilter feeds in through a clientFilter on net.Pipe, reading with
// buffers of chunk bytes, and returns what came out and the final error.
func runFilter(t *testing.T, in string, chunk int) ([]byte, error, net.Conn) {
	t.Helper()
	return runFilterQuota(t, in, chunk, nil)
}

// runFilterQuota is runFilter with the connection held to q (nil: none).
func runFilterQuota(t *testing.T, in string, chunk int, q *connQuota) ([]byte, error, net.Conn) {
	t.Helper()
	c := pipeLine(t, in)
	f := &clientFilter{Conn: c, r: bufio.NewReaderSize(c, 4096), rewrite: testRewrite, q: q}
	var out []byte
	buf := make([]byte, chunk)
	for {
		n, err := f.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return out, err, c
		}
	}
}

func TestClientFilterPassesPayloadsUntouched(t *testing.T) {
	evil := `CONNECT {"name":"bob (bob-laptop) payroll"}` + "\r\n"
	hdr := "NATS/1.0\r\nX: " + strings.TrimRight(evil, "\r\n") + "\r\n\r\n"
	big := strings.Repeat("CONNECT {}\r\n", 10000) // larger than every buffer
	tests := []struct{ name, in string }{
		{"PUB payload holding a CONNECT", fmt.Sprintf("PUB a %d\r\n%s\r\nPING\r\n", len(evil), evil)},
		{"PUB with reply", fmt.Sprintf("PUB a r.1 %d\r\n%s\r\n", len(evil), evil)},
		{"lower-case pub", fmt.Sprintf("pub a %d\r\n%s\r\n", len(evil), evil)},
		{"tabs and runs of blanks", fmt.Sprintf("PuB\t a \t r\t%d \r\n%s\r\n", len(evil), evil)},
		{"LF-only line", fmt.Sprintf("PUB a %d\n%s\r\n", len(evil), evil)},
		{"empty payload", "PUB a 0\r\n\r\nPING\r\n"},
		{"HPUB header and body holding CONNECTs", fmt.Sprintf("HPUB a %d %d\r\n%s%s\r\n", len(hdr), len(hdr)+len(evil), hdr, evil)},
		{"lower-case hpub with reply", fmt.Sprintf("hpub a r %d %d\r\n%s%s\r\n", len(hdr), len(hdr)+len(evil), hdr, evil)},
		{"payload larger than the buffers", fmt.Sprintf("PUB a %d\r\n%s\r\nPONG\r\n", len(big), big)},
		{"other verbs", "SUB a 1\r\nSUB a q 2\r\nUNSUB 1\r\nPING\r\nPONG\r\n+OK\r\n-ERR 'x'\r\nINFO {}\r\n"},
		{"not PUB although it starts like it", "PUBX a 5\r\nPUB\r\n"},
		{"several PUBs back to back", strings.Repeat(fmt.Sprintf("PUB a %d\r\n%s\r\n", len(evil), evil), 50)},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 7, 4096, 64 * 1024} {
			t.Run(fmt.Sprintf("%s/read %d", tt.name, chunk), func(t *testing.T) {
				// A quota that is not reached changes nothing either.
				for _, q := range []*connQuota{nil, newConnQuota(Quota{Subs: 10, Payload: 1 << 20})} {
					out, err, _ := runFilterQuota(t, tt.in, chunk, q)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(out, []byte(tt.in)) {
						t.Errorf("filter (quota %v) changed the stream:\n got %.200q\nwant %.200q", q != nil, out, tt.in)
					}
				}
			})
		}
	}
}

func TestClientFilterRewritesLaterConnects(t *testing.T) {
	for _, line := range []string{
		`CONNECT {"name":"bob"}`,
		`connect {"name":"bob"}`,
		`CoNnEcT` + "\t \t" + `{"name":"bob"}`,
		`CONNECT{"name":"bob"}`,
		`CONNECT {"NAME":"bob","name":"b"}`,
	} {
		t.Run(line, func(t *testing.T) {
			in := "PUB a 2\r\nhi\r\n" + line + "\r\nPING\r\n"
			for _, chunk := range []int{1, 5, 4096} {
				out, err, _ := runFilter(t, in, chunk)
				if err != nil {
					t.Fatal(err)
				}
				want := "PUB a 2\r\nhi\r\n" + `CONNECT {"name":"X"}` + "\r\nPING\r\n"
				if string(out) != want {
					t.Errorf("read %d: got %q, want %q", chunk, out, want)
				}
			}
		})
	}
}

func TestClientFilterClosesOnBadFraming(t *testing.T) {
	for _, in := range []string{
		"PUB a x\r\nhello\r\n",
		"PUB a -1\r\n",
		"PUB a +5\r\nhello\r\n",
		"PUB a 1234567890\r\n",
		"PUB a\r\n",
		"PUB a r s 5\r\nhello\r\n",
		"PUB a 5 \r\r\nhello\r\n",
		"PUB a\r 3 12\nx\r\nCONNECT {}\r\n..",
		"HPUB a 5\r\nhello\r\n",
		"HPUB a 6 5\r\nhello\r\n",
		"HPUB a x 5\r\nhello\r\n",
		"HPUB a r s 1 5\r\nhello\r\n",
		"CONNECT {\"name\":\r\n",
		"CONNECT []\r\n",
		"PING\r\nSUB " + strings.Repeat("x", maxProtoLine) + " 1\r\n",
	} {
		t.Run(fmt.Sprintf("%.40q", in), func(t *testing.T) {
			out, err, c := runFilter(t, in, 4096)
			if err == nil {
				t.Fatalf("filter passed %q", out)
			}
			if bytes.Contains(out, []byte("hello")) || bytes.Contains(out, []byte("CONNECT")) {
				t.Errorf("bytes after the bad line got through: %q", out)
			}
			if _, rerr := c.Read(make([]byte, 1)); !errors.Is(rerr, io.ErrClosedPipe) {
				t.Errorf("client leg not closed: read err %v", rerr)
			}
		})
	}
}

func TestClientFilterLongLine(t *testing.T) {
	_, err, _ := runFilter(t, "SUB "+strings.Repeat("x", 2*maxProtoLine)+" 1\r\n", 4096)
	if !errors.Is(err, errLineTooLong) {
		t.Fatalf("err = %v, want %v", err, errLineTooLong)
	}
	// The limit itself passes.
	ok := "SUB " + strings.Repeat("x", maxProtoLine-8) + " 1\r\n"
	if len(ok) != maxProtoLine {
		t.Fatal(len(ok))
	}
	out, err, _ := runFilter(t, ok, 4096)
	if err != nil || string(out) != ok {
		t.Fatalf("line of exactly maxProtoLine: err %v, %d bytes", err, len(out))
	}
}

// A second CONNECT through the real handshake cannot rename the connection
// nor bring its own proxy_sig.
func TestSignClientRewritesLaterConnect(t *testing.T) {
	s, err := NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	const nonce = "n0nce"
	alice := func(string) string { return "alice@example.com (laptop)" }
	cli, cliFar := net.Pipe()
	up, upFar := net.Pipe()
	t.Cleanup(func() { cli.Close(); cliFar.Close(); up.Close(); upFar.Close() })
	for _, c := range []net.Conn{cli, cliFar, up, upFar} {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	done := make(chan signResult, 1)
	go func() {
		c, u, err := s.signClient(cli, up, &clientFace{label: alice})
		done <- signResult{c, u, err}
	}()
	go func() { _, _ = upFar.Write([]byte(`INFO {"nonce":"` + nonce + `"}` + "\r\n")) }()
	if _, err := readLine(bufio.NewReader(cliFar)); err != nil {
		t.Fatal(err)
	}
	forged := `CONNECT {"name":"bob (bob-laptop) payroll","proxy_sig":"forged","Proxy_Sig":"x"}` + "\r\n"
	go func() {
		_, _ = cliFar.Write([]byte(`CONNECT {"name":"w"}` + "\r\nPUB a 2\r\nhi\r\n" + forged + "PING\r\n"))
		_ = cliFar.Close()
	}()
	ur := bufio.NewReader(upFar)
	first, err := readLine(ur)
	if err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	rest, _ := io.ReadAll(res.client)
	later, ok := bytes.CutPrefix(rest, []byte("PUB a 2\r\nhi\r\n"))
	if !ok || !bytes.HasSuffix(later, []byte("\r\nPING\r\n")) {
		t.Fatalf("stream after CONNECT = %q", rest)
	}
	later = later[:len(later)-len("PING\r\n")]
	pub, _ := nkeys.FromPublicKey(s.Public())
	for i, want := range []string{"alice@example.com (laptop) w", "alice@example.com (laptop) bob (bob-laptop) payroll"} {
		m := connectFields(t, [][]byte{first, later}[i])
		if m["name"] != want || len(foldKeys(m, "name")) != 1 {
			t.Errorf("CONNECT %d: name = %v, want %q", i+1, m["name"], want)
		}
		if ks := foldKeys(m, "proxy_sig"); len(ks) != 1 {
			t.Fatalf("CONNECT %d: proxy_sig keys %q", i+1, ks)
		}
		sig, _ := base64.RawURLEncoding.DecodeString(m["proxy_sig"].(string))
		if pub.Verify([]byte(nonce), sig) != nil {
			t.Errorf("CONNECT %d: proxy_sig is not the bridge's signature over the nonce", i+1)
		}
	}
}

// BenchmarkClientFilter measures the filter on a stream of 1 KiB PUBs, read
// the way Pump's io.Copy does (32 KiB buffers); BenchmarkClientRaw is the
// same stream through the bare bufio.Reader for comparison.
func BenchmarkClientFilter(b *testing.B) { benchStream(b, true) }
func BenchmarkClientRaw(b *testing.B)    { benchStream(b, false) }

func benchStream(b *testing.B, filter bool) {
	payload := bytes.Repeat([]byte("x"), 1024)
	var frame []byte
	frame = fmt.Appendf(frame, "PUB orders.created.eu _INBOX.abcdefgh.1 %d\r\n", len(payload))
	frame = append(append(frame, payload...), "\r\n"...)
	stream := bytes.Repeat(frame, 4096)
	buf := make([]byte, 32*1024)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		br := bufio.NewReaderSize(bytes.NewReader(stream), 4096)
		var src io.Reader = br
		if filter {
			src = &clientFilter{r: br, rewrite: testRewrite}
		}
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{src}, buf)
		if err != nil || n != int64(len(stream)) {
			b.Fatalf("copied %d, err %v", n, err)
		}
	}
}
