// Package postgres is the scale-out relational backend: PostgreSQL through pgx, serving the
// shared sqlstore queries.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/surgecommerce/surge/sqlstore"
)

// Pool bounds.
const (
	maxOpenConns   = 32
	connectTimeout = 5 * time.Second
)

// DB is an open PostgreSQL connection pool.
type DB struct {
	*sqlstore.Store
	db *sql.DB
}

// Dialect describes PostgreSQL to the shared store.
func Dialect() sqlstore.Dialect {
	return sqlstore.Dialect{
		Goose:          goose.DialectPostgres,
		NumberedParams: true,
		ForUpdate:      " FOR UPDATE",
		ByteOrder:      ` COLLATE "C"`,
		SessionLock:    true,
		UserLock:       "SELECT pg_advisory_xact_lock(7700, CAST(? AS INTEGER))",
		OneShot:        pgx.QueryExecModeExec,
		IsUniqueViolation: func(err error) bool {
			var e *pgconn.PgError
			return errors.As(err, &e) && e.Code == "23505"
		},
		IsContention: func(err error) bool {
			var e *pgconn.PgError
			// deadlock_detected, serialization_failure, lock_not_available
			return errors.As(err, &e) && (e.Code == "40P01" || e.Code == "40001" || e.Code == "55P03")
		},
	}
}

// Open connects to the database at url (postgres://…). ids hands out new row ids.
func Open(ctx context.Context, url string, ids func() (int64, error)) (*DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: bad url: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxOpenConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres %s@%s: %w", cfg.User, cfg.Host, err)
	}
	return &DB{Store: sqlstore.New(db, Dialect(), ids), db: db}, nil
}

// Migrate brings the schema to the newest version and returns the versions it applied. Nodes
// starting together wait for each other on an advisory lock.
func (d *DB) Migrate(ctx context.Context) ([]int64, error) {
	return sqlstore.Migrate(ctx, d.db, Dialect())
}

// SchemaVersion returns the newest applied migration.
func (d *DB) SchemaVersion(ctx context.Context) (int64, error) {
	return sqlstore.SchemaVersion(ctx, d.db, Dialect())
}

// Close closes the pool.
func (d *DB) Close() error { return d.db.Close() }

// DB returns the underlying pool, for tests that need to reset a schema.
func (d *DB) SQL() *sql.DB { return d.db }
