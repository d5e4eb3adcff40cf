package bridge

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// DeviceLimits bound what one tailnet device may ask of a face: how many
// connections it may hold at once (those still being set up included) and
// how fast it may open new ones (a token bucket). Every new client
// connection costs nats-server an auth callout; without a bound per
// device, one device in a reconnect loop, or a flood, queues everyone
// else's connections behind its own until they miss nats-server's auth
// timeout.
type DeviceLimits struct {
	// MaxConns is how many connections a device may have open at once,
	// those being set up included; 0: no limit.
	MaxConns int `json:"maxConns"`
	// Rate is how many new connections per second a device may open,
	// sustained; 0: no limit.
	Rate float64 `json:"rate"`
	// Burst is how many new connections a device may open at once before
	// Rate applies (the bucket's size).
	Burst int `json:"burst"`
}

// Validate refuses limits that cannot mean what they say: negative
// numbers, and a rate whose bucket holds no token (nothing would pass).
func (l DeviceLimits) Validate() error {
	if l.MaxConns < 0 || l.Rate < 0 || l.Burst < 0 {
		return coded(ErrBadArgs, "limits: maxConns, rate and burst must not be negative")
	}
	if l.Rate > 0 && l.Burst < 1 {
		return coded(ErrBadArgs, "limits: a rate needs a burst of at least 1, or no connection would ever pass")
	}
	return nil
}

// deviceLimiter applies DeviceLimits per device. Devices are keyed by
// their stable node ID, so a device's IPv4 and IPv6 addresses share one
// budget; only devices the tailnet knows get a key, so the table is bounded
// by the tailnet's size, and idle entries are swept.
type deviceLimiter struct {
	lim DeviceLimits
	now func() time.Time

	mu        sync.Mutex
	devs      map[string]*deviceUse
	lastSweep time.Time
}

type deviceUse struct {
	open   int
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

func newDeviceLimiter(l DeviceLimits) *deviceLimiter {
	return &deviceLimiter{lim: l, now: time.Now, devs: map[string]*deviceUse{}}
}

// sweepEvery bounds how often acquire looks for idle devices to forget.
const sweepEvery = time.Minute

// acquire admits one new connection of device key, or says why not (a
// code, ErrDeviceConnections or ErrDeviceRate, and a reason). The
// returned release gives its slot back when the connection ends; it may
// be called more than once. A refused connection takes neither a slot nor
// a token, so a device refused for holding too many connections does not
// also drain its rate.
func (d *deviceLimiter) acquire(key string) (release func(), code, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	d.sweep(now)
	u := d.devs[key]
	if u == nil {
		u = &deviceUse{tokens: float64(d.lim.Burst), at: now}
		d.devs[key] = u
	}
	d.refill(u, now)
	if d.lim.MaxConns > 0 && u.open >= d.lim.MaxConns {
		return nil, ErrDeviceConnections, fmt.Sprintf("the device holds %d connections, the most one device may", u.open)
	}
	if d.lim.Rate > 0 {
		if u.tokens < 1 {
			return nil, ErrDeviceRate, fmt.Sprintf("the device opens connections faster than %g a second (burst %d)", d.lim.Rate, d.lim.Burst)
		}
		u.tokens--
	}
	u.open++
	var once sync.Once
	return func() { once.Do(func() { d.release(key) }) }, "", ""
}

func (d *deviceLimiter) release(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if u := d.devs[key]; u != nil && u.open > 0 {
		u.open--
	}
}

// refill adds the tokens earned since u.at, up to the bucket's size.
func (d *deviceLimiter) refill(u *deviceUse, now time.Time) {
	if d.lim.Rate > 0 && now.After(u.at) {
		u.tokens = min(float64(d.lim.Burst), u.tokens+now.Sub(u.at).Seconds()*d.lim.Rate)
	}
	u.at = now
}

// sweep forgets devices with no open connection and a full bucket: they
// would start afresh exactly as they are. A device whose bucket is not
// full yet is kept, or closing its connections would hand it a new burst.
func (d *deviceLimiter) sweep(now time.Time) {
	if now.Sub(d.lastSweep) < sweepEvery {
		return
	}
	d.lastSweep = now
	for k, u := range d.devs {
		d.refill(u, now)
		if u.open == 0 && (d.lim.Rate == 0 || u.tokens >= float64(d.lim.Burst)) {
			delete(d.devs, k)
		}
	}
}

// refusalLog logs refusals so that a flood does not flood the log: per
// caller and code of refusal, the first is logged at once and then at
// most one line per interval, which says how many were refused since the
// last line ("suppressed").
type refusalLog struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	seen map[string]*refusalSeen

	// Every refusal is counted, logged or not (counting).
	metrics *Metrics
	face    string
}

type refusalSeen struct {
	at    time.Time
	quiet int
}

func newRefusalLog(log *slog.Logger, every time.Duration) *refusalLog {
	return &refusalLog{log: log, every: every, now: time.Now, seen: map[string]*refusalSeen{}}
}

// counting makes every refusal count in m under face, logged or not.
func (r *refusalLog) counting(m *Metrics, face string) *refusalLog {
	r.metrics, r.face = m, face
	return r
}

// maxRefusalKeys bounds the table; beyond it, stale entries are dropped.
const maxRefusalKeys = 4096

// refused logs msg with attrs and code (a codes.go constant), unless a
// line for the same caller and code went out less than an interval ago;
// then it only counts.
func (r *refusalLog) refused(caller, code, msg string, attrs ...any) {
	r.metrics.Refused(r.face, code)
	if !r.allow(caller+"\x00"+code, &attrs) {
		return
	}
	r.log.Warn(msg, append(attrs, "code", code)...)
}

// allow reports whether a line may go out now, adding the count of
// refusals it stands for to attrs.
func (r *refusalLog) allow(key string, attrs *[]any) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	s := r.seen[key]
	if s != nil && now.Sub(s.at) < r.every {
		s.quiet++
		return false
	}
	if s != nil && s.quiet > 0 {
		*attrs = append(*attrs, "suppressed", s.quiet)
	}
	if s == nil && len(r.seen) >= maxRefusalKeys {
		for k, v := range r.seen {
			if now.Sub(v.at) >= r.every {
				delete(r.seen, k)
			}
		}
		if len(r.seen) >= maxRefusalKeys {
			return false // thousands of callers refused at once: the lines already out say so
		}
	}
	r.seen[key] = &refusalSeen{at: now}
	return true
}
