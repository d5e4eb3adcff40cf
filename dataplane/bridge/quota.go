package bridge

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Per-identity quotas on the client face. nats-server
// ignores the limits in a user JWT its auth callout issues (auth_callout.go
// clears the JWT before applyAccountLimits), so what one identity may hold
// is enforced here, where every SUB, UNSUB and PUB of its connections
// passes. A connection starts with the listener's default quota from its
// first byte; the control plane raises (or lowers) it with the `quota` op
// once its auth callout has decided who the caller is, before it answers
// nats-server. nats-server's account limits stay in force behind it.
//
// A refusal reads to the client exactly as nats-server's own would: a SUB
// over the quota is dropped and answered -ERR 'maximum subscriptions
// exceeded' (the connection stays); a PUB or HPUB over it is answered
// -ERR 'Maximum Payload Violation' and the connection ends. The -ERR must
// not land inside a message nats-server is sending, so the refused line
// goes upstream as a PING, and the PONG that answers it (found by framing
// the server's stream, serverfilter.go) is replaced by the error.

// Quota is what one client connection may hold: Subs subscriptions at
// once, and messages of at most Payload bytes (headers included, as
// nats-server counts them). -1 is no limit of the bridge's own.
type Quota struct {
	Subs    int64 `json:"subs"`
	Payload int64 `json:"payload"`
}

func (q Quota) Validate() error {
	if q.Subs < -1 || q.Payload < -1 {
		return coded(ErrBadArgs, "quota: subs and payload must be -1 (no limit) or more")
	}
	return nil
}

// QuotaArgs is the control plane's word on the identity behind IP: every
// open client connection from that address gets this quota.
type QuotaArgs struct {
	IP      string `json:"ip"`
	Subs    int64  `json:"subs"`
	Payload int64  `json:"payload"`
}

func (a QuotaArgs) Validate() error {
	if _, err := netip.ParseAddr(a.IP); err != nil {
		return coded(ErrBadArgs, "quota needs ip: %w", err)
	}
	return Quota{Subs: a.Subs, Payload: a.Payload}.Validate()
}

// validateQuota: a quota is enforced by the client filter, which only the
// client face (signClients) has.
func (a ListenArgs) validateQuota() error {
	if a.ClientQuota == nil {
		return nil
	}
	if !a.SignClients {
		return coded(ErrBadArgs, "listen %q: clientQuota works only with signClients", a.Name)
	}
	return a.ClientQuota.Validate()
}

// The -ERR lines are nats-server's own (client.go maxSubsExceeded,
// maxPayloadViolation), so clients report them as they always have.
const (
	errTooManySubs    = "-ERR 'maximum subscriptions exceeded'\r\n"
	errPayloadTooLong = "-ERR 'Maximum Payload Violation'\r\n"
	injectedPing      = "PING\r\n"
)

// Quotas holds the live client connections by caller address, so that the
// control plane's decision for an identity reaches its connections.
type Quotas struct {
	mu  sync.Mutex
	ips map[string]map[*connQuota]struct{}
}

// Set gives every open connection from ip the quota q. A decision for an
// address with no open connection has nothing to apply to: a new
// connection starts from the default and is decided anew.
func (qs *Quotas) Set(ip string, q Quota) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	for c := range qs.ips[ip] {
		c.set(q)
	}
}

// open registers a connection from ip with quota q until its close.
func (qs *Quotas) open(ip string, q Quota, log func(code string)) *connQuota {
	c := newConnQuota(q)
	c.log = log
	c.close = func() { qs.drop(ip, c) }
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if qs.ips == nil {
		qs.ips = map[string]map[*connQuota]struct{}{}
	}
	if qs.ips[ip] == nil {
		qs.ips[ip] = map[*connQuota]struct{}{}
	}
	qs.ips[ip][c] = struct{}{}
	return c
}

func (qs *Quotas) drop(ip string, c *connQuota) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	delete(qs.ips[ip], c)
	if len(qs.ips[ip]) == 0 {
		delete(qs.ips, ip)
	}
}

// connQuota is one connection's quota and what the bridge knows of its
// subscriptions: nats-server's view, followed from both directions.
type connQuota struct {
	subs, payload atomic.Int64

	mu    sync.Mutex
	live  map[string]*liveSub // by sid: the subscriptions nats-server holds
	byKey map[string][]string // subject and queue -> sids, to undo a SUB nats-server refused
	pongs []pongWant          // one per PING sent upstream, oldest first
	ended chan struct{}       // closed once the server's stream has ended
	end   sync.Once
	told  map[string]bool // refusal codes already logged for this connection
	log   func(code string)
	close func()
	once  sync.Once
}

type liveSub struct {
	key      string
	got, max int64 // messages delivered; an UNSUB with a max ends it at max
}

// pongWant is what the PONG answering one PING becomes: nothing for the
// client's own PING, else the -ERR of the line the PING replaced; last
// ends the connection after it.
type pongWant struct {
	err  string
	last bool
}

func newConnQuota(q Quota) *connQuota {
	c := &connQuota{live: map[string]*liveSub{}, byKey: map[string][]string{}, ended: make(chan struct{}), told: map[string]bool{}}
	c.set(q)
	return c
}

func (c *connQuota) set(q Quota) {
	c.subs.Store(q.Subs)
	c.payload.Store(q.Payload)
}

// release unregisters the connection; safe to call more than once.
func (c *connQuota) release() {
	c.once.Do(func() {
		if c.close != nil {
			c.close()
		}
	})
}

