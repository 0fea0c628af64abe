// Package store is bm-server's SQL store: tenants, accounts, the metadata of
// bucket-scoped mount credentials and an audit trail. It never holds an S3
// secret key.
//
// SQLite (modernc.org/sqlite, no cgo) is the default; PostgreSQL (pgx) is
// for more than one server replica. Open picks one from its DSN. The schema
// is versioned with goose from embedded SQL files, one directory per
// dialect, kept in step; queries are written once with ? placeholders and
// rebound to $N for PostgreSQL.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors returned by the store. Callers test them with errors.Is.
var (
	// ErrNotFound is returned when a row does not exist or, for
	// tenant-scoped lookups, belongs to another tenant.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict is returned when a write violates a unique constraint
	// (an email, an access key, a bucket name or an id already taken).
	ErrConflict = errors.New("store: conflict")
	// ErrFull is returned when a write would pass a bound on the rows
	// of a kind (see CreateOAuthSessionCapped).
	ErrFull = errors.New("store: full")
)

// Dialect names the SQL database behind a Store.
type Dialect string

// Supported dialects.
const (
	DialectSQLite   Dialect = "sqlite"
	DialectPostgres Dialect = "postgres"
)

// Tenant statuses.
const (
	TenantActive    = "active"
	TenantSuspended = "suspended"
	TenantDeleted   = "deleted"
)

// Deletion statuses of a revoked credential at the storage provider.
const (
	DeletionPending   = "pending"
	DeletionCompleted = "completed"
	DeletionFailed    = "failed"
)

//go:embed migrations
var migrations embed.FS

// touchInterval is how often at most TouchAccessKey writes last_used_at for
// one key.
const touchInterval = time.Minute

// Store is the server's SQL store. It is safe for concurrent use.
type Store struct {
	db      *sql.DB
	dialect Dialect
	version int64

	touchMu sync.Mutex
	touched map[string]time.Time // access key -> last write of last_used_at
}

// Open opens the store at dsn and applies the migrations (an up-to-date
// schema is left as it is, so Open is cheap on every start). dsn is either
//
//   - a PostgreSQL URL, postgres://user@host:5432/db?sslmode=disable (or
//     postgresql://), opened with pgx;
//   - sqlite://PATH, sqlite:PATH or a plain file path for SQLite, created if
//     needed, with WAL mode, a busy timeout and foreign keys on every
//     connection.
func Open(ctx context.Context, dsn string) (*Store, error) {
	dialect, target, err := ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("store open: %w", err)
	}
	var db *sql.DB
	switch dialect {
	case DialectPostgres:
		if db, err = sql.Open("pgx", target); err != nil {
			return nil, fmt.Errorf("store open: %w", err)
		}
		// Bounded so that several replicas stay under PostgreSQL's default
		// max_connections (100); idle connections are kept for bursts.
		db.SetMaxOpenConns(32)
		db.SetMaxIdleConns(32)
		db.SetConnMaxIdleTime(5 * time.Minute)
	default:
		q := url.Values{}
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "busy_timeout(5000)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Set("_time_format", "sqlite")
		q.Set("_txlock", "immediate")
		if err := private(target); err != nil {
			return nil, fmt.Errorf("store open: %w", err)
		}
		if db, err = sql.Open("sqlite", "file:"+target+"?"+q.Encode()); err != nil {
			return nil, fmt.Errorf("store open: %w", err)
		}
	}
	s, err := New(ctx, db, dialect)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// private makes the SQLite database at path readable by its owner alone:
// it creates the file 0600 when it is missing (SQLite gives its -wal and
// -shm files the database's mode) and takes group and other bits off the
// files of an existing one. In-memory databases (":memory:") are left be.
func private(path string) error {
	if strings.HasPrefix(path, ":") {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", path, err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		if err := os.Chmod(p, fi.Mode().Perm()&0o700); err != nil {
			return fmt.Errorf("make %s private: %w", p, err)
		}
	}
	return nil
}

// ParseDSN tells which database dsn names (see Open) and returns what the
// driver opens: the URL itself for PostgreSQL, the file path for SQLite.
func ParseDSN(dsn string) (Dialect, string, error) {
	switch {
	case dsn == "":
		return "", "", errors.New("empty dsn")
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return DialectPostgres, dsn, nil
	case strings.HasPrefix(dsn, "sqlite://"):
		dsn = strings.TrimPrefix(dsn, "sqlite://")
	case strings.HasPrefix(dsn, "sqlite:"):
		dsn = strings.TrimPrefix(dsn, "sqlite:")
	case strings.Contains(dsn, "://"):
		return "", "", fmt.Errorf("unsupported dsn scheme in %q", RedactDSN(dsn))
	}
	if dsn == "" {
		return "", "", errors.New("empty sqlite path")
	}
	return DialectSQLite, dsn, nil
}

