package bridge

import (
	"net/url"
	"strconv"
	"strings"
)

// ClientSecretPrefix starts every Tailscale OAuth client secret. tsnet
// treats an auth key with this prefix as a client secret too.
const ClientSecretPrefix = "tskey-client-"

// Login is what a device needs to join the tailnet the first time: an auth
// key, an OAuth client secret that mints one, or workload identity
// federation (a client ID with an ID token, or with an audience to ask the
// cloud for one). The control plane hands it over as one JSON line on a
// pipe (--login-fd), never on a command line or in the environment; its
// shape is in testdata/control-protocol.json ("login").
type Login struct {
	AuthKey      string `json:"authKey,omitempty"`
	ClientSecret string `json:"clientSecret,omitempty"`
	ClientID     string `json:"clientId,omitempty"`
	IDToken      string `json:"idToken,omitempty"`
	Audience     string `json:"audience,omitempty"`
}

// Normalized moves a client secret given as the auth key to ClientSecret,
// where it belongs (tsnet would use it as one either way).
func (l Login) Normalized() Login {
	if l.ClientSecret == "" && strings.HasPrefix(l.AuthKey, ClientSecretPrefix) {
		l.ClientSecret, l.AuthKey = l.AuthKey, ""
	}
	return l
}

// Method names the way l logs in, for the log: never a value.
func (l Login) Method() string {
	l = l.Normalized()
	switch {
	case l.AuthKey != "":
		return "auth key"
	case l.ClientSecret != "":
		return "OAuth client secret"
	case l.ClientID != "":
		return "workload identity federation"
	}
	return "none"
}

// mints says whether l makes tsnet mint an auth key, which carries exactly
// the advertised tags and so needs some.
func (l Login) mints() bool {
	l = l.Normalized()
	return l.AuthKey == "" && (l.ClientSecret != "" || l.ClientID != "")
}

// check refuses, before tsnet starts, what tsnet would refuse only once
// started: a key to mint with no tags to put on it.
func (l Login) check(tags []string) error {
	if l.mints() && len(tags) == 0 {
		return coded(ErrOAuthTags, "%s mints an auth key with exactly the tags this device advertises: give --tags", l.Method())
	}
	return nil
}

// forTsnet is l as tsnet.Server takes it: the minted key is ephemeral
// exactly when the device is (tsnet's own default is an ephemeral key,
// which would lose a node that stays offline for a while), unless the
// secret or client ID says otherwise with its own ?ephemeral=.
func (l Login) forTsnet(ephemeral bool) Login {
	l = l.Normalized()
	if l.AuthKey != "" {
		return l
	}
	l.ClientSecret = withEphemeral(l.ClientSecret, ephemeral)
	l.ClientID = withEphemeral(l.ClientID, ephemeral)
	return l
}

// withEphemeral adds ephemeral=<ephemeral> to a client secret or ID's
// optional attributes (name?attr=v&...) unless it has one already.
func withEphemeral(v string, ephemeral bool) string {
	if v == "" {
		return v
	}
	_, attrs, found := strings.Cut(v, "?")
	if q, err := url.ParseQuery(attrs); err == nil && q.Has("ephemeral") {
		return v
	}
	sep := "?"
	if found {
		sep = "&"
		if attrs == "" {
			sep = ""
		}
	}
	return v + sep + "ephemeral=" + strconv.FormatBool(ephemeral)
}
