// Package pgevents carries change events across a fleet of bm-server
// replicas on one PostgreSQL database, with LISTEN/NOTIFY: an event
// published on any replica reaches the hub of every replica (itself
// included), numbered in one order for the whole fleet, so that a device
// hears every change of its tenant whichever replica it is connected to,
// and resumes with its Last-Event-ID on any of them.
//
// A Bus is the hub's events.Relay. What the hub hands it is queued and
// written by one goroutine in batches (up to BatchMax events in one
// INSERT), each batch in a transaction under an advisory lock, so that
// the numbers (the table's BIGSERIAL) commit in the order they were
// taken, and the transaction NOTIFYs the fleet's channel. Every replica
// LISTENs on a connection of its own; on each notification, and every
// Poll besides (a notification lost with a broken connection is caught
// up then), it reads the rows after the last it delivered and hands them
// to its hub in order. Notifications carry nothing: a tenant's events are
// read from the table, never from the channel, which every replica hears.
//
// Rows are kept for Retain (the hub's replay window), the newest always
// (the numbering's high mark), and deleted about once a minute by each
// replica. A replica starting up loads the rows of the window into its
// hub, so that it can resume the clients of the replica it replaces.
//
// While PostgreSQL cannot be reached, the writer retries a batch for up
// to GiveUp, then drops it with a warning (the devices' interval passes
// catch up); the queue holds QueueMax events, past which new ones are
// dropped the same way. The listener reconnects and catches up from the
// table: nothing written is missed.
package pgevents

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/basicmachines-co/bm-agent/internal/jitter"
	"github.com/basicmachines-co/bm-agent/server/events"
)

// Channel is the NOTIFY channel of the fleet's change events.
const Channel = "bm_change_events"

// Defaults of a Bus.
const (
	DefaultPoll     = 5 * time.Second
	DefaultBatchMax = 500
	DefaultQueueMax = 10_000
	DefaultGiveUp   = 30 * time.Second
	pruneEvery      = time.Minute
	readPage        = 1000
	warnEvery       = time.Minute
)

// Config configures a Bus.
type Config struct {
	// DB is the store's database (PostgreSQL at schema 00005 or later).
	DB *sql.DB
	// Hub is this replica's hub: the Bus becomes its relay.
	Hub *events.Hub
	// Logger gets the warnings (nil: none).
	Logger *slog.Logger
	// Retain is how long rows are kept (<= 0: events.DefaultRetainFor).
	Retain time.Duration
	// Poll is how often the table is read without a notification (<= 0:
	// DefaultPoll).
	Poll time.Duration
	// BatchMax bounds the events of one INSERT (<= 0: DefaultBatchMax).
	BatchMax int
	// QueueMax bounds the events waiting to be written (<= 0:
	// DefaultQueueMax).
	QueueMax int
	// GiveUp is how long a batch is retried (<= 0: DefaultGiveUp).
	GiveUp time.Duration
}

// Bus relays a hub's events through PostgreSQL. Make it with New, run
// it with Run.
type Bus struct {
	db     *sql.DB
	hub    *events.Hub
	log    *slog.Logger
	retain time.Duration
	poll   time.Duration
	batch  int
	giveUp time.Duration
	queue  chan item
	wake   chan struct{} // a notification came

	mu     sync.Mutex // serializes catchUp
	cursor uint64     // the last number delivered to the hub

	dropped  atomic.Int64
	lastWarn atomic.Int64 // unix nanos of the last drop warning
}

