// Package sqlite is the embedded relational backend: a SQLite file under the data directory,
// through a pure-Go driver, serving the shared sqlstore queries.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/pressly/goose/v3"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/surgecommerce/surge/sqlstore"
)

// maxOpenConns bounds the connection pool, and all of them stay open: WAL lets readers run
// beside the one writer. With database/sql's default of two idle connections, a burst of reads
// (winners opening their order pages) closed and opened connections, each open a file, its
// pragmas and its prepared statements again, and the order page's p99 reached a second.
const maxOpenConns = 16

// DB is an open SQLite database.
type DB struct {
	*sqlstore.Store
	db *sql.DB
}

// Dialect describes SQLite to the shared store. Write transactions start with BEGIN IMMEDIATE,
// so the write lock is taken up front and row locks are not needed.
func Dialect() sqlstore.Dialect {
	return sqlstore.Dialect{
		Goose:        goose.DialectSQLite3,
		SingleWriter: true,
		IsUniqueViolation: func(err error) bool {
			var e *sqlite.Error
			return errors.As(err, &e) &&
				(e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
		},
		IsContention: func(err error) bool {
			var e *sqlite.Error
			return errors.As(err, &e) && (e.Code()&0xff == sqlite3.SQLITE_BUSY || e.Code()&0xff == sqlite3.SQLITE_LOCKED)
		},
	}
}

// Open opens (creating if needed) the database file at path. ids hands out new row ids.
func Open(ctx context.Context, path string, ids func() (int64, error)) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxOpenConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	return &DB{Store: sqlstore.New(db, Dialect(), ids), db: db}, nil
}

// Migrate brings the schema to the newest version and returns the versions it applied.
func (d *DB) Migrate(ctx context.Context) ([]int64, error) {
	return sqlstore.Migrate(ctx, d.db, Dialect())
}

// SchemaVersion returns the newest applied migration.
func (d *DB) SchemaVersion(ctx context.Context) (int64, error) {
	return sqlstore.SchemaVersion(ctx, d.db, Dialect())
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }
