package bridge

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// RouteSecret guards the cluster port. nats-server's cluster authorization
// wants this user/password; only the bridge knows to present it:
//   - inbound (a peer's route arriving over the tailnet): the bridge puts
//     the secret into the peer's CONNECT, after the tailnet tag check;
//   - outbound (our nats-server dialing a peer through a loopback
//     forwarder): the forwarder demands the secret in our nats-server's
//     CONNECT and strips it before it leaves, so a local process cannot use
//     the forwarder as a way into a peer's cluster either.
//
// ClusterKey, when set, is the second factor every member holds:
// the cluster tag alone then admits no route. It never travels; each side
// proves it holds the key with an HMAC bound to both ends' tailnet
// addresses (see clusterProof).
type RouteSecret struct {
	User       string `json:"user"`
	Pass       string `json:"pass"`
	ClusterKey string `json:"clusterKey,omitempty"`
}

// minClusterKey is the shortest key taken: 32 characters of a base64 or
// hex dump are 192 bits or more.
const minClusterKey = 32

// Validate refuses an empty secret: CheckRoute would then admit any local
// process whose CONNECT carries no credentials at all.
func (rs RouteSecret) Validate() error {
	if rs.User == "" || rs.Pass == "" {
		return coded(ErrBadArgs, "routeSecret needs user and pass")
	}
	if rs.ClusterKey != "" && len(rs.ClusterKey) < minClusterKey {
		return coded(ErrBadArgs, "routeSecret.clusterKey must be at least %d characters", minClusterKey)
	}
	return nil
}

// proofField carries a cluster proof in the listener's INFO and in the
// dialer's CONNECT. nats-server ignores unknown fields, but the bridge
// strips it anyway before either line reaches nats-server.
const proofField = "nats_tsnet_proof"

const (
	roleDial   = "dial"
	roleAccept = "accept"
)

var errNoProof = errors.New("no valid cluster proof: the peer does not hold this cluster's key (tailnet.cluster_key_file)")

