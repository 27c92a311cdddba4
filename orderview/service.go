package orderview

import (
	"context"

	"github.com/surgecommerce/surge"
)

// Service answers the three readers of the order views, each seeing what its role may.
type Service struct {
	views surge.OrderViewStore
}

// NewService returns the readers' service over the views.
func NewService(views surge.OrderViewStore) *Service { return &Service{views: views} }

// Mine returns a page of the signed-in shopper's orders, newest first. EINVALID for a bad
// cursor.
func (s *Service) Mine(ctx context.Context, a surge.Actor, cursor string, limit int) (*surge.OrderPage, error) {
	c, err := surge.ParseOrderCursor(cursor)
	if err != nil {
		return nil, err
	}
	return s.views.ShopperOrders(ctx, a.UserID, c, limit)
}

// Merchant returns a page of a shop's orders that pass f, newest first. A merchant sees its
// own shop (merchant is 0 or its own id), staff any shop they name; anyone else EFORBIDDEN.
// EINVALID for a bad cursor or filter.
func (s *Service) Merchant(ctx context.Context, a surge.Actor, merchant int64, f surge.OrderFilter, cursor string, limit int) (*surge.OrderPage, error) {
	switch {
	case a.Role == surge.RoleMerchant && (merchant == 0 || merchant == a.UserID):
		merchant = a.UserID
	case a.Role == surge.RoleMerchant:
		return nil, surge.Errorf(surge.EFORBIDDEN, "a merchant sees its own shop's orders")
	case a.Role.Staff() && merchant > 0:
	case a.Role.Staff():
		return nil, surge.Errorf(surge.EINVALID, "merchant must name the shop")
	default:
		return nil, surge.Errorf(surge.EFORBIDDEN, "a shop's orders are for its merchant and staff")
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	c, err := surge.ParseOrderCursor(cursor)
	if err != nil {
		return nil, err
	}
	return s.views.MerchantOrders(ctx, merchant, f, c, limit)
}

// Search returns a page of the orders q finds, newest first: support staff (operators and
// admins) only, EFORBIDDEN otherwise. EINVALID for a bad cursor or search.
func (s *Service) Search(ctx context.Context, a surge.Actor, q surge.OrderSearch, cursor string, limit int) (*surge.OrderPage, error) {
	if !a.Role.Staff() {
		return nil, surge.Errorf(surge.EFORBIDDEN, "order search is for support staff")
	}
	if err := q.Validate(); err != nil {
		return nil, err
	}
	c, err := surge.ParseOrderCursor(cursor)
	if err != nil {
		return nil, err
	}
	return s.views.SearchOrders(ctx, q, c, limit)
}