// overPayload reports whether a message of size bytes is over the quota.
func (c *connQuota) overPayload(size int) bool {
	p := c.payload.Load()
	return p >= 0 && int64(size) > p
}

// subscribe records a SUB as nats-server will see it, or reports false
// when the connection already holds its quota (nats-server checks the
// count before it looks at the sid, so a repeated sid is refused too).
func (c *connQuota) subscribe(subject, queue, sid []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if limit := c.subs.Load(); limit >= 0 && int64(len(c.live)) >= limit {
		return false
	}
	if !validSubject(subject) || c.live[string(sid)] != nil {
		return true // nats-server adds nothing: an invalid subject, or a sid it has
	}
	key := subKey(subject, queue)
	c.live[string(sid)] = &liveSub{key: key}
	c.byKey[key] = append(c.byKey[key], string(sid))
	return true
}

// unsubscribe mirrors nats-server's processUnsub: with a max above what
// was delivered the subscription lives on until max messages, else it
// ends now.
func (c *connQuota) unsubscribe(sid []byte, max int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.live[string(sid)]
	if s == nil {
		return
	}
	if max > 0 && max > s.got {
		s.max = max
		return
	}
	c.remove(string(sid), s)
}

// delivered counts a message nats-server sent on sid.
func (c *connQuota) delivered(sid []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.live[string(sid)]
	if s == nil {
		return
	}
	s.got++
	if s.max > 0 && s.got >= s.max {
		c.remove(string(sid), s)
	}
}

// refusedSub undoes one SUB nats-server refused for its permissions. They
// depend only on subject and queue, so any sid recorded with both was
// refused alike.
func (c *connQuota) refusedSub(subject, queue string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sids := c.byKey[subKey([]byte(subject), []byte(queue))]
	if len(sids) > 0 {
		sid := sids[len(sids)-1]
		c.remove(sid, c.live[sid])
	}
}

func (c *connQuota) remove(sid string, s *liveSub) {
	delete(c.live, sid)
	if s == nil {
		return
	}
	sids := c.byKey[s.key]
	for i, x := range sids {
		if x == sid {
			sids = append(sids[:i], sids[i+1:]...)
			break
		}
	}
	if len(sids) == 0 {
		delete(c.byKey, s.key)
	} else {
		c.byKey[s.key] = sids
	}
}

// ping records a PING going upstream and what its PONG is to become.
func (c *connQuota) ping(w pongWant) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pongs = append(c.pongs, w)
}

// pong takes what the next PONG from nats-server answers.
func (c *connQuota) pong() pongWant {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pongs) == 0 {
		return pongWant{}
	}
	w := c.pongs[0]
	c.pongs = c.pongs[1:]
	return w
}

// refused logs the first refusal of each kind (its code) on this
// connection: a client looping over its quota must not flood the log.
func (c *connQuota) refused(code string) {
	c.mu.Lock()
	first := !c.told[code]
	c.told[code] = true
	c.mu.Unlock()
	if first && c.log != nil {
		c.log(code)
	}
}

// serverEnded is called once the server's stream to the client is over.
func (c *connQuota) serverEnded() { c.end.Do(func() { close(c.ended) }) }

// count is the number of subscriptions the quota holds the connection to.
func (c *connQuota) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.live)
}

// subKey is a subscription's subject and queue as one map key.
func subKey(subject, queue []byte) string {
	return string(subject) + "\x00" + string(queue)
}

// validSubject is what nats-server's sublist accepts (Sublist.Insert): no
// empty token, nothing after a '>' token. A SUB to anything else is
// answered 'Invalid Subject' and holds no subscription.
func validSubject(s []byte) bool {
	toks := bytes.Split(s, []byte("."))
	for i, t := range toks {
		if len(t) == 0 || (i < len(toks)-1 && len(t) == 1 && t[0] == '>') {
			return false
		}
	}
	return true
}

// quotaClients holds every connection of client face f to the quota def
// until the control plane says otherwise. It wraps f's Post (the trusted
// proxy's handshake): the connection is registered before the handshake
// passes its CONNECT to nats-server, so a `quota` sent while the callout
// decides always finds it.
func (n *Node) quotaClients(f *Forwarder, def Quota) {
	post := f.Post
	f.Post = func(c, up net.Conn) (net.Conn, net.Conn, error) {
		ip := c.RemoteAddr().String()
		if ap, err := netip.ParseAddrPort(ip); err == nil {
			ip = ap.Addr().String()
		}
		q := n.Quotas.open(ip, def, n.quotaLog(f.Name, c.RemoteAddr().String()))
		nc, nup, err := post(c, up)
		if err != nil {
			q.release()
			return nil, nil, err
		}
		cf, ok := nc.(*clientFilter)
		if !ok {
			// Fail closed: a quota that cannot be applied must not pass as one.
			q.release()
			return nil, nil, errors.New("the client leg is not the client filter: cannot apply the quota")
		}
		cf.q = q
		return cf, newServerFilter(nup, q), nil
	}
}

// quotaLog logs a connection's refusals (the first of each kind) with the
// caller's address; the node names who that is in its own auth decisions.
func (n *Node) quotaLog(face, from string) func(code string) {
	return func(code string) {
		n.Log.Warn("client over its quota", "listener", face, "from", from, "code", code)
	}
}

// quotaWait bounds how long a connection that broke its payload quota
// waits for nats-server to answer the PING that carries its -ERR.
const quotaWait = 5 * time.Second

var errOverPayload = errors.New("client over its payload quota")