// RedactDSN returns dsn with any password replaced by "xxxxx", for logs and
// error messages.
func RedactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		if err != nil && strings.Contains(dsn, "@") {
			return "(unparsable dsn)"
		}
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// New wraps an open database of the given dialect and applies the
// migrations. The Store owns db from then on: Close closes it. Open is the
// usual way in; New is for a database opened some other way.
func New(ctx context.Context, db *sql.DB, dialect Dialect) (*Store, error) {
	var gd goose.Dialect
	switch dialect {
	case DialectSQLite:
		gd = goose.DialectSQLite3
	case DialectPostgres:
		gd = goose.DialectPostgres
	default:
		return nil, fmt.Errorf("store new: unknown dialect %q", dialect)
	}
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("store new: ping: %w", err)
	}
	dir, err := fs.Sub(migrations, "migrations/"+string(dialect))
	if err != nil {
		return nil, fmt.Errorf("store new: migrations: %w", err)
	}
	p, err := goose.NewProvider(gd, db, dir, goose.WithDisableGlobalRegistry(true),
		// a database migrated by a build that lacked a version in between
		// (versions land out of order) gets it applied: each version adds
		// tables of its own
		goose.WithAllowOutofOrder(true))
	if err != nil {
		return nil, fmt.Errorf("store new: migrations: %w", err)
	}
	unlock, err := lockMigrations(ctx, db, dialect)
	if err != nil {
		return nil, fmt.Errorf("store new: %w", err)
	}
	_, err = p.Up(ctx)
	unlock()
	if err != nil {
		return nil, fmt.Errorf("store new: migrate up: %w", err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("store new: schema version: %w", err)
	}
	return &Store{db: db, dialect: dialect, version: v, touched: map[string]time.Time{}}, nil
}

// lockMigrations makes replicas starting at once on one PostgreSQL
// database migrate it one after the other: it waits for a transaction
// advisory lock, held (on a connection of its own) until unlock ends the
// transaction. SQLite's migrations are one machine's: no lock.
func lockMigrations(ctx context.Context, db *sql.DB, dialect Dialect) (unlock func(), err error) {
	if dialect != DialectPostgres {
		return func() {}, nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("lock migrations: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('bm-server store migrations'))`); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("lock migrations: %w", err)
	}
	return func() { _ = tx.Rollback() }, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store close: %w", err)
	}
	return nil
}

// SchemaVersion is the goose version of the schema after Open.
func (s *Store) SchemaVersion() int64 { return s.version }

// Dialect is the database behind the store.
func (s *Store) Dialect() Dialect { return s.dialect }

// Ping checks that the database answers, for readiness checks.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("store ping: %w", err)
	}
	return nil
}

// DB is the underlying database, for health checks.
func (s *Store) DB() *sql.DB { return s.db }

// NewID returns a random version 4 UUID, the form of every TEXT id here.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0x0f])
	}
	return string(out)
}

// rebind turns the ? placeholders of query into $1, $2 ... for PostgreSQL.
// No query here has a literal question mark.
func (s *Store) rebind(query string) string {
	if s.dialect != DialectPostgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return s.db.ExecContext(ctx, s.rebind(query), args...)
}

// execAffected runs query and returns how many rows it touched; errors
// are wrapped with op.
func (s *Store) execAffected(ctx context.Context, op, query string, args ...any) (int64, error) {
	res, err := s.exec(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	return n, nil
}

func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return s.db.QueryRowContext(ctx, s.rebind(query), args...)
}

func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return s.db.QueryContext(ctx, s.rebind(query), args...)
}

// classify maps constraint violations to ErrConflict (unique) and
// ErrNotFound (foreign key: the referenced tenant does not exist), keeping
// the driver's error in the chain.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %w", ErrConflict, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
	}
	// pgx's *pgconn.PgError and lib/pq's *pq.Error both have SQLState.
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) {
		switch pe.SQLState() {
		case "23505":
			return fmt.Errorf("%w: %w", ErrConflict, err)
		case "23503":
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
	}
	return err
}

// ts normalises a time for storage: UTC, microsecond precision (what
// PostgreSQL keeps).
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nullTime is ts for an optional time.
func nullTime(t *time.Time) sql.NullTime {
	if t == nil {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: ts(*t), Valid: true}
}

func timePtr(nt sql.NullTime) *time.Time {
	if !nt.Valid {
		return nil
	}
	t := nt.Time.UTC()
	return &t
}

func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}

// now is the clock of writes without an explicit time.
func now() time.Time { return ts(time.Now()) }
