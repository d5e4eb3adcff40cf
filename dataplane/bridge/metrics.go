package bridge

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Metrics counts what the bridge's faces do: connections accepted and
// refused (by face and reason), open connections, bytes each way, and how
// long WhoIs takes. The control plane reads it with the "metrics" op and
// writes it out for Prometheus beside nats-server's figures; the bridge
// itself serves nothing, so that no port exists for it to guard.
//
// Counters only grow; the table is bounded by the faces the control plane
// opened and the fixed set of reasons (codes.go), never by callers.
type Metrics struct {
	mu    sync.Mutex
	faces map[string]*FaceCounters
	whois Histogram
}

// FaceCounters are one face's figures since the bridge started.
type FaceCounters struct {
	Accepted uint64            `json:"accepted"`
	Refused  map[string]uint64 `json:"refused"`
	Open     int64             `json:"open"`
	BytesIn  uint64            `json:"bytesIn"`
	BytesOut uint64            `json:"bytesOut"`
}

// Histogram is cumulative, with Prometheus's "le" buckets in seconds.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"` // per bound, cumulative; the last is +Inf
	Sum    float64   `json:"sum"`
	Count  uint64    `json:"count"`
	Errors uint64    `json:"errors"`
}

// whoisBounds: a WhoIs is a local call into tsnet, normally well under a
// millisecond; the upper buckets catch a tsnet that is stuck.
var whoisBounds = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1}

func NewMetrics() *Metrics {
	return &Metrics{
		faces: map[string]*FaceCounters{},
		whois: Histogram{Bounds: whoisBounds, Counts: make([]uint64, len(whoisBounds)+1)},
	}
}

func (m *Metrics) face(name string) *FaceCounters {
	f := m.faces[name]
	if f == nil {
		f = &FaceCounters{Refused: map[string]uint64{}}
		m.faces[name] = f
	}
	return f
}

// Refused counts one connection a face turned away, by reason (a code).
// Nil-safe, like every method here: tests build faces without metrics.
func (m *Metrics) Refused(face, reason string) {
	if m == nil || face == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.face(face).Refused[reason]++
}

// Opened counts a connection that reached its upstream.
func (m *Metrics) Opened(face string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.face(face)
	f.Accepted++
	f.Open++
}

// Closed ends a connection Opened counted, with its bytes each way.
func (m *Metrics) Closed(face string, in, out int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.face(face)
	f.Open--
	f.BytesIn += uint64(max(in, 0))
	f.BytesOut += uint64(max(out, 0))
}

// WhoIs records one WhoIs call's duration, and whether it failed.
func (m *Metrics) WhoIs(d time.Duration, failed bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h := &m.whois
	s := d.Seconds()
	for i, b := range h.Bounds {
		if s <= b {
			h.Counts[i]++
		}
	}
	h.Counts[len(h.Bounds)]++
	h.Sum += s
	h.Count++
	if failed {
		h.Errors++
	}
}

// MetricsSnapshot is what the "metrics" op answers.
type MetricsSnapshot struct {
	Faces map[string]FaceCounters `json:"faces"`
	WhoIs Histogram               `json:"whois"`
}

func (m *Metrics) Snapshot() MetricsSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := MetricsSnapshot{Faces: map[string]FaceCounters{}, WhoIs: m.whois}
	out.WhoIs.Counts = slices.Clone(m.whois.Counts)
	for name, f := range m.faces {
		c := *f
		c.Refused = maps.Clone(f.Refused)
		out.Faces[name] = c
	}
	return out
}
