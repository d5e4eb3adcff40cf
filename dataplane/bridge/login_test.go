package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"tailscale.com/feature"
)

// The bridge hands every way of logging in to tsnet.Server, in the fields
// tsnet reads; none of this starts tsnet.
func TestNewServerGetsTheLogin(t *testing.T) {
	nop := func(string, ...any) {}
	tags := []string{"tag:nats-js", "tag:prod"}
	tests := []struct {
		name string
		o    Options
		want Login // what tsnet.Server's AuthKey, ClientSecret, ... hold
	}{
		{"auth key", Options{Login: Login{AuthKey: "tskey-auth-k"}},
			Login{AuthKey: "tskey-auth-k"}},
		{"client secret", Options{Login: Login{ClientSecret: "tskey-client-s"}, Tags: tags},
			Login{ClientSecret: "tskey-client-s?ephemeral=false"}},
		{"client secret given as the auth key", Options{Login: Login{AuthKey: "tskey-client-s"}, Tags: tags, Ephemeral: true},
			Login{ClientSecret: "tskey-client-s?ephemeral=true"}},
		{"client secret with attributes of its own", Options{Login: Login{ClientSecret: "tskey-client-s?preauthorized=true&baseURL=http://127.0.0.1:1"}, Tags: tags},
			Login{ClientSecret: "tskey-client-s?preauthorized=true&baseURL=http://127.0.0.1:1&ephemeral=false"}},
		{"client secret that says ephemeral itself", Options{Login: Login{ClientSecret: "tskey-client-s?ephemeral=true"}, Tags: tags},
			Login{ClientSecret: "tskey-client-s?ephemeral=true"}},
		{"workload identity with a token", Options{Login: Login{ClientID: "cid", IDToken: "jwt"}, Tags: tags},
			Login{ClientID: "cid?ephemeral=false", IDToken: "jwt"}},
		{"workload identity with an audience", Options{Login: Login{ClientID: "cid?preauthorized=true", Audience: "api.example"}, Tags: tags},
			Login{ClientID: "cid?preauthorized=true&ephemeral=false", Audience: "api.example"}},
		{"nothing (state in Dir)", Options{}, Login{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.Hostname, o.Dir, o.ControlURL, o.Port = "nats-1", "/state", "http://127.0.0.1:1", 41641
			s := newServer(o, nop, nop)
			got := Login{AuthKey: s.AuthKey, ClientSecret: s.ClientSecret, ClientID: s.ClientID, IDToken: s.IDToken, Audience: s.Audience}
			if got != tt.want {
				t.Errorf("tsnet.Server login %+v, want %+v", got, tt.want)
			}
			if s.Hostname != "nats-1" || s.Dir != "/state" || s.ControlURL != o.ControlURL || s.Port != 41641 ||
				s.Ephemeral != o.Ephemeral || !slices.Equal(s.AdvertiseTags, o.Tags) {
				t.Errorf("tsnet.Server %+v does not carry the options %+v", s, o)
			}
		})
	}
}

// tsnet would refuse a key to mint without tags only once started, with
// a message about a CLI flag; the bridge refuses it first, with its code.
func TestLoginThatMintsNeedsTags(t *testing.T) {
	for _, l := range []Login{{ClientSecret: "tskey-client-s"}, {AuthKey: "tskey-client-s"}, {ClientID: "cid", IDToken: "jwt"}} {
		var ce *CodedError
		if err := l.check(nil); !errors.As(err, &ce) || ce.Code != ErrOAuthTags {
			t.Errorf("%s without tags: %v, want %s", l.Method(), err, ErrOAuthTags)
		}
		if err := l.check([]string{"tag:x"}); err != nil {
			t.Errorf("%s with a tag: %v", l.Method(), err)
		}
	}
	for _, l := range []Login{{}, {AuthKey: "tskey-auth-k"}} {
		if err := l.check(nil); err != nil {
			t.Errorf("%s without tags: %v", l.Method(), err)
		}
	}
}

