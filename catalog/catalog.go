// Package catalog is product management: merchants keep their own SPUs and SKUs, operators and
// admins keep anyone's, and files of products import in one go.
package catalog

import (
	"context"
	"errors"
	"io"
	"sort"
	"time"

	"github.com/surgecommerce/surge"
)

// Service applies the catalog's access rules over a store.
type Service struct {
	store surge.CatalogStore
	users surge.UserStore
	ids   func() (int64, error)
	now   func() time.Time
}

// New returns a catalog service. now may be nil for the wall clock.
func New(store surge.CatalogStore, users surge.UserStore, ids func() (int64, error), now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, users: users, ids: ids, now: now}
}

// SPUInput creates an SPU. Staff name the merchant; a merchant's own id is used for merchants.
type SPUInput struct {
	MerchantID  int64    `json:"merchant_id,string,omitempty"`
	Code        string   `json:"code"`
	Title       string   `json:"title"`
	CategoryL1  string   `json:"category_l1"`
	CategoryL2  string   `json:"category_l2"`
	Description string   `json:"description"`
	Images      []string `json:"images"`
}

// SPUPatch changes the fields it sets.
type SPUPatch struct {
	Code        *string   `json:"code"`
	Title       *string   `json:"title"`
	CategoryL1  *string   `json:"category_l1"`
	CategoryL2  *string   `json:"category_l2"`
	Description *string   `json:"description"`
	Images      *[]string `json:"images"`
}

// SKUInput creates an SKU under an SPU; it belongs to the SPU's merchant.
type SKUInput struct {
	SPUID     int64       `json:"spu_id,string"`
	Code      string      `json:"code"`
	Title     string      `json:"title"`
	Price     surge.Money `json:"price"`
	CostPrice surge.Money `json:"cost_price"`
	Stock     int64       `json:"stock"`
	Voucher   bool        `json:"voucher,omitempty"` // a service used at the merchant's premises: paying issues voucher codes
}

// SKUPatch changes the fields it sets.
type SKUPatch struct {
	Code      *string      `json:"code"`
	Title     *string      `json:"title"`
	Price     *surge.Money `json:"price"`
	CostPrice *surge.Money `json:"cost_price"`
	Stock     *int64       `json:"stock"`
	Voucher   *bool        `json:"voucher"`
}

// merchantFor decides which merchant a write is for: merchants write only for themselves,
// staff for the merchant they name, shoppers not at all.
func (s *Service) merchantFor(ctx context.Context, a surge.Actor, named int64) (int64, error) {
	switch {
	case a.Role == surge.RoleMerchant:
		if named != 0 && named != a.UserID {
			return 0, surge.Errorf(surge.EFORBIDDEN, "merchants manage only their own products")
		}
		return a.UserID, nil
	case !a.Role.Staff():
		return 0, surge.Errorf(surge.EFORBIDDEN, "only merchants, operators and admins manage products")
	case named <= 0:
		return 0, surge.Errorf(surge.EINVALID, "merchant_id is required")
	}
	u, err := s.users.UserByID(ctx, named)
	if surge.ErrorCode(err) == surge.ENOTFOUND || err == nil && u.Role != surge.RoleMerchant {
		return 0, surge.Errorf(surge.EINVALID, "merchant_id %d is not a merchant", named)
	}
	return named, err
}

// visible returns ENOTFOUND for another merchant's product (not revealing that it exists) and
// EFORBIDDEN for shoppers.
func visible(a surge.Actor, merchantID int64) error {
	switch {
	case a.Role == surge.RoleMerchant && merchantID != a.UserID:
		return surge.Errorf(surge.ENOTFOUND, "product not found")
	case a.Role != surge.RoleMerchant && !a.Role.Staff():
		return surge.Errorf(surge.EFORBIDDEN, "only merchants, operators and admins manage products")
	}
	return nil
}

// listFilter scopes a list to the merchant's own products.
func listFilter(a surge.Actor, f surge.CatalogFilter) (surge.CatalogFilter, error) {
	if err := visible(a, a.MerchantID()); err != nil {
		return f, err
	}
	if a.Role == surge.RoleMerchant {
		f.MerchantID = a.UserID
	}
	return f, nil
}