// New reads the fleet's numbering from the database, makes the bus hub's
// relay and loads the events of the retention window into hub (so that
// clients of another replica can resume here). Run it next.
func New(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.DB == nil || cfg.Hub == nil {
		return nil, errors.New("pgevents: DB and Hub are required")
	}
	b := &Bus{
		db:     cfg.DB,
		hub:    cfg.Hub,
		log:    cfg.Logger,
		retain: cfg.Retain,
		poll:   cfg.Poll,
		batch:  cfg.BatchMax,
		giveUp: cfg.GiveUp,
		wake:   make(chan struct{}, 1),
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.retain <= 0 {
		b.retain = events.DefaultRetainFor
	}
	if b.poll <= 0 {
		b.poll = DefaultPoll
	}
	if b.batch <= 0 {
		b.batch = DefaultBatchMax
	}
	if b.giveUp <= 0 {
		b.giveUp = DefaultGiveUp
	}
	qmax := cfg.QueueMax
	if qmax <= 0 {
		qmax = DefaultQueueMax
	}
	b.queue = make(chan item, qmax)

	var epoch string
	if err := b.db.QueryRowContext(ctx, `SELECT epoch FROM change_events_epoch LIMIT 1`).Scan(&epoch); err != nil {
		return nil, fmt.Errorf("pgevents: read the epoch: %w", err)
	}
	// The first event kept for the window; with none in it, the newest
	// (which is never deleted) marks where the numbering stands.
	var first, newest sql.NullInt64
	if err := b.db.QueryRowContext(ctx,
		`SELECT (SELECT MIN(id) FROM change_events WHERE at >= now() - make_interval(secs => $1)), (SELECT MAX(id) FROM change_events)`,
		b.retain.Seconds()).Scan(&first, &newest); err != nil {
		return nil, fmt.Errorf("pgevents: read the window: %w", err)
	}
	var from uint64
	switch {
	case first.Valid:
		from = uint64(first.Int64 - 1)
	case newest.Valid:
		from = uint64(newest.Int64)
	}
	b.cursor = from
	b.hub.SetRelay(b, epoch, from)
	if err := b.catchUp(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// item is a queued event and who waits for it to be written (nil: no one).
type item struct {
	ev   events.Event
	done chan<- error
}

// ErrDropped is what a waiting publisher gets for an event the bus
// dropped unwritten (the queue full, or PostgreSQL away past GiveUp).
var ErrDropped = errors.New("pgevents: change event dropped unwritten")

// Relay implements events.Relay: it queues ev to be written, or drops it
// (with a warning) when the queue is full.
func (b *Bus) Relay(ev events.Event, done chan<- error) {
	b.enqueue(item{ev, done})
}

func (b *Bus) enqueue(it item) {
	select {
	case b.queue <- it:
	default:
		b.drop([]item{it}, "the queue is full")
	}
}

// Dropped is the number of events dropped unwritten.
func (b *Bus) Dropped() int64 { return b.dropped.Load() }

// drop gives up on items, telling their waiters.
func (b *Bus) drop(items []item, why string) {
	n := len(items)
	for _, it := range items {
		it.finish(fmt.Errorf("%w: %s", ErrDropped, why))
	}
	total := b.dropped.Add(int64(n))
	now := time.Now().UnixNano()
	if last := b.lastWarn.Load(); now-last >= int64(warnEvery) && b.lastWarn.CompareAndSwap(last, now) {
		b.log.Warn("change events dropped: devices catch up on their interval", "why", why, "dropped", n, "dropped_total", total)
	}
}

// Run writes, listens and prunes until ctx ends, then writes what is
// still queued (for up to a few seconds) and returns.
func (b *Bus) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { b.listen(ctx) })
	wg.Go(func() { b.readLoop(ctx) })
	b.write(ctx)
	wg.Wait()
	return nil
}

// write takes batches off the queue until ctx ends, then flushes.
func (b *Bus) write(ctx context.Context) {
	batch := make([]item, 0, b.batch)
	for {
		select {
		case it := <-b.queue:
			batch = append(batch[:0], it)
		case <-ctx.Done():
			b.flush()
			return
		}
		batch = b.fill(batch)
		b.insertRetrying(ctx, batch)
	}
}

// fill adds what is queued to batch, without waiting, up to the bound.
func (b *Bus) fill(batch []item) []item {
	for len(batch) < b.batch {
		select {
		case it := <-b.queue:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// flush writes what is queued at shutdown, within a few seconds.
func (b *Bus) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for len(b.queue) > 0 && ctx.Err() == nil {
		batch := b.fill(make([]item, 0, b.batch))
		if err := b.insert(ctx, batch); err != nil {
			for len(b.queue) > 0 {
				batch = append(batch, <-b.queue)
			}
			b.drop(batch, "shutting down: "+err.Error())
			return
		}
		finish(batch)
	}
}

// insertRetrying writes batch, retrying with backoff for up to giveUp.
func (b *Bus) insertRetrying(ctx context.Context, batch []item) {
	start := time.Now()
	wait := 100 * time.Millisecond
	for {
		err := b.insert(ctx, batch)
		if err == nil {
			finish(batch)
			return
		}
		if ctx.Err() != nil {
			// shutting down: the flush tries once more
			for _, it := range batch {
				b.enqueue(it)
			}
			return
		}
		if time.Since(start) >= b.giveUp {
			b.drop(batch, err.Error())
			return
		}
		b.log.Debug("change events: write failed; retrying", "events", len(batch), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(jitter.Spread(wait)):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// insert writes batch in one transaction under the fleet's lock, and
// notifies the fleet.
func (b *Bus) insert(ctx context.Context, batch []item) error {
	tenants := make([]string, len(batch))
	devices := make([]string, len(batch))
	reasons := make([]string, len(batch))
	keys := make([]string, len(batch))
	ats := make([]time.Time, len(batch))
	for i, it := range batch {
		ev := it.ev
		tenants[i], devices[i], reasons[i], ats[i] = ev.TenantID, ev.Device, ev.Reason, ev.At.UTC()
		if len(ev.Keys) > 0 {
			k, err := json.Marshal(ev.Keys)
			if err != nil {
				return fmt.Errorf("pgevents: encode keys: %w", err)
			}
			keys[i] = string(k)
		}
	}
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("pgevents: insert: %w", err)
	}
	defer tx.Rollback()
	// The numbers commit in the order they are taken: one writer of the
	// fleet at a time.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('bm-server change events'))`); err != nil {
		return fmt.Errorf("pgevents: insert: lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO change_events (tenant_id, device, reason, keys, at)
		 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])`,
		tenants, devices, reasons, keys, ats); err != nil {
		return fmt.Errorf("pgevents: insert: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, '')`, Channel); err != nil {
		return fmt.Errorf("pgevents: insert: notify: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("pgevents: insert: commit: %w", err)
	}
	return nil
}

// finish tells an item's waiter how it went.
func (it item) finish(err error) {
	if it.done != nil {
		it.done <- err
	}
}

// finish tells the waiters of a written batch.
func finish(batch []item) {
	for _, it := range batch {
		it.finish(nil)
	}
}

// listen holds a LISTEN connection, waking the reader on each
// notification, and reconnects with backoff when it breaks.
func (b *Bus) listen(ctx context.Context) {
	wait := 500 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := b.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			wait = 500 * time.Millisecond
		}
		b.log.Warn("change events: listening failed; reconnecting", "in", wait.String(), "err", err)
		b.signal() // catch up at once when it is back
		select {
		case <-ctx.Done():
			return
		case <-time.After(jitter.Spread(wait)):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// listenOnce LISTENs on a connection of the pool, taken out of it for
// good (it is closed afterwards, never reused with its LISTEN).
func (b *Bus) listenOnce(ctx context.Context) error {
	conn, err := b.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("pgevents: listen: %w", err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("pgevents: listen: not a pgx connection: %T", dc)
		}
		pc := sc.Conn()
		if _, err := pc.Exec(ctx, "LISTEN "+Channel); err != nil {
			return fmt.Errorf("pgevents: listen: %w", err)
		}
		b.signal() // what was written before LISTEN took hold
		for {
			if _, err := pc.WaitForNotification(ctx); err != nil {
				return fmt.Errorf("pgevents: wait: %w", err)
			}
			b.signal()
		}
	})
	// The connection keeps its LISTEN (or is broken): close it rather
	// than give it back to the pool.
	return errors.Join(err, driver.ErrBadConn)
}

func (b *Bus) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// readLoop catches up on each notification and every poll, and prunes
// the table about once a minute.
func (b *Bus) readLoop(ctx context.Context) {
	poll := time.NewTicker(b.poll)
	defer poll.Stop()
	nextPrune := time.Now().Add(jitter.Spread(pruneEvery))
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		case <-poll.C:
		}
		if err := b.catchUp(ctx); err != nil && ctx.Err() == nil {
			b.log.Debug("change events: read failed", "err", err)
		}
		if time.Now().After(nextPrune) {
			nextPrune = time.Now().Add(jitter.Spread(pruneEvery))
			if err := b.prune(ctx); err != nil && ctx.Err() == nil {
				b.log.Debug("change events: prune failed", "err", err)
			}
		}
	}
}

// catchUp hands the hub, in order, every event after the cursor.
func (b *Bus) catchUp(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		n, err := b.readPage(ctx)
		if err != nil {
			return err
		}
		if n < readPage {
			return nil
		}
	}
}

