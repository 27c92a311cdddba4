package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pressly/goose/v3"

	"github.com/surgecommerce/surge"
)

// The order views' schema differs between the dialects (PostgreSQL partitions and trigram
// indexes, SQLite's FTS5), which one goose SQL file cannot say: migration 15 is a Go migration
// that runs the dialect's file from dialects/.
//
//go:embed dialects/*.sql
var dialectSQL embed.FS

// orderViewsVersion is the order views' migration.
const orderViewsVersion = 15

// goMigrations are the migrations whose SQL depends on the dialect.
func goMigrations(d Dialect) []*goose.Migration {
	pg := d.Goose == goose.DialectPostgres
	up := func(ctx context.Context, tx *sql.Tx) error {
		name, trgm := "dialects/00015_order_views.sqlite.sql", ""
		if pg {
			name = "dialects/00015_order_views.postgres.sql"
			// In the public schema, so that it outlives any one schema that uses it.
			if _, err := tx.ExecContext(ctx, `CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public`); err != nil {
				return fmt.Errorf("pg_trgm: %w", err)
			}
			if err := tx.QueryRowContext(ctx, `SELECT quote_ident(n.nspname) FROM pg_extension e
				JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'`).Scan(&trgm); err != nil {
				return fmt.Errorf("pg_trgm: %w", err)
			}
		}
		b, err := dialectSQL.ReadFile(name)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, strings.ReplaceAll(string(b), "{{trgm}}", trgm))
		return err
	}
	down := func(ctx context.Context, tx *sql.Tx) error {
		drop := `DROP TABLE order_view_checkpoints; DROP TABLE order_search; DROP TABLE order_views_by_merchant; DROP TABLE order_views_by_user;`
		if !pg {
			drop = `DROP TABLE order_search_text; ` + drop
		}
		_, err := tx.ExecContext(ctx, drop)
		return err
	}
	return []*goose.Migration{goose.NewGoMigration(orderViewsVersion, &goose.GoFunc{RunTx: up}, &goose.GoFunc{RunTx: down})}
}

// orderViewColumns are the columns every order view table has, in the order scanView reads.
const orderViewColumns = `order_id, txn_id, user_id, merchant_id, session_id, item_id, sku_id, quantity, amount_minor, currency,
	state, created_at, paid_at, version, phone, username`

const orderViewParams = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// putViewRows bounds the rows of one INSERT: 16 parameters each, well under both databases'
// limits on parameters.
const putViewRows = 500

// orderViewTables are the three copies and the key each is upserted on.
var orderViewTables = []struct{ name, key string }{
	{"order_views_by_user", "user_id, created_at, order_id"},
	{"order_views_by_merchant", "merchant_id, created_at, order_id"},
	{"order_search", "order_id"},
}

// PutOrderViews implements surge.OrderViewStore.
func (s *Store) PutOrderViews(ctx context.Context, views []surge.OrderView, cp surge.ViewCheckpoint) error {
	views = newestCopies(views)
	if len(views) == 0 && cp.Name == "" {
		return nil
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for rest := views; len(rest) > 0; {
			n := min(len(rest), putViewRows)
			if err := s.putViews(ctx, tx, rest[:n]); err != nil {
				return err
			}
			rest = rest[n:]
		}
		if cp.Name == "" {
			return nil
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO order_view_checkpoints (name, position) VALUES (?, ?)
			ON CONFLICT (name) DO UPDATE SET position = excluded.position`), cp.Name, int64(cp.Position))
		return s.wrap(err, "order view checkpoint")
	})
}

// newestCopies keeps one copy of each order, the one of the highest version (the last of
// equals): one statement may not upsert a row twice.
func newestCopies(views []surge.OrderView) []surge.OrderView {
	at := make(map[int64]int, len(views))
	out := make([]surge.OrderView, 0, len(views))
	for _, v := range views {
		i, ok := at[v.ID]
		switch {
		case !ok:
			at[v.ID] = len(out)
			out = append(out, v)
		case v.Version >= out[i].Version:
			out[i] = v
		}
	}
	return out
}

func (s *Store) putViews(ctx context.Context, tx *sql.Tx, views []surge.OrderView) error {
	args := make([]any, 0, len(views)*16)
	for _, v := range views {
		var paid int64
		if v.PaidAt != nil {
			paid = ms(*v.PaidAt)
		}
		args = append(args, v.ID, v.TxnID, v.UserID, v.MerchantID, v.SessionID, v.ItemID, v.SKUID, v.Quantity, v.Amount.Amount,
			v.Amount.Currency, string(v.State), ms(v.CreatedAt), paid, v.Version, v.Phone, v.Username)
	}
	values := strings.Repeat(orderViewParams+", ", len(views)-1) + orderViewParams
	for _, t := range orderViewTables {
		// Only what changes in an order's life is updated: the rest, the keys among it, is fixed
		// when the order is made.
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO `+t.name+` (`+orderViewColumns+`) VALUES `+values+`
			ON CONFLICT (`+t.key+`) DO UPDATE SET state = excluded.state, paid_at = excluded.paid_at, version = excluded.version,
			phone = excluded.phone, username = excluded.username
			WHERE `+t.name+`.version <= excluded.version`), args...)
		if err != nil {
			return s.wrap(err, "order views")
		}
	}
	if s.dialect.Goose == goose.DialectPostgres {
		return nil
	}
	// SQLite's search index: the order's phone and username, under its id.
	text := make([]any, 0, len(views)*3)
	for _, v := range views {
		text = append(text, v.ID, v.Phone, v.Username)
	}
	_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO order_search_text (rowid, phone, username) VALUES `+
		strings.Repeat("(?, ?, ?), ", len(views)-1)+"(?, ?, ?)", text...)
	return s.wrap(err, "order search")
}

// ViewCheckpoint implements surge.OrderViewStore.
func (s *Store) ViewCheckpoint(ctx context.Context, name string) (uint64, error) {
	var pos int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT position FROM order_view_checkpoints WHERE name = ?`), name).Scan(&pos)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, s.wrap(err, "order view checkpoint")
	}
	return uint64(pos), nil
}

