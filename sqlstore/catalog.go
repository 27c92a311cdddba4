package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/surgecommerce/surge"
)

const spuColumns = `id, merchant_id, code, title, category_l1, category_l2, description, images, created_at, updated_at`

const skuColumns = `id, spu_id, merchant_id, code, title, price_minor, cost_minor, currency, stock, created_at, updated_at, voucher`

// CreateSPU implements surge.CatalogStore.
func (s *Store) CreateSPU(ctx context.Context, p *surge.SPU) error {
	release, err := s.write(ctx)
	if err != nil {
		return err
	}
	defer release()
	return s.insertSPU(ctx, s.db, p)
}

func (s *Store) insertSPU(ctx context.Context, q querier, p *surge.SPU) error {
	images, err := json.Marshal(nonNil(p.Images))
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, s.q(`INSERT INTO spus (`+spuColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		p.ID, p.MerchantID, p.Code, p.Title, p.CategoryL1, p.CategoryL2, p.Description, string(images),
		ms(p.CreatedAt), ms(p.UpdatedAt))
	return s.wrap(err, "spu code")
}

// SPUByID implements surge.CatalogStore.
func (s *Store) SPUByID(ctx context.Context, id int64) (*surge.SPU, error) {
	return s.spuByID(ctx, s.db, id, "")
}

// UpdateSPU implements surge.CatalogStore.
func (s *Store) UpdateSPU(ctx context.Context, id int64, change func(*surge.SPU) error) (*surge.SPU, error) {
	var p *surge.SPU
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if p, err = s.spuByID(ctx, tx, id, s.dialect.ForUpdate); err != nil {
			return err
		}
		if err := change(p); err != nil {
			return err
		}
		p.ID = id
		return s.updateSPU(ctx, tx, p)
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (s *Store) updateSPU(ctx context.Context, q querier, p *surge.SPU) error {
	images, err := json.Marshal(nonNil(p.Images))
	if err != nil {
		return err
	}
	res, err := q.ExecContext(ctx, s.q(`UPDATE spus SET code = ?, title = ?, category_l1 = ?, category_l2 = ?,
		description = ?, images = ?, updated_at = ? WHERE id = ?`),
		p.Code, p.Title, p.CategoryL1, p.CategoryL2, p.Description, string(images), ms(p.UpdatedAt), p.ID)
	return s.affectedOne(res, err, "spu code")
}

func (s *Store) spuByID(ctx context.Context, q querier, id int64, suffix string) (*surge.SPU, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT `+spuColumns+` FROM spus WHERE id = ?`+suffix), id)
	if err != nil {
		return nil, s.wrap(err, "spu")
	}
	list, err := scanSPUs(rows)
	if err != nil {
		return nil, s.wrap(err, "spu")
	}
	if len(list) == 0 {
		return nil, surge.Errorf(surge.ENOTFOUND, "spu not found")
	}
	return list[0], nil
}

// ListSPUs implements surge.CatalogStore.
func (s *Store) ListSPUs(ctx context.Context, f surge.CatalogFilter) ([]*surge.SPU, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+spuColumns+` FROM spus
		WHERE (CAST(? AS BIGINT) = 0 OR merchant_id = ?) AND id > ? ORDER BY id LIMIT ?`),
		f.MerchantID, f.MerchantID, f.AfterID, limit(f.Limit))
	if err != nil {
		return nil, s.wrap(err, "spus")
	}
	list, err := scanSPUs(rows)
	return list, s.wrap(err, "spus")
}

func scanSPUs(rows *sql.Rows) ([]*surge.SPU, error) {
	defer rows.Close()
	var list []*surge.SPU
	for rows.Next() {
		var p surge.SPU
		var images string
		var created, updated int64
		if err := rows.Scan(&p.ID, &p.MerchantID, &p.Code, &p.Title, &p.CategoryL1, &p.CategoryL2,
			&p.Description, &images, &created, &updated); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(images), &p.Images); err != nil {
			return nil, err
		}
		p.CreatedAt, p.UpdatedAt = fromMs(created), fromMs(updated)
		list = append(list, &p)
	}
	return list, rows.Err()
}

// CreateSKU implements surge.CatalogStore.
func (s *Store) CreateSKU(ctx context.Context, k *surge.SKU) error {
	return s.inTx(ctx, func(tx *sql.Tx) error { return s.insertSKU(ctx, tx, k) })
}

func (s *Store) insertSKU(ctx context.Context, tx *sql.Tx, k *surge.SKU) error {
	var owner int64
	err := tx.QueryRowContext(ctx, s.q(`SELECT merchant_id FROM spus WHERE id = ?`), k.SPUID).Scan(&owner)
	if err != nil {
		return s.wrap(err, "spu")
	}
	if owner != k.MerchantID {
		return surge.Errorf(surge.EINVALID, "the spu belongs to another merchant")
	}
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO skus (`+skuColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		k.ID, k.SPUID, k.MerchantID, k.Code, k.Title, k.Price.Amount, k.CostPrice.Amount, k.Price.Currency,
		k.Stock, ms(k.CreatedAt), ms(k.UpdatedAt), boolInt(k.Voucher))
	return s.wrap(err, "sku code")
}

