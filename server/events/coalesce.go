package events

import (
	"sync"
	"time"
)

// Defaults of a Coalescer: a single write is announced a quarter second
// after it; a burst (a 10,000-object upload) a quarter second after its
// last write, and every 2 s while it goes on.
const (
	DefaultDelay   = 250 * time.Millisecond
	DefaultMaxWait = 2 * time.Second
)

// Coalescer turns bursts of changes into few events, with a delay plus a
// maximum wait (the way the agent debounces file events): the first
// change of a tenant opens a window, each later change joins it, and the
// window closes, sending one event (the trailing edge) with the number of
// changes it stands for, once no change came for the delay, or at the
// latest the maximum wait after it opened. So a tenant gets at most one
// event per delay, a burst of writes one event when it ends, and a stream
// that never pauses one event per maximum wait.
//
// The event carries the device of its changes when they all came from
// the same one (so that device can ignore its own writes), and none when
// they came from several or an unknown one. It names the keys of its
// changes (Event.Keys) when every change named its own and they are at
// most MaxKeys, and none otherwise. Its reason is the first change's, its
// time the last change's.
//
// It is safe for concurrent use. Add never waits for emit: emit runs on
// a timer's goroutine.
type Coalescer struct {
	delay, maxWait time.Duration
	emit           func(ev Event, changes int)

	mu      sync.Mutex
	pending map[string]*pendingEvent // by tenant
	closed  bool
	wg      sync.WaitGroup // one per window not yet emitted
}

// pendingEvent is the open window of one tenant.
type pendingEvent struct {
	ev     Event
	n      int
	keys   map[string]bool // ev.Keys as a set; nil once the event names none
	opened time.Time
	due    time.Time // when it closes unless another change comes
	timer  *time.Timer
}

// NewCoalescer returns a Coalescer that calls emit with each coalesced
// event and the number of changes in it. A delay <= 0 means DefaultDelay,
// a maxWait <= 0 DefaultMaxWait; a maxWait shorter than the delay is the
// delay.
func NewCoalescer(delay, maxWait time.Duration, emit func(ev Event, changes int)) *Coalescer {
	if delay <= 0 {
		delay = DefaultDelay
	}
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	maxWait = max(maxWait, delay)
	return &Coalescer{delay: delay, maxWait: maxWait, emit: emit, pending: map[string]*pendingEvent{}}
}

// Add records n changes (n < 1 counts as 1) described by ev, of
// ev.TenantID. A zero ev.At becomes now. After Close it does nothing.
func (c *Coalescer) Add(ev Event, n int) {
	if n < 1 {
		n = 1
	}
	now := time.Now()
	if ev.At.IsZero() {
		ev.At = now.UTC()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if w := c.pending[ev.TenantID]; w != nil {
		w.n += n
		if w.ev.Device != ev.Device {
			w.ev.Device = "" // several writers: everyone must look
		}
		if ev.At.After(w.ev.At) {
			w.ev.At = ev.At
		}
		w.addKeys(ev.Keys)
		// The timer fires at the earlier due time and waits again from
		// there (see fire).
		w.due = now.Add(c.delay)
		if latest := w.opened.Add(c.maxWait); latest.Before(w.due) {
			w.due = latest
		}
		return
	}
	w := &pendingEvent{ev: ev, n: n, opened: now, due: now.Add(c.delay)}
	w.ev.Keys = nil
	if keys := KeysOf(ev.Keys); keys != nil {
		w.keys = map[string]bool{}
		w.addKeys(keys)
	}
	tenant := ev.TenantID
	c.wg.Add(1)
	// fire takes c.mu first, so it sees w.timer set.
	w.timer = time.AfterFunc(c.delay, func() { c.fire(tenant, w) })
	c.pending[tenant] = w
}

// addKeys adds the keys of a change to the window's; a change that names
// none, or too many in all, leaves the event naming none.
func (w *pendingEvent) addKeys(keys []string) {
	if w.keys == nil {
		return
	}
	if KeysOf(keys) == nil {
		w.keys, w.ev.Keys = nil, nil
		return
	}
	for _, k := range keys {
		if w.keys[k] {
			continue
		}
		if len(w.keys) == MaxKeys {
			w.keys, w.ev.Keys = nil, nil
			return
		}
		w.keys[k] = true
		w.ev.Keys = append(w.ev.Keys, k)
	}
}

// fire closes w if it is due, or waits until it is.
func (c *Coalescer) fire(tenant string, w *pendingEvent) {
	c.mu.Lock()
	if c.pending[tenant] != w {
		c.mu.Unlock()
		return // flushed by Close
	}
	if d := time.Until(w.due); d > 0 {
		w.timer.Reset(d)
		c.mu.Unlock()
		return
	}
	delete(c.pending, tenant)
	c.mu.Unlock()
	c.emit(w.ev, w.n)
	c.wg.Done()
}

// Pending is the number of tenants with a window open.
func (c *Coalescer) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Close emits the pending events now, waits for the emits under way and
// ignores later changes. It is idempotent.
func (c *Coalescer) Close() {
	c.mu.Lock()
	c.closed = true
	var flush []*pendingEvent
	for tenant, w := range c.pending {
		w.timer.Stop()
		delete(c.pending, tenant)
		flush = append(flush, w)
	}
	c.mu.Unlock()
	for _, w := range flush {
		c.emit(w.ev, w.n)
		c.wg.Done()
	}
	c.wg.Wait()
}
