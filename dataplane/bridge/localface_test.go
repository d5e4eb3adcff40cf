package bridge

import (
	"encoding/json"
	"strings"
	"testing"
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
