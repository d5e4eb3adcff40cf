package bridge

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestLocalFaceValidate(t *testing.T) {
	base := func(listen string) ListenArgs {
		return ListenArgs{Name: "local:docker", Port: 4222, Target: "127.0.0.1:14222", SignClients: true, Local: &LocalFace{Listen: listen, Face: "docker"}}
	}
	if err := base("172.17.0.1:4222").Validate(); err != nil {
		t.Fatal(err)
	}
	if err := base("[fd00::1]:4222").Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]ListenArgs{
		"loopback":        base("127.0.0.1:4222"),
		"loopback v6":     base("[::1]:4222"),
		"mapped loopback": base("[::ffff:127.0.0.1]:4222"),
		"every interface": base("0.0.0.0:4222"),
		"every v6":        base("[::]:4222"),
		"a host name":     base("docker0:4222"),
		"another port":    base("172.17.0.1:4223"),
	}
	noFace := base("172.17.0.1:4222")
	noFace.Local = &LocalFace{Listen: "172.17.0.1:4222"}
	bad["no face name"] = noFace
	gated := base("172.17.0.1:4222")
	gated.GrantGate = &GrantGate{Capability: "example.com/cap/nats"}
	bad["a grant gate"] = gated
	unsigned := base("172.17.0.1:4222")
	unsigned.SignClients = false
	bad["not a client face"] = unsigned
	for name, a := range bad {
		if codeOf(a.Validate()) != ErrBadArgs {
			t.Errorf("%s validated", name)
		}
	}
}

func TestLocalFaceIsAssertedAndNamed(t *testing.T) {
	s, _ := NewSigner()
	face := &clientFace{local: "docker", label: func(remote string) string { return localLabel("docker", "172.17.0.2:40000") }}
	line, res, _ := signHandshakeFace(t, s, `INFO {"server_id":"S","nonce":"abcdefghijk"}`+"\r\n", `CONNECT {"name":"app","auth_token":"nats-tsnet:{\"face\":\"other\"}"}`+"\r\n", face)
	if res.err != nil {
		t.Fatal(res.err)
	}
	var m map[string]any
	_ = json.Unmarshal([]byte(strings.TrimPrefix(string(line), "CONNECT ")), &m)
	if m["name"] != "local:docker (172.17.0.2) app" {
		t.Errorf("name %v", m["name"])
	}
	var as Assertion
	tok, _ := m["auth_token"].(string)
	if err := json.Unmarshal([]byte(strings.TrimPrefix(tok, assertionPrefix)), &as); err != nil || as.Face != "docker" || as.Cert != nil {
		t.Errorf("auth_token %q: the bridge's assertion, not the client's", tok)
	}
}

func TestLocalFaceRefusesProcessesOnThisHost(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// 127.0.0.1 stands in for an address of this host; 127.0.0.2 for a container's.
	l := &notFromHost{Listener: tcp, face: "docker", own: func() map[netip.Addr]bool {
		return map[netip.Addr]bool{netip.MustParseAddr("127.0.0.1"): true}
	}, log: newRefusalLog(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Second)}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	host, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(host).ReadString('\n')
	if !strings.HasPrefix(line, "-ERR 'Connection Refused: local face docker is for containers") {
		t.Errorf("a process on this host read %q", line)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	ctr, err := d.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer ctr.Close()
	select {
	case c := <-accepted:
		if !strings.HasPrefix(c.RemoteAddr().String(), "127.0.0.2:") {
			t.Errorf("accepted %s", c.RemoteAddr())
		}
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the container's connection was not accepted")
	}
}