// clusterProof is HMAC-SHA256(key, role, dialer, listener). Binding both
// tailnet addresses is what makes a static proof safe: WireGuard
// authenticates source addresses, so a proof a rogue member collects when
// an honest node dials it names the rogue's own address and is worth
// nothing anywhere else; and the role keeps a listener's proof from
// standing in for a dialer's.
func clusterProof(key, role string, dialer, listener netip.Addr) string {
	m := hmac.New(sha256.New, []byte(key))
	fmt.Fprintf(m, "nats-tsnet route proof v1\x00%s\x00%s\x00%s", role, dialer.Unmap(), listener.Unmap())
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func addrOf(a net.Addr) netip.Addr {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// checkProof verifies and removes the proof in a parsed INFO or CONNECT.
func checkProof(m map[string]json.RawMessage, want string) error {
	var got string
	_ = json.Unmarshal(m[proofField], &got)
	dropField(m, proofField)
	if !hmac.Equal([]byte(got), []byte(want)) {
		return errNoProof
	}
	return nil
}

// InjectRoute rewrites the peer's route CONNECT to carry our secret. The
// listener speaks first (its INFO, with its cluster proof when a key is
// set); the dialer's CONNECT must carry the dialer's proof. From then on
// the peer's stream passes through a routeFilter.
func (rs RouteSecret) InjectRoute(peer, upstream net.Conn, from RoutePeer) (net.Conn, net.Conn, error) {
	ur := bufio.NewReaderSize(upstream, 4096)
	up := &bufConn{upstream, ur}
	dialer, listener := addrOf(peer.RemoteAddr()), addrOf(peer.LocalAddr())
	// Our INFO goes first, with or without a key: a dialer that holds a
	// key waits for it, and must hear at once that we prove nothing.
	info, err := readLine(ur)
	if err != nil {
		return nil, nil, fmt.Errorf("reading our route INFO: %w", err)
	}
	if rs.ClusterKey != "" {
		if info, err = rewriteInfo(info, func(m map[string]json.RawMessage) error {
			setField(m, proofField, clusterProof(rs.ClusterKey, roleAccept, dialer, listener))
			return nil
		}); err != nil {
			return nil, nil, err
		}
	}
	if _, err := peer.Write(info); err != nil {
		return nil, nil, err
	}
	pr := bufio.NewReaderSize(peer, routeReadBuffer)
	line, err := readLine(pr)
	if err != nil {
		return nil, nil, fmt.Errorf("reading route CONNECT: %w", err)
	}
	out, err := rewriteConnect(line, func(m map[string]json.RawMessage) error {
		if rs.ClusterKey != "" {
			if err := checkProof(m, clusterProof(rs.ClusterKey, roleDial, dialer, listener)); err != nil {
				return err
			}
		}
		setField(m, "user", rs.User)
		setField(m, "pass", rs.Pass)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if _, err := upstream.Write(out); err != nil {
		return nil, nil, err
	}
	return newRouteFilter(peer, pr, from), up, nil
}

// routeLocal is our nats-server's leg of an outbound route once its
// CONNECT has been checked, holding that CONNECT until the peer has
// proved itself.
type routeLocal struct {
	net.Conn
	connect []byte
}

// CheckRoute verifies that a connection to an outbound route forwarder
// comes from our own nats-server (it presents the secret) and strips the
// secret before the CONNECT goes over the tailnet. It runs before the
// dial, so a local process without the secret never reaches a peer.
func (rs RouteSecret) CheckRoute(local net.Conn) (net.Conn, []byte, error) {
	lr := bufio.NewReaderSize(local, 4096)
	line, err := readLine(lr)
	if err != nil {
		return nil, nil, fmt.Errorf("reading route CONNECT: %w", err)
	}
	out, err := rewriteConnect(line, func(m map[string]json.RawMessage) error {
		var user, pass string
		_ = json.Unmarshal(m["user"], &user)
		_ = json.Unmarshal(m["pass"], &pass)
		if subtle.ConstantTimeCompare([]byte(user+"\x00"+pass), []byte(rs.User+"\x00"+rs.Pass)) != 1 {
			return errors.New("route CONNECT without this node's route secret: not our nats-server")
		}
		dropField(m, "user")
		dropField(m, "pass")
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return &routeLocal{&bufConn{local, lr}, out}, nil, nil
}

// DialedRoute finishes an outbound route after the dial: with a key, the
// peer's INFO must carry the listener's proof before our CONNECT (with the
// dialer's proof) leaves; then the peer's stream passes through a
// routeFilter on its way to our nats-server.
func (rs RouteSecret) DialedRoute(local, remote net.Conn, to RoutePeer) (net.Conn, net.Conn, error) {
	l, ok := local.(*routeLocal)
	if !ok {
		return nil, nil, errors.New("outbound route without a checked CONNECT")
	}
	rr := bufio.NewReaderSize(remote, routeReadBuffer)
	f := newRouteFilter(remote, rr, to)
	connect := l.connect
	if rs.ClusterKey != "" {
		dialer, listener := addrOf(remote.LocalAddr()), addrOf(remote.RemoteAddr())
		info, err := readLine(rr)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the peer's route INFO: %w", err)
		}
		info, err = rewriteInfo(info, func(m map[string]json.RawMessage) error {
			return checkProof(m, clusterProof(rs.ClusterKey, roleAccept, dialer, listener))
		})
		if err != nil {
			return nil, nil, err
		}
		if connect, err = rewriteConnect(connect, func(m map[string]json.RawMessage) error {
			setField(m, proofField, clusterProof(rs.ClusterKey, roleDial, dialer, listener))
			return nil
		}); err != nil {
			return nil, nil, err
		}
		// The INFO was read past the filter: it goes through it now, as
		// the route's first INFO.
		if err := f.prime(info); err != nil {
			return nil, nil, err
		}
	}
	if _, err := remote.Write(connect); err != nil {
		return nil, nil, err
	}
	return l.Conn, f, nil
}
