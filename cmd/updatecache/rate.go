package main

import (
	"fmt"
	"sync"
	"time"
)

// rateWindow is how far back a rateMeter looks: long enough to smooth a
// link that delivers in bursts, short enough to follow a change of speed.
const rateWindow = 5 * time.Second

// rateMinSpan is how much time a rateMeter needs before it reports a rate:
// the first bytes of a transfer say little about its speed.
const rateMinSpan = time.Second

// rateMeter estimates the rate of a transfer from the bytes counted over
// the last rateWindow, and from that the time left. It is safe for
// concurrent use: the pull reports bytes, the terminal renders the rate.
type rateMeter struct {
	mu      sync.Mutex
	samples []rateSample // oldest first; the first is at or before the window's start
}

type rateSample struct {
	at    time.Time
	total int64 // bytes counted by then
}

// add records that total bytes have been counted at at.
func (m *rateMeter) add(at time.Time, total int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples = append(m.samples, rateSample{at, total})
	// Keep one sample at or before the window's start as the baseline.
	start := at.Add(-rateWindow)
	drop := 0
	for drop+1 < len(m.samples) && !m.samples[drop+1].at.After(start) {
		drop++
	}
	m.samples = m.samples[drop:]
}

// rate returns the bytes per second over the window up to now, and false
// while the meter has seen less than rateMinSpan. A stalled transfer's
// rate falls as now moves on.
func (m *rateMeter) rate(now time.Time) (float64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.samples) < 2 {
		return 0, false
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	span := now.Sub(first.at)
	if span < rateMinSpan {
		return 0, false
	}
	return float64(last.total-first.total) / span.Seconds(), true
}

// describe renders the rate and the time left to reach total, e.g.
// "1.2 MB/s 8s", for a progress bar.
func (m *rateMeter) describe(now time.Time, total int64) string {
	bps, ok := m.rate(now)
	if !ok {
		return "-- --"
	}
	m.mu.Lock()
	left := total - m.samples[len(m.samples)-1].total
	m.mu.Unlock()
	eta := "--"
	if bps > 0 && left >= 0 {
		eta = time.Duration(float64(left) / bps * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%s/s %s", humanSize(int64(bps)), eta)
}
