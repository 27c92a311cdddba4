// Package sqlstore implements the relational storage ports (users, catalog, sale sessions) on
// database/sql with portable SQL. The sqlite and postgres packages open the database and supply
// the Dialect; the queries and the schema migrations are shared so both backends behave the same.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/surgecommerce/surge"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Dialect is what differs between the SQL backends.
type Dialect struct {
	// Goose names the dialect for the migration tool.
	Goose goose.Dialect
	// NumberedParams makes '?' placeholders into $1, $2, … (PostgreSQL).
	NumberedParams bool
	// ForUpdate is appended to selects that must lock the rows they read ("" where a write
	// transaction already holds the only write lock, as in SQLite).
	ForUpdate string
	// IsUniqueViolation reports whether err is a unique constraint violation.
	IsUniqueViolation func(error) bool
	// IsContention reports whether err is lock contention that a retry may clear (a deadlock,
	// a serialization failure, a busy database).
	IsContention func(error) bool
	// UserLock, when set, is a statement that holds a lock named by a user id until the
	// transaction ends (PostgreSQL: an advisory lock), so that checks of a shopper's orders
	// and the orders they allow happen one after another. SQLite's one writer needs none.
	UserLock string
	// ByteOrder follows a text column in ORDER BY to sort it by its bytes, as Go compares
	// strings, whatever the database's collation (PostgreSQL: COLLATE "C"; SQLite's is
	// bytes already).
	ByteOrder string
	// SessionLock makes concurrent migrations from many nodes wait for each other.
	SessionLock bool
	// OneShot, put before a query's arguments, makes the driver plan that query with its
	// values each time rather than reuse a generic plan (pgx: QueryExecModeExec): a generic plan
	// of a search by a pattern cannot know the pattern is rare, and scans. nil where the driver
	// takes no such argument.
	OneShot any
	// SingleWriter says the database takes one writer at a time (SQLite). Writers then queue
	// in the store for a slot before they take a connection, rather than each holding a pooled
	// connection while it waits for the write lock: a burst of writes would otherwise take
	// every connection and leave reads (an order page, an audit) waiting behind them.
	SingleWriter bool
}

// Store is the relational store. It implements surge.UserStore, surge.CatalogStore and
// surge.SessionStore.
type Store struct {
	db      *sql.DB
	dialect Dialect
	ids     func() (int64, error)
	writer  chan struct{} // with SingleWriter: the one write slot
	stmts   sync.Map      // query → *sql.Stmt, prepared once (see prepared)
}

// New returns a store over an open database. ids hands out new row ids (for import).
func New(db *sql.DB, d Dialect, ids func() (int64, error)) *Store {
	s := &Store{db: db, dialect: d, ids: ids}
	if d.SingleWriter {
		s.writer = make(chan struct{}, 1)
	}
	return s
}

// write takes the write slot (with SingleWriter) and returns its release.
func (s *Store) write(ctx context.Context) (func(), error) {
	if s.writer == nil {
		return func() {}, nil
	}
	select {
	case s.writer <- struct{}{}:
		return func() { <-s.writer }, nil
	case <-ctx.Done():
		return nil, ctx.Err() // as the driver reports a cancelled wait
	}
}

// prepared returns query's statement, prepared once for the store's life and then on each
// connection as it first runs there. The queries of a sale's hottest paths go through it:
// parsing the SQL each time was a fifth of an embedded node's work when a crowd of winners
// read and paid their orders. Only constant queries belong here: the cache is never trimmed.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if had, loaded := s.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return had.(*sql.Stmt), nil
	}
	return st, nil
}

// stmt returns query's prepared statement, within tx when tx is not nil. Within a transaction
// nothing is prepared on another connection: transactions holding every connection of the pool,
// each waiting for one more to prepare on, would wait for each other for good. A statement
// prepared already is taken into the transaction (prepared again on its connection if need
// be); one that is not is prepared on the transaction's connection, for the transaction.
func (s *Store) stmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	if tx == nil {
		return s.prepared(ctx, query)
	}
	if st, ok := s.stmts.Load(query); ok {
		return tx.StmtContext(ctx, st.(*sql.Stmt)), nil
	}
	return tx.PrepareContext(ctx, query)
}

// exec runs one writing statement.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	release, err := s.write(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return s.db.ExecContext(ctx, query, args...)
}

// Migrate brings the schema to the newest version and returns the versions it applied.
func Migrate(ctx context.Context, db *sql.DB, d Dialect) ([]int64, error) {
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true), goose.WithGoMigrations(goMigrations(d)...)}
	if d.SessionLock {
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, fmt.Errorf("migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(d.Goose, db, mustSub(migrations, "migrations"), opts...)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// SchemaVersion returns the newest applied migration version.
func SchemaVersion(ctx context.Context, db *sql.DB, d Dialect) (int64, error) {
	p, err := goose.NewProvider(d.Goose, db, mustSub(migrations, "migrations"), goose.WithDisableGlobalRegistry(true),
		goose.WithGoMigrations(goMigrations(d)...))
	if err != nil {
		return 0, err
	}
	return p.GetDBVersion(ctx)
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// q rewrites placeholders for the dialect.
func (s *Store) q(query string) string {
	if !s.dialect.NumberedParams {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	release, err := s.write(ctx)
	if err != nil {
		return err
	}
	defer release()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap(err, "transaction")
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return s.wrap(err, "row")
	}
	if err := tx.Commit(); err != nil {
		return s.wrap(err, "commit")
	}
	return nil
}

// wrap turns driver errors into domain errors where they have a domain meaning.
func (s *Store) wrap(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return surge.Errorf(surge.ENOTFOUND, "%s not found", what)
	case s.dialect.IsUniqueViolation(err):
		return surge.Errorf(surge.ECONFLICT, "%s already exists", what)
	case s.dialect.IsContention(err):
		return surge.Errorf(surge.EUNAVAILABLE, "the database is busy with the same %s; retry", what)
	}
	var de *surge.Error
	if errors.As(err, &de) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ms and fromMs convert times to and from the stored unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMs(v int64) time.Time { return time.UnixMilli(v).UTC() }

// null stores an empty string as NULL so unique columns allow many unset values.
func null(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func limit(n int) int {
	if n <= 0 {
		return surge.DefaultListLimit
	}
	return min(n, surge.MaxListLimit)
}

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the embedded directory is part of the build
	}
	return sub
}