// SKUByID implements surge.CatalogStore.
func (s *Store) SKUByID(ctx context.Context, id int64) (*surge.SKU, error) {
	return s.skuByID(ctx, s.db, id, "")
}

func (s *Store) skuByID(ctx context.Context, q querier, id int64, suffix string) (*surge.SKU, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT `+skuColumns+` FROM skus WHERE id = ?`+suffix), id)
	if err != nil {
		return nil, s.wrap(err, "sku")
	}
	list, err := scanSKUs(rows)
	if err != nil {
		return nil, s.wrap(err, "sku")
	}
	if len(list) == 0 {
		return nil, surge.Errorf(surge.ENOTFOUND, "sku not found")
	}
	return list[0], nil
}

// UpdateSKU implements surge.CatalogStore.
func (s *Store) UpdateSKU(ctx context.Context, id int64, now time.Time, change func(*surge.SKU) error) (*surge.SKU, error) {
	var k *surge.SKU
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		old, err := s.skuByID(ctx, tx, id, s.dialect.ForUpdate)
		if err != nil {
			return err
		}
		k = &surge.SKU{}
		*k = *old
		cost := *old.CostPrice
		k.CostPrice = &cost
		if err := change(k); err != nil {
			return err
		}
		k.ID, k.SPUID, k.MerchantID = id, old.SPUID, old.MerchantID
		return s.updateSKU(ctx, tx, old, k, now)
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// updateSKU writes k over old, refusing what would break the allotments of sessions that have
// not ended.
func (s *Store) updateSKU(ctx context.Context, tx *sql.Tx, old, k *surge.SKU, now time.Time) error {
	allotted, err := s.allotted(ctx, tx, k.ID, 0, now)
	if err != nil {
		return err
	}
	if k.Stock < allotted {
		return surge.Errorf(surge.ECONFLICT, "stock %d is below the %d units allotted to sale sessions", k.Stock, allotted)
	}
	if allotted > 0 && k.Price.Currency != old.Price.Currency {
		return surge.Errorf(surge.ECONFLICT, "the currency cannot change while sale sessions allot this sku")
	}
	res, err := tx.ExecContext(ctx, s.q(`UPDATE skus SET code = ?, title = ?, price_minor = ?, cost_minor = ?,
		currency = ?, stock = ?, updated_at = ?, voucher = ? WHERE id = ?`),
		k.Code, k.Title, k.Price.Amount, k.CostPrice.Amount, k.Price.Currency, k.Stock, ms(k.UpdatedAt), boolInt(k.Voucher), k.ID)
	return s.affectedOne(res, err, "sku")
}

// allotted sums what sessions that have not ended allot of a SKU, leaving out one item.
func (s *Store) allotted(ctx context.Context, q querier, skuID, exceptItem int64, now time.Time) (int64, error) {
	var n int64
	err := q.QueryRowContext(ctx, s.q(`SELECT COALESCE(SUM(si.allotted), 0) FROM session_items si
		JOIN sessions se ON se.id = si.session_id
		WHERE si.sku_id = ? AND se.end_at > ? AND si.id <> ?`), skuID, ms(now), exceptItem).Scan(&n)
	return n, s.wrap(err, "allotments")
}

// ListSKUs implements surge.CatalogStore.
func (s *Store) ListSKUs(ctx context.Context, f surge.CatalogFilter) ([]*surge.SKU, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+skuColumns+` FROM skus
		WHERE (CAST(? AS BIGINT) = 0 OR merchant_id = ?) AND (CAST(? AS BIGINT) = 0 OR spu_id = ?) AND id > ? ORDER BY id LIMIT ?`),
		f.MerchantID, f.MerchantID, f.SPUID, f.SPUID, f.AfterID, limit(f.Limit))
	if err != nil {
		return nil, s.wrap(err, "skus")
	}
	list, err := scanSKUs(rows)
	return list, s.wrap(err, "skus")
}

func scanSKUs(rows *sql.Rows) ([]*surge.SKU, error) {
	defer rows.Close()
	var list []*surge.SKU
	for rows.Next() {
		var k surge.SKU
		var cost int64
		var created, updated, voucher int64
		if err := rows.Scan(&k.ID, &k.SPUID, &k.MerchantID, &k.Code, &k.Title, &k.Price.Amount, &cost,
			&k.Price.Currency, &k.Stock, &created, &updated, &voucher); err != nil {
			return nil, err
		}
		k.Voucher = voucher != 0
		k.CostPrice = &surge.Money{Amount: cost, Currency: k.Price.Currency}
		k.CreatedAt, k.UpdatedAt = fromMs(created), fromMs(updated)
		list = append(list, &k)
	}
	return list, rows.Err()
}

func (s *Store) affectedOne(res sql.Result, err error, what string) error {
	if err != nil {
		return s.wrap(err, what)
	}
	if n, err := res.RowsAffected(); err != nil {
		return s.wrap(err, what)
	} else if n == 0 {
		return surge.Errorf(surge.ENOTFOUND, "%s not found", what)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
