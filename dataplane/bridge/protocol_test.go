package bridge

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func codeOf(err error) string {
	var ce *CodedError
	if errors.As(err, &ce) {
		return ce.Code
	}
	if err != nil {
		return "(uncoded)"
	}
	return ""
}

func TestListenArgsValidate(t *testing.T) {
	rs := &RouteSecret{User: "route", Pass: "s3cret"}
	base := ListenArgs{Name: "client", Port: 4222, Target: "127.0.0.1:14222"}
	with := func(f func(*ListenArgs)) ListenArgs { a := base; f(&a); return a }
	tests := []struct {
		name string
		args ListenArgs
		code string
	}{
		{"plain", base, ""},
		{"client face", with(func(a *ListenArgs) { a.ProxyProtocol, a.SignClients, a.NameClients = true, true, true }), ""},
		{"cluster face", with(func(a *ListenArgs) { a.AllowTags, a.RouteSecret = []string{"tag:nats"}, rs }), ""},
		{"sign and route secret", with(func(a *ListenArgs) { a.SignClients, a.AllowTags, a.RouteSecret = true, []string{"tag:nats"}, rs }), ErrBadArgs},
		{"name without sign", with(func(a *ListenArgs) { a.NameClients = true }), ErrBadArgs},
		{"route secret without tag check", with(func(a *ListenArgs) { a.RouteSecret = rs }), ErrBadArgs},
		{"empty route secret", with(func(a *ListenArgs) { a.AllowTags, a.RouteSecret = []string{"tag:nats"}, &RouteSecret{} }), ErrBadArgs},
		{"route secret without pass", with(func(a *ListenArgs) { a.AllowTags, a.RouteSecret = []string{"tag:nats"}, &RouteSecret{User: "route"} }), ErrBadArgs},
		{"no name", with(func(a *ListenArgs) { a.Name = "" }), ErrBadArgs},
		{"port 0", with(func(a *ListenArgs) { a.Port = 0 }), ErrBadArgs},
		{"port too big", with(func(a *ListenArgs) { a.Port = 65536 }), ErrBadArgs},
		{"no target", with(func(a *ListenArgs) { a.Target = "" }), ErrBadArgs},
		{"target off loopback", with(func(a *ListenArgs) { a.Target = "10.0.0.1:4222" }), ErrNotLoopback},
		{"target by name", with(func(a *ListenArgs) { a.Target = "localhost:4222" }), ErrNotLoopback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := codeOf(tt.args.Validate()); got != tt.code {
				t.Errorf("Validate() code = %q, want %q", got, tt.code)
			}
		})
	}
}

// The listen handler itself refuses a listener that is both faces, before
// it touches tsnet (the zero Node has none: reaching it would panic).
func TestListenRefusesSignClientsWithRouteSecret(t *testing.T) {
	var n Node
	_, err := n.Listen(ListenArgs{
		Name: "both", Port: 4222, Target: "127.0.0.1:14222",
		SignClients: true, AllowTags: []string{"tag:nats"}, RouteSecret: &RouteSecret{User: "route", Pass: "s3cret"},
	})
	if got := codeOf(err); got != ErrBadArgs || !strings.Contains(err.Error(), "exclude each other") {
		t.Fatalf("Listen() = %v (code %q), want %s for the two faces", err, got, ErrBadArgs)
	}
}

func TestForwardArgsValidate(t *testing.T) {
	tests := []struct {
		name string
		args ForwardArgs
		code string
	}{
		{"minimal", ForwardArgs{Name: "r", Targets: []string{"100.64.0.2:16222"}}, ""},
		{"full", ForwardArgs{Name: "r", Listen: "127.100.64.2:16222", Targets: []string{"100.64.0.2:16222", "[fd7a:115c:a1e0::2]:16222"}, RouteSecret: &RouteSecret{User: "u", Pass: "p"}}, ""},
		{"no targets", ForwardArgs{Name: "r"}, ErrBadArgs},
		{"no name", ForwardArgs{Targets: []string{"100.64.0.2:16222"}}, ErrBadArgs},
		{"target without port", ForwardArgs{Name: "r", Targets: []string{"100.64.0.2"}}, ErrBadArgs},
		{"listen off loopback", ForwardArgs{Name: "r", Listen: "0.0.0.0:16222", Targets: []string{"100.64.0.2:16222"}}, ErrNotLoopback},
		{"empty route secret", ForwardArgs{Name: "r", Targets: []string{"100.64.0.2:16222"}, RouteSecret: &RouteSecret{}}, ErrBadArgs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := codeOf(tt.args.Validate()); got != tt.code {
				t.Errorf("Validate() code = %q, want %q", got, tt.code)
			}
		})
	}
}

func TestDecodeArgs(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		into any
		code string
	}{
		{"absent args for status", ``, &StatusArgs{}, ""},
		{"null args for status", `null`, &StatusArgs{}, ""},
		{"status with a field", `{"verbose":true}`, &StatusArgs{}, ErrBadArgs},
		{"whois", `{"addr":"100.64.0.2"}`, &WhoisArgs{}, ""},
		{"whois without addr", `{}`, &WhoisArgs{}, ErrBadArgs},
		{"misspelt field", `{"name":"c","port":1,"target":"127.0.0.1:1","allowedTags":["tag:x"]}`, &ListenArgs{}, ErrBadArgs},
		{"wrong type", `{"name":"c","port":"4222","target":"127.0.0.1:1"}`, &ListenArgs{}, ErrBadArgs},
		{"not an object", `[1]`, &CloseArgs{}, ErrBadArgs},
		{"close", `{"name":"client","drain":true}`, &CloseArgs{}, ""},
		{"denied", `{"ip":"100.64.0.9","reason":"no"}`, &DeniedArgs{}, ""},
		{"denied with port", `{"ip":"100.64.0.9:4222","reason":"no"}`, &DeniedArgs{}, ErrBadArgs},
		// encoding/json matches names case-insensitively, so the control
		// plane's old {"User","Pass"} spelling still decodes.
		{"old route secret spelling", `{"name":"r","targets":["100.64.0.2:1"],"routeSecret":{"User":"u","Pass":"p"}}`, &ForwardArgs{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := codeOf(DecodeArgs(json.RawMessage(tt.raw), tt.into)); got != tt.code {
				t.Errorf("DecodeArgs(%s) code = %q, want %q", tt.raw, got, tt.code)
			}
		})
	}
}
