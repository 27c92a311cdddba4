package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/surgecommerce/surge"
)

// Import implements surge.CatalogStore: one transaction over rows already parsed and validated,
// so a slow upload never holds the write lock; the first conflicting row rolls everything back.
func (s *Store) Import(ctx context.Context, merchantID int64, rows []surge.ImportRow, now time.Time) (*surge.ImportReport, error) {
	rep := &surge.ImportReport{Lines: len(rows), Errors: []surge.ImportLineError{}}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for i := range rows {
			err := s.importRow(ctx, tx, merchantID, &rows[i], now, rep)
			var de *surge.Error
			if errors.As(err, &de) && de.Code != surge.EUNAVAILABLE {
				rep.AddError(rows[i].Line, de)
				return errRollback
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errRollback) {
		return nil, err
	}
	rep.Applied = err == nil
	if !rep.Applied {
		rep.SPUsCreated, rep.SPUsUpdated, rep.SKUsCreated, rep.SKUsUpdated = 0, 0, 0, 0
	}
	return rep, nil
}

var errRollback = errors.New("rollback")

func (s *Store) importRow(ctx context.Context, tx *sql.Tx, merchantID int64, r *surge.ImportRow, now time.Time, rep *surge.ImportReport) error {
	p, k, err := r.Entities(merchantID, now)
	if err != nil {
		return err
	}
	var spuID int64
	err = tx.QueryRowContext(ctx, s.q(`SELECT id FROM spus WHERE merchant_id = ? AND code = ?`+s.dialect.ForUpdate),
		merchantID, p.Code).Scan(&spuID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if p.ID, err = s.ids(); err != nil {
			return err
		}
		if err := s.insertSPU(ctx, tx, p); err != nil {
			return err
		}
		rep.SPUsCreated++
	case err != nil:
		return s.wrap(err, "spu")
	default:
		old, err := s.spuByID(ctx, tx, spuID, "")
		if err != nil {
			return err
		}
		old.Title, old.CategoryL1, old.CategoryL2, old.UpdatedAt = p.Title, p.CategoryL1, p.CategoryL2, now
		if r.Description != nil {
			old.Description = *r.Description
		}
		if r.Images != nil {
			old.Images = *r.Images
		}
		if err := s.updateSPU(ctx, tx, old); err != nil {
			return err
		}
		p = old
		rep.SPUsUpdated++
	}
	k.SPUID = p.ID

	var skuID int64
	err = tx.QueryRowContext(ctx, s.q(`SELECT id FROM skus WHERE merchant_id = ? AND code = ?`), merchantID, k.Code).Scan(&skuID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if k.ID, err = s.ids(); err != nil {
			return err
		}
		if err := s.insertSKU(ctx, tx, k); err != nil {
			return err
		}
		rep.SKUsCreated++
		return nil
	case err != nil:
		return s.wrap(err, "sku")
	}
	old, err := s.skuByID(ctx, tx, skuID, s.dialect.ForUpdate)
	if err != nil {
		return err
	}
	if old.SPUID != p.ID {
		return surge.Errorf(surge.ECONFLICT, "sku %s belongs to another spu", k.Code)
	}
	k.ID, k.CreatedAt = skuID, old.CreatedAt
	if err := s.updateSKU(ctx, tx, old, k, now); err != nil {
		return err
	}
	rep.SKUsUpdated++
	return nil
}