// after is the keyset condition of a page after c, newest first.
func after(c *surge.OrderCursor, where []string, args []any) ([]string, []any) {
	if c == nil {
		return where, args
	}
	return append(where, `(created_at < ? OR (created_at = ? AND order_id < ?))`), append(args, ms(c.CreatedAt), ms(c.CreatedAt), c.ID)
}

// newestFirst orders a page.
const newestFirst = ` ORDER BY created_at DESC, order_id DESC LIMIT ?`

// ShopperOrders implements surge.OrderViewStore.
func (s *Store) ShopperOrders(ctx context.Context, userID int64, c *surge.OrderCursor, n int) (*surge.OrderPage, error) {
	n = surge.PageLimit(n)
	where, args := after(c, []string{`user_id = ?`}, []any{userID})
	return s.viewPage(ctx, `SELECT `+orderViewColumns+` FROM order_views_by_user WHERE `+strings.Join(where, " AND ")+newestFirst,
		append(args, n+1), n)
}

// MerchantOrders implements surge.OrderViewStore. Of several states, each is read from the
// index of its own and the pages are merged: a shop of millions of orders sorted whole for each
// page would not be an index lookup.
func (s *Store) MerchantOrders(ctx context.Context, merchantID int64, f surge.OrderFilter, c *surge.OrderCursor, n int) (*surge.OrderPage, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	n = surge.PageLimit(n)
	where, args := timeRange(f.From, f.To, []string{`merchant_id = ?`}, []any{merchantID})
	where, args = after(c, where, args)
	states := slices.Compact(slices.Sorted(slices.Values(f.States)))
	if len(states) == 0 {
		return s.viewPage(ctx, `SELECT `+orderViewColumns+` FROM order_views_by_merchant WHERE `+strings.Join(where, " AND ")+newestFirst,
			append(args, n+1), n)
	}
	parts := make([]string, len(states))
	var all []any
	for i, st := range states {
		parts[i] = `SELECT * FROM (SELECT ` + orderViewColumns + ` FROM order_views_by_merchant WHERE ` + strings.Join(where, " AND ") +
			` AND state = ?` + newestFirst + `) s` + strconv.Itoa(i)
		all = append(append(all, args...), string(st), n+1)
	}
	return s.viewPage(ctx, `SELECT * FROM (`+strings.Join(parts, " UNION ALL ")+`) m`+newestFirst, append(all, n+1), n)
}

// timeRange is the condition of orders created in [from, to), either end open when zero.
func timeRange(from, to time.Time, where []string, args []any) ([]string, []any) {
	if !from.IsZero() {
		where, args = append(where, `created_at >= ?`), append(args, ms(from))
	}
	if !to.IsZero() {
		where, args = append(where, `created_at < ?`), append(args, ms(to))
	}
	return where, args
}

