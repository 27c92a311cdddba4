package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"time"

	"github.com/surgecommerce/surge"
)

// Import implements surge.CatalogStore. It runs in one transaction: rows are written as they
// are read (so memory stays flat however long the file), and the transaction is rolled back if
// any line fails. After the first failing line it only parses and validates the rest, so the
// report lists every malformed line, not just the first.
func (s *Store) Import(ctx context.Context, merchantID int64, src surge.ImportSource, now time.Time) (*surge.ImportReport, error) {
	rep := &surge.ImportReport{Errors: []surge.ImportLineError{}}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for {
			row, err := src.Next()
			if err == io.EOF {
				break
			}
			rep.Lines++
			if err == nil && rep.Lines > surge.MaxImportLines {
				err = surge.Errorf(surge.ETOOLARGE, "an import holds at most %d lines", surge.MaxImportLines)
			}
			if err == nil && len(rep.Errors) == 0 && rep.ErrorsOmitted == 0 {
				err = s.importRow(ctx, tx, merchantID, row, now, rep)
			} else if err == nil {
				_, _, err = importEntities(merchantID, row, now)
			}
			if err != nil {
				var de *surge.Error
				if !errors.As(err, &de) {
					return err // a backend failure, not a bad line
				}
				addLineError(rep, row.Line, de)
				if de.Code == surge.ETOOLARGE {
					break
				}
			}
		}
		if len(rep.Errors) > 0 {
			return errRollback
		}
		return nil
	})
	if err != nil && err != errRollback {
		return nil, s.wrap(err, "import")
	}
	rep.Applied = err == nil
	if !rep.Applied {
		rep.SPUsCreated, rep.SPUsUpdated, rep.SKUsCreated, rep.SKUsUpdated = 0, 0, 0, 0
	}
	return rep, nil
}

var errRollback = errors.New("rollback")

func addLineError(rep *surge.ImportReport, line int, e *surge.Error) {
	if len(rep.Errors) >= surge.MaxImportErrors {
		rep.ErrorsOmitted++
		return
	}
	rep.Errors = append(rep.Errors, surge.ImportLineError{Line: line, Code: e.Code, Message: e.Message})
}

// importEntities builds and validates the SPU and SKU a row describes.
func importEntities(merchantID int64, r surge.ImportRow, now time.Time) (*surge.SPU, *surge.SKU, error) {
	p := &surge.SPU{MerchantID: merchantID, Code: r.SPUCode, Title: r.SPUTitle, CategoryL1: r.CategoryL1,
		CategoryL2: r.CategoryL2, Description: r.Description, Images: []string{}, CreatedAt: now, UpdatedAt: now}
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	k := &surge.SKU{SPUID: 1, MerchantID: merchantID, Code: r.SKUCode, Title: r.SKUTitle,
		Price:     surge.Money{Amount: r.PriceMinor, Currency: r.Currency},
		CostPrice: &surge.Money{Amount: r.CostMinor, Currency: r.Currency},
		Stock:     r.Stock, CreatedAt: now, UpdatedAt: now}
	if err := k.Validate(); err != nil {
		return nil, nil, err
	}
	return p, k, nil
}

func (s *Store) importRow(ctx context.Context, tx *sql.Tx, merchantID int64, r surge.ImportRow, now time.Time, rep *surge.ImportReport) error {
	p, k, err := importEntities(merchantID, r, now)
	if err != nil {
		return err
	}
	var created int64
	err = tx.QueryRowContext(ctx, s.q(`SELECT id, created_at FROM spus WHERE merchant_id = ? AND code = ?`), merchantID, p.Code).
		Scan(&p.ID, &created)
	switch {
	case err == sql.ErrNoRows:
		if p.ID, err = s.ids(); err != nil {
			return err
		}
		if err := s.insertSPU(ctx, tx, p); err != nil {
			return err
		}
		rep.SPUsCreated++
	case err != nil:
		return err
	default:
		if err := s.updateSPU(ctx, tx, p); err != nil {
			return err
		}
		rep.SPUsUpdated++
	}
	k.SPUID = p.ID

	var spuOfSKU int64
	err = tx.QueryRowContext(ctx, s.q(`SELECT id, spu_id FROM skus WHERE merchant_id = ? AND code = ?`), merchantID, k.Code).
		Scan(&k.ID, &spuOfSKU)
	switch {
	case err == sql.ErrNoRows:
		if k.ID, err = s.ids(); err != nil {
			return err
		}
		if err := s.insertSKU(ctx, tx, k); err != nil {
			return err
		}
		rep.SKUsCreated++
		return nil
	case err != nil:
		return err
	case spuOfSKU != p.ID:
		return surge.Errorf(surge.ECONFLICT, "sku %s belongs to another spu", k.Code)
	}
	if err := s.updateSKU(ctx, tx, k, now); err != nil {
		return err
	}
	rep.SKUsUpdated++
	return nil
}