func TestStartFailureWithAKeyToMint(t *testing.T) {
	o := Options{Login: Login{ClientSecret: "tskey-client-s"}, Tags: []string{"tag:x"}}
	tests := []struct {
		o    Options
		err  string
		code string
	}{
		{o, `error resolving auth key: Post "http://127.0.0.1:1/api/v2/oauth/token": dial tcp 127.0.0.1:1: connect: connection refused`, ErrTailnetControlUnreachable},
		{o, `error resolving auth key: oauth2: "invalid_client"`, ErrTailnetAuth},
		{o, "creating state dir: permission denied", ErrTailnetStart},
		{Options{Login: Login{AuthKey: "tskey-auth-k"}}, "error resolving auth key: odd", ErrTailnetStart},
	}
	for _, tt := range tests {
		var ce *CodedError
		if err := startFailure(tt.o, fmt.Errorf("tsnet: %s", tt.err)); !errors.As(err, &ce) || ce.Code != tt.code {
			t.Errorf("%q: %v, want %s", tt.err, err, tt.code)
		}
	}
}

// OAuth client secrets and workload identity work only when their tsnet
// features are linked in; identityfederation is not linked by default.
func TestLoginFeaturesLinked(t *testing.T) {
	for _, f := range []string{"oauthkey", "identityfederation"} {
		if !feature.Registered()[f] {
			t.Errorf("tsnet feature %q is not linked into the bridge", f)
		}
	}
}

// A client secret really reaches tsnet's OAuth exchange, with the tags and
// an ephemeral=false key asked for: the "API" is on loopback (the secret's
// own baseURL attribute), refuses to make the key, and the bridge reports
// that with ERR_TAILNET_AUTH. The control URL is loopback too, and never
// reached: tsnet asks for the key before it talks to a control server.
func TestClientSecretReachesTsnet(t *testing.T) {
	var (
		mu     sync.Mutex
		secret string
		keyReq struct {
			Capabilities struct {
				Devices struct {
					Create struct {
						Ephemeral bool     `json:"ephemeral"`
						Tags      []string `json:"tags"`
					} `json:"create"`
				} `json:"devices"`
			} `json:"capabilities"`
		}
		paths []string
	)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		if r.URL.Path == "/api/v2/oauth/token" {
			_ = r.ParseForm()
			secret = r.Form.Get("client_secret")
			if _, pass, ok := r.BasicAuth(); ok {
				secret = pass
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"access_token":"at","token_type":"Bearer","expires_in":3600}`)
			return
		}
		_ = json.NewDecoder(r.Body).Decode(&keyReq)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"message":"this client may not assign tag:nats-js"}`)
	}))
	defer api.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := Options{
		Hostname:   "oauth-test",
		Dir:        t.TempDir(),
		Login:      Login{AuthKey: "tskey-client-k123?baseURL=" + api.URL},
		ControlURL: "http://127.0.0.1:1",
		Tags:       []string{"tag:nats-js"},
		UpTimeout:  10 * time.Second,
	}
	n, err := Up(ctx, o, slog.New(slog.DiscardHandler))
	if n != nil {
		_ = n.Srv.Close()
	}
	var ce *CodedError
	if !errors.As(err, &ce) || ce.Code != ErrTailnetAuth {
		t.Fatalf("Up: %v, want %s", err, ErrTailnetAuth)
	}
	t.Log(err)
	mu.Lock()
	defer mu.Unlock()
	if secret != "tskey-client-k123" {
		t.Errorf("the API got client secret %q (requests %q)", secret, paths)
	}
	c := keyReq.Capabilities.Devices.Create
	if !slices.Equal(c.Tags, o.Tags) || c.Ephemeral {
		t.Errorf("key asked for with tags %q, ephemeral %v; want %q, false (requests %q)", c.Tags, c.Ephemeral, o.Tags, paths)
	}
}