// SearchOrders implements surge.OrderViewStore.
func (s *Store) SearchOrders(ctx context.Context, q surge.OrderSearch, c *surge.OrderCursor, n int) (*surge.OrderPage, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	n = surge.PageLimit(n)
	var match string
	var args []any
	ranges, rargs := idPrefixRanges(q.Text)
	if s.dialect.Goose == goose.DialectPostgres {
		like := "%" + escapeLike(q.Text) + "%"
		match, args = `(username ILIKE ?`, []any{like}
		if utf8.RuneCountInString(q.Text) <= maxPhoneRunes { // no phone holds a longer text
			match, args = match+` OR phone LIKE ?`, append(args, like)
		}
		if ranges != "" {
			match += ` OR ` + ranges
			args = append(args, rargs...)
		}
		match += `)`
	} else {
		match = `order_id IN (SELECT rowid FROM order_search_text WHERE order_search_text MATCH ?`
		phrase := `"` + strings.ReplaceAll(q.Text, `"`, `""`) + `"`
		if utf8.RuneCountInString(q.Text) > maxPhoneRunes {
			phrase = `username : ` + phrase
		}
		args = []any{phrase}
		if ranges != "" {
			match += ` UNION ALL SELECT order_id FROM order_search WHERE ` + ranges
			args = append(args, rargs...)
		}
		match += `)`
	}
	where, args := timeRange(q.From, q.To, []string{match}, args)
	where, args = after(c, where, args)
	// created_at + 0: sorted after the match, never read down the creation index while testing
	// each row, which a planner picks for a LIMIT when it thinks matches are many (seconds over
	// ten million orders for a text few have).
	return s.viewPage(ctx, `SELECT `+orderViewColumns+` FROM order_search WHERE `+strings.Join(where, " AND ")+
		` ORDER BY created_at + 0 DESC, order_id DESC LIMIT ?`, append(args, n+1), n)
}

// maxPhoneRunes is the longest phone: E.164's 15 digits and a plus.
const maxPhoneRunes = 16

// idPrefixRanges is the condition of the order ids that start with text, when it is digits:
// a range of ids for each length an id of that start may have, each a lookup of the primary key.
func idPrefixRanges(text string) (string, []any) {
	const maxDigits = 19 // math.MaxInt64 has 19
	if len(text) > maxDigits || text[0] == '0' || strings.Trim(text, "0123456789") != "" {
		return "", nil
	}
	p, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return "", nil
	}
	var conds []string
	var args []any
	scale := uint64(1)
	for l := len(text); l <= maxDigits; l++ {
		lo, hi := p*scale, (p+1)*scale-1 // below 10^19: no overflow in uint64
		if lo > math.MaxInt64 {
			break
		}
		conds = append(conds, `(order_id >= ? AND order_id <= ?)`)
		args = append(args, int64(lo), int64(min(hi, math.MaxInt64)))
		scale *= 10
	}
	return "(" + strings.Join(conds, " OR ") + ")", args
}

// escapeLike makes text match itself in a LIKE pattern whose escape is a backslash.
func escapeLike(text string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(text)
}

// viewPage runs a page's query (which asks for n+1 rows) and returns up to n rows and the
// cursor after them when there are more.
func (s *Store) viewPage(ctx context.Context, query string, args []any, n int) (*surge.OrderPage, error) {
	if s.dialect.OneShot != nil { // the best plan depends on the values: a user id, a pattern
		args = append([]any{s.dialect.OneShot}, args...)
	}
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, s.wrap(err, "order views")
	}
	defer rows.Close()
	page := &surge.OrderPage{Items: []surge.OrderView{}}
	for rows.Next() {
		var v surge.OrderView
		var state string
		var created, paid int64
		if err := rows.Scan(&v.ID, &v.TxnID, &v.UserID, &v.MerchantID, &v.SessionID, &v.ItemID, &v.SKUID, &v.Quantity, &v.Amount.Amount,
			&v.Amount.Currency, &state, &created, &paid, &v.Version, &v.Phone, &v.Username); err != nil {
			return nil, s.wrap(err, "order views")
		}
		v.State, v.CreatedAt = surge.OrderState(state), fromMs(created)
		if paid != 0 {
			t := fromMs(paid)
			v.PaidAt = &t
		}
		page.Items = append(page.Items, v)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(err, "order views")
	}
	if len(page.Items) > n {
		page.Items = page.Items[:n]
		last := page.Items[n-1]
		page.Next = surge.OrderCursor{CreatedAt: last.CreatedAt, ID: last.ID}.Encode()
	}
	return page, nil
}

// OrderViewDrift implements surge.OrderViewStore. It reads the order store's orders table
// (the ids and states only) beside the search copy: the three copies are written together.
func (s *Store) OrderViewDrift(ctx context.Context, afterID int64, n int) ([]int64, int64, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT o.id, o.state, COALESCE(v.state, '') FROM orders o
		LEFT JOIN order_search v ON v.order_id = o.id WHERE o.id > ? ORDER BY o.id LIMIT ?`), afterID, max(n, 1))
	if err != nil {
		return nil, 0, s.wrap(err, "order views")
	}
	defer rows.Close()
	var drift []int64
	var last int64
	for rows.Next() {
		var id int64
		var state, viewed string
		if err := rows.Scan(&id, &state, &viewed); err != nil {
			return nil, 0, s.wrap(err, "order views")
		}
		if state != viewed {
			drift = append(drift, id)
		}
		last = id
	}
	if err := rows.Err(); err != nil {
		return nil, 0, s.wrap(err, "order views")
	}
	return drift, last, nil
}