func (b *Bus) readPage(ctx context.Context) (int, error) {
	rows, err := b.db.QueryContext(ctx,
		`SELECT id, tenant_id, device, reason, keys, at FROM change_events WHERE id > $1 ORDER BY id LIMIT $2`,
		int64(b.cursor), readPage)
	if err != nil {
		return 0, fmt.Errorf("pgevents: read: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			id   int64
			ev   events.Event
			keys string
		)
		if err := rows.Scan(&id, &ev.TenantID, &ev.Device, &ev.Reason, &keys, &ev.At); err != nil {
			return n, fmt.Errorf("pgevents: read: %w", err)
		}
		if keys != "" {
			if err := json.Unmarshal([]byte(keys), &ev.Keys); err != nil {
				ev.Keys = nil // stands for any change
			}
		}
		ev.At = ev.At.UTC()
		b.hub.Deliver(ev, uint64(id))
		b.cursor = uint64(id)
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("pgevents: read: %w", err)
	}
	return n, nil
}

// prune deletes the rows past the window, but never the newest.
func (b *Bus) prune(ctx context.Context) error {
	_, err := b.db.ExecContext(ctx,
		`DELETE FROM change_events WHERE at < now() - make_interval(secs => $1) AND id < (SELECT MAX(id) FROM change_events)`,
		b.retain.Seconds())
	if err != nil {
		return fmt.Errorf("pgevents: prune: %w", err)
	}
	return nil
}