// CreateSPU creates an SPU.
func (s *Service) CreateSPU(ctx context.Context, a surge.Actor, in SPUInput) (*surge.SPU, error) {
	merchant, err := s.merchantFor(ctx, a, in.MerchantID)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	p := &surge.SPU{MerchantID: merchant, Code: in.Code, Title: in.Title, CategoryL1: in.CategoryL1,
		CategoryL2: in.CategoryL2, Description: in.Description, Images: in.Images, CreatedAt: now, UpdatedAt: now}
	if p.Images == nil {
		p.Images = []string{}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.ID, err = s.ids(); err != nil {
		return nil, err
	}
	return p, s.store.CreateSPU(ctx, p)
}

// SPU returns one SPU the actor may see.
func (s *Service) SPU(ctx context.Context, a surge.Actor, id int64) (*surge.SPU, error) {
	p, err := s.store.SPUByID(ctx, id)
	if err != nil {
		return nil, err
	}
	return p, visible(a, p.MerchantID)
}

// UpdateSPU applies a patch to an SPU the actor may change, atomically.
func (s *Service) UpdateSPU(ctx context.Context, a surge.Actor, id int64, in SPUPatch) (*surge.SPU, error) {
	return s.store.UpdateSPU(ctx, id, func(p *surge.SPU) error {
		if err := visible(a, p.MerchantID); err != nil {
			return err
		}
		set(&p.Code, in.Code)
		set(&p.Title, in.Title)
		set(&p.CategoryL1, in.CategoryL1)
		set(&p.CategoryL2, in.CategoryL2)
		set(&p.Description, in.Description)
		set(&p.Images, in.Images)
		if p.Images == nil {
			p.Images = []string{}
		}
		p.UpdatedAt = s.now().UTC()
		return p.Validate()
	})
}

// SPUs lists SPUs the actor may see.
func (s *Service) SPUs(ctx context.Context, a surge.Actor, f surge.CatalogFilter) ([]*surge.SPU, error) {
	f, err := listFilter(a, f)
	if err != nil {
		return nil, err
	}
	return s.store.ListSPUs(ctx, f)
}

// CreateSKU creates an SKU under an SPU the actor may change.
func (s *Service) CreateSKU(ctx context.Context, a surge.Actor, in SKUInput) (*surge.SKU, error) {
	if in.SPUID <= 0 {
		return nil, surge.Errorf(surge.EINVALID, "spu_id is required")
	}
	p, err := s.SPU(ctx, a, in.SPUID)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	cost := in.CostPrice
	k := &surge.SKU{SPUID: p.ID, MerchantID: p.MerchantID, Code: in.Code, Title: in.Title, Price: in.Price,
		CostPrice: &cost, Stock: in.Stock, Voucher: in.Voucher, CreatedAt: now, UpdatedAt: now}
	if err := k.Validate(); err != nil {
		return nil, err
	}
	if k.ID, err = s.ids(); err != nil {
		return nil, err
	}
	return k, s.store.CreateSKU(ctx, k)
}

// SKU returns one SKU the actor may see.
func (s *Service) SKU(ctx context.Context, a surge.Actor, id int64) (*surge.SKU, error) {
	k, err := s.store.SKUByID(ctx, id)
	if err != nil {
		return nil, err
	}
	return k, visible(a, k.MerchantID)
}

// UpdateSKU applies a patch to an SKU the actor may change, atomically. Stock may not drop below
// what sale sessions that have not ended allotted (ECONFLICT).
func (s *Service) UpdateSKU(ctx context.Context, a surge.Actor, id int64, in SKUPatch) (*surge.SKU, error) {
	now := s.now()
	return s.store.UpdateSKU(ctx, id, now, func(k *surge.SKU) error {
		if err := visible(a, k.MerchantID); err != nil {
			return err
		}
		set(&k.Code, in.Code)
		set(&k.Title, in.Title)
		set(&k.Price, in.Price)
		set(&k.Stock, in.Stock)
		set(&k.Voucher, in.Voucher)
		if in.CostPrice != nil {
			k.CostPrice = in.CostPrice
		}
		k.UpdatedAt = now.UTC()
		return k.Validate()
	})
}

// SKUs lists SKUs the actor may see.
func (s *Service) SKUs(ctx context.Context, a surge.Actor, f surge.CatalogFilter) ([]*surge.SKU, error) {
	f, err := listFilter(a, f)
	if err != nil {
		return nil, err
	}
	return s.store.ListSKUs(ctx, f)
}

// Source yields the rows of an import file one at a time. Next returns io.EOF after the last
// row, and a domain error (with the line in the returned row) for a line it could not parse.
type Source interface {
	Next() (surge.ImportRow, error)
}

// Import applies an import file for a merchant, all or nothing. The whole file is read and
// validated before the database is touched, so a slow upload holds no lock and every bad line
// is reported at once. Rows are written ordered by SPU and SKU code (the same lock order for
// every import), keeping file order among rows of one code so the last one wins.
func (s *Service) Import(ctx context.Context, a surge.Actor, merchantID int64, src Source) (*surge.ImportReport, error) {
	merchant, err := s.merchantFor(ctx, a, merchantID)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	rep := &surge.ImportReport{Errors: []surge.ImportLineError{}}
	var rows []surge.ImportRow
	for {
		row, err := src.Next()
		if err == io.EOF {
			break
		}
		rep.Lines++
		var de *surge.Error
		switch {
		case err != nil && !errors.As(err, &de):
			return nil, err // the upload broke off: nothing to report on
		case err != nil:
			rep.AddError(row.Line, err)
			if de.Code == surge.ETOOLARGE {
				return rep, nil
			}
			continue
		case rep.Lines > surge.MaxImportLines:
			rep.AddError(row.Line, surge.Errorf(surge.ETOOLARGE, "an import holds at most %d lines", surge.MaxImportLines))
			return rep, nil
		}
		if _, _, err := row.Entities(merchant, now); err != nil {
			rep.AddError(row.Line, err)
			continue
		}
		if !rep.Failed() {
			rows = append(rows, row)
		}
	}
	if rep.Failed() {
		return rep, nil
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].SPUCode != rows[j].SPUCode {
			return rows[i].SPUCode < rows[j].SPUCode
		}
		return rows[i].SKUCode < rows[j].SKUCode
	})
	out, err := s.store.Import(ctx, merchant, rows, now)
	if err != nil {
		return nil, err
	}
	out.Lines = rep.Lines
	return out, nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
