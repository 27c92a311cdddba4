package reconcile

import (
	"context"
	"time"

	"github.com/surgecommerce/surge"
)

// Service answers what reconciliation found, to staff.
type Service struct {
	store surge.ReconcileStore
	now   func() time.Time
}

// NewService returns the reconciliation's service; now may be nil for the wall clock.
func NewService(store surge.ReconcileStore, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, now: now}
}

// staff refuses anyone but operators and admins.
func staff(a surge.Actor) error {
	if !a.Role.Staff() {
		return surge.Errorf(surge.EFORBIDDEN, "reconciliation is for operators")
	}
	return nil
}

// Mismatches lists the real-time mismatches raised since (the last 24 hours when zero), newest
// first, of one kind or all.
func (s *Service) Mismatches(ctx context.Context, a surge.Actor, since time.Time, kind string, limit int) ([]surge.Mismatch, error) {
	if err := staff(a); err != nil {
		return nil, err
	}
	if kind != "" && !known(kind) {
		return nil, surge.Errorf(surge.EINVALID, "kind must be one of %v", kinds)
	}
	if since.IsZero() {
		since = s.now().Add(-24 * time.Hour)
	}
	return s.store.Mismatches(ctx, since, kind, limit)
}

func known(kind string) bool {
	for _, k := range kinds {
		if k == kind {
			return true
		}
	}
	return false
}
