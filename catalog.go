package surge

import (
	"context"
	"time"
)

// SPU is a standard product unit: the product as a shopper thinks of it ("phone X").
type SPU struct {
	ID          int64     `json:"id,string"`
	MerchantID  int64     `json:"merchant_id,string"`
	Code        string    `json:"code"`
	Title       string    `json:"title"`
	CategoryL1  string    `json:"category_l1"`
	CategoryL2  string    `json:"category_l2"`
	Description string    `json:"description,omitempty"`
	Images      []string  `json:"images"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Validate checks the SPU's fields.
func (p *SPU) Validate() error {
	if p.MerchantID <= 0 {
		return Errorf(EINVALID, "merchant_id is required")
	}
	if err := ValidateCode("code", p.Code); err != nil {
		return err
	}
	if err := ValidateText("title", p.Title, 1, MaxNameRunes); err != nil {
		return err
	}
	if err := ValidateText("category_l1", p.CategoryL1, 1, MaxNameRunes); err != nil {
		return err
	}
	if err := ValidateText("category_l2", p.CategoryL2, 0, MaxNameRunes); err != nil {
		return err
	}
	if err := ValidateText("description", p.Description, 0, MaxDescriptionRunes); err != nil {
		return err
	}
	if len(p.Images) > MaxImages {
		return Errorf(EINVALID, "at most %d images", MaxImages)
	}
	for _, u := range p.Images {
		if err := ValidateText("images", u, 1, MaxURLRunes); err != nil {
			return err
		}
	}
	return nil
}

// SKU is a stock keeping unit: one sellable variant of an SPU ("phone X, 256 GB, black").
type SKU struct {
	ID         int64  `json:"id,string"`
	SPUID      int64  `json:"spu_id,string"`
	MerchantID int64  `json:"merchant_id,string"`
	Code       string `json:"code"`
	Title      string `json:"title"`
	Price      Money  `json:"price"`
	CostPrice  *Money `json:"cost_price,omitempty"` // nil when the caller may not see it
	Stock      int64  `json:"stock"`
	// Voucher: a unit is a service used at the merchant's premises (a meal, a ticket), not goods
	// shipped: paying for it issues a voucher code per unit, redeemed at the merchant's till.
	Voucher   bool      `json:"voucher,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate checks the SKU's fields.
func (s *SKU) Validate() error {
	if s.SPUID <= 0 {
		return Errorf(EINVALID, "spu_id is required")
	}
	if err := ValidateCode("code", s.Code); err != nil {
		return err
	}
	if err := ValidateText("title", s.Title, 1, MaxNameRunes); err != nil {
		return err
	}
	if err := s.Price.Validate("price"); err != nil {
		return err
	}
	if s.CostPrice == nil {
		return Errorf(EINVALID, "cost_price is required")
	}
	if err := s.CostPrice.Validate("cost_price"); err != nil {
		return err
	}
	if s.CostPrice.Currency != s.Price.Currency {
		return Errorf(EINVALID, "price and cost_price must be in the same currency")
	}
	if s.Stock < 0 || s.Stock > MaxStock {
		return Errorf(EINVALID, "stock must be between 0 and %d", int64(MaxStock))
	}
	return nil
}

// ValidateCode checks a merchant's own product code: 1 to MaxCodeRunes of letters, digits and
// "-_.:/".
func ValidateCode(field, s string) error {
	if s == "" {
		return Errorf(EINVALID, "%s is required", field)
	}
	if len(s) > MaxCodeRunes {
		return Errorf(EINVALID, "%s must be at most %d characters", field, MaxCodeRunes)
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == ':' || c == '/'
		if !ok {
			return Errorf(EINVALID, "%s may hold only letters, digits and -_.:/", field)
		}
	}
	return nil
}

// CatalogFilter selects a page of products, in id order after AfterID.
type CatalogFilter struct {
	MerchantID int64 // 0: all merchants
	SPUID      int64 // SKUs only; 0: all
	AfterID    int64
	Limit      int
}

// ImportRow is one line of a catalog import: an SKU with the SPU it belongs to, both named by the
// merchant's own codes so that importing the same file twice updates rather than duplicates.
// Description and Images are optional: when absent, an existing SPU keeps its own.
type ImportRow struct {
	Line        int       `json:"-"`
	SPUCode     string    `json:"spu_code"`
	SPUTitle    string    `json:"spu_title"`
	CategoryL1  string    `json:"category_l1"`
	CategoryL2  string    `json:"category_l2"`
	Description *string   `json:"description"`
	Images      *[]string `json:"images"`
	SKUCode     string    `json:"sku_code"`
	SKUTitle    string    `json:"sku_title"`
	PriceMinor  int64     `json:"price_minor"`
	CostMinor   int64     `json:"cost_minor"`
	Currency    string    `json:"currency"`
	Stock       int64     `json:"stock"`
}

// Entities builds and validates the SPU and SKU a row describes for a merchant. The SKU's SPUID
// is left for the store to fill.
func (r *ImportRow) Entities(merchantID int64, now time.Time) (*SPU, *SKU, error) {
	p := &SPU{MerchantID: merchantID, Code: r.SPUCode, Title: r.SPUTitle, CategoryL1: r.CategoryL1,
		CategoryL2: r.CategoryL2, Images: []string{}, CreatedAt: now, UpdatedAt: now}
	if r.Description != nil {
		p.Description = *r.Description
	}
	if r.Images != nil {
		p.Images = *r.Images
	}
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	k := &SKU{SPUID: 1, MerchantID: merchantID, Code: r.SKUCode, Title: r.SKUTitle,
		Price:     Money{Amount: r.PriceMinor, Currency: r.Currency},
		CostPrice: &Money{Amount: r.CostMinor, Currency: r.Currency},
		Stock:     r.Stock, CreatedAt: now, UpdatedAt: now}
	if err := k.Validate(); err != nil {
		return nil, nil, err
	}
	k.SPUID = 0
	return p, k, nil
}

// ImportLineError says what is wrong with one line of an import file.
type ImportLineError struct {
	Line    int    `json:"line"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ImportReport is the outcome of an import. The import is all-or-nothing: Applied is true only
// when every line was valid and all were written.
type ImportReport struct {
	Applied       bool              `json:"applied"`
	Lines         int               `json:"lines"`
	SPUsCreated   int               `json:"spus_created"`
	SPUsUpdated   int               `json:"spus_updated"`
	SKUsCreated   int               `json:"skus_created"`
	SKUsUpdated   int               `json:"skus_updated"`
	Errors        []ImportLineError `json:"errors"`
	ErrorsOmitted int               `json:"errors_omitted"`
}

// AddError records a line error, in detail for the first MaxImportErrors.
func (r *ImportReport) AddError(line int, err error) {
	if len(r.Errors) >= MaxImportErrors {
		r.ErrorsOmitted++
		return
	}
	r.Errors = append(r.Errors, ImportLineError{Line: line, Code: ErrorCode(err), Message: ErrorMessage(err)})
}

// Failed reports whether any line failed.
func (r *ImportReport) Failed() bool { return len(r.Errors) > 0 || r.ErrorsOmitted > 0 }

// Import limits.
const (
	MaxImportLines       = 100_000  // lines in one import file
	MaxImportErrors      = 100      // line errors reported in detail; the rest are counted
	MaxImportBodyBytes   = 64 << 20 // one import file
	MaxImportLineBytes   = 64 << 10 // one line (or CSV record) of an import file
	MaxImportColumnCount = 16       // columns in a CSV import
)

// CatalogStore keeps SPUs and SKUs.
type CatalogStore interface {
	// CreateSPU stores p with p.ID set. Returns ECONFLICT if the merchant already has the code.
	CreateSPU(ctx context.Context, p *SPU) error
	// SPUByID returns ENOTFOUND if there is no such SPU.
	SPUByID(ctx context.Context, id int64) (*SPU, error)
	// UpdateSPU changes an SPU in one transaction: it reads the SPU with a write lock, lets
	// change edit it (an error from change is returned as is and nothing is written), and
	// writes it back. Returns ENOTFOUND, or ECONFLICT if the new code is taken.
	UpdateSPU(ctx context.Context, id int64, change func(*SPU) error) (*SPU, error)
	// ListSPUs returns a page of SPUs (never an error code but EUNAVAILABLE).
	ListSPUs(ctx context.Context, f CatalogFilter) ([]*SPU, error)

	// CreateSKU stores s with s.ID set. Returns ENOTFOUND if the SPU does not exist, EINVALID if
	// it belongs to another merchant, ECONFLICT if the merchant already has the code.
	CreateSKU(ctx context.Context, s *SKU) error
	// SKUByID returns ENOTFOUND if there is no such SKU. CostPrice is always filled.
	SKUByID(ctx context.Context, id int64) (*SKU, error)
	// UpdateSKU changes an SKU in one transaction, like UpdateSPU. Returns ENOTFOUND, ECONFLICT
	// (code taken), or ECONFLICT if sale sessions that have not ended (judged at now) allot the
	// SKU and the new stock is below their allotments or the currency changed.
	UpdateSKU(ctx context.Context, id int64, now time.Time, change func(*SKU) error) (*SKU, error)
	// ListSKUs returns a page of SKUs.
	ListSKUs(ctx context.Context, f CatalogFilter) ([]*SKU, error)

	// Import writes valid rows (see ImportRow.Entities) for one merchant, all or nothing, in
	// order: a later row for the same code wins. If a row conflicts with what is stored (an SKU
	// code under another SPU, stock below allotments), nothing is written and the report names
	// the line. An error is returned only when the backend failed.
	Import(ctx context.Context, merchantID int64, rows []ImportRow, now time.Time) (*ImportReport, error)
}
