package surge

import (
	"context"
	"encoding/json"
	"time"
)

// The states of a promotion activity: a draft is edited freely and prices nothing; a live
// activity prices carts within its time window and its rule no longer changes (it is frozen:
// orders were priced by it); an offline one prices nothing more, and the orders that hold it
// keep the price they were given.
const (
	ActivityDraft   = "draft"
	ActivityLive    = "live"
	ActivityOffline = "offline"
)

// Activity is a promotion the platform (MerchantID 0) or a merchant runs: what it takes off
// (Rule, package promo's Rule), for which lines, from StartsAt until EndsAt, at most Cap times
// (orders; 0: no cap) and at most Budget minor units in all (0: no budget). Used and Spent
// count what locked and paid orders hold of it. Version counts its saved changes.
type Activity struct {
	ID         int64           `json:"id,string"`
	MerchantID int64           `json:"merchant_id,string"`
	Name       string          `json:"name"`
	Rule       json.RawMessage `json:"rule"`
	Priority   int64           `json:"priority"`
	Cap        int64           `json:"cap"`
	Budget     int64           `json:"budget"`
	Used       int64           `json:"used"`
	Spent      int64           `json:"spent"`
	StartsAt   time.Time       `json:"starts_at"`
	EndsAt     time.Time       `json:"ends_at"`
	State      string          `json:"state"`
	Version    int64           `json:"version"`
	CreatedBy  int64           `json:"created_by,string"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

// MaxLiveActivities bounds the activities live at once: every node holds them in memory.
const MaxLiveActivities = 200_000

// ActivityTaken is what one activity takes off an order (Amount, minor units; 0 for a rebate,
// which gives a coupon of RebateBatch after payment), at the Version it was priced at. Once
// says the activity is given once per shopper (new shoppers, first order in a shop).
type ActivityTaken struct {
	Activity    int64  `json:"activity_id,string"`
	Version     int64  `json:"version"`
	Kind        string `json:"kind"`
	Label       string `json:"label"`
	Amount      int64  `json:"amount"`
	Once        bool   `json:"once,omitempty"`
	RebateBatch int64  `json:"rebate_batch_id,string,omitempty"`
}

// ActivityShare is what one activity takes off one line.
type ActivityShare struct {
	Activity int64  `json:"activity_id,string"`
	Label    string `json:"label"`
	Amount   int64  `json:"amount"`
}

// ActivityVersion is an activity as one saved change left it, and who saved it.
type ActivityVersion struct {
	Activity *Activity `json:"activity"`
	By       int64     `json:"by,string"`
	At       time.Time `json:"at"`
}

// ActivityStore keeps promotion activities, their saved versions and what orders hold of them.
// The locks themselves are taken with a checkout's order (OrderStore.CreateCheckout: an
// order's Price.Activities) and settled with it (OrderStore.SettleCheckout).
type ActivityStore interface {
	// CreateActivity stores a (version 1) and its first version, by a.CreatedBy.
	CreateActivity(ctx context.Context, a *Activity) error
	// Activity returns ENOTFOUND if there is no such activity.
	Activity(ctx context.Context, id int64) (*Activity, error)
	// UpdateActivity changes an activity in one transaction: it reads the row locked, lets
	// change edit it (an error from change is returned as is and nothing is written), and
	// writes it back one version later, with the version saved as by's. Used and Spent are the
	// store's and not changed. Returns ENOTFOUND.
	UpdateActivity(ctx context.Context, id, by int64, change func(*Activity) error) (*Activity, error)
	// Activities lists activities, newest first: a merchant's (merchant > 0), the platform's
	// (0), or all (-1); states filters when not empty; before (when not 0) takes only smaller
	// ids. At most n (1-500).
	Activities(ctx context.Context, merchant int64, states []string, before int64, n int) ([]*Activity, error)
	// LiveActivities returns every live activity (at most MaxLiveActivities), with its
	// counters.
	LiveActivities(ctx context.Context) ([]*Activity, error)
	// ActivityVersions returns an activity's saved versions, oldest first.
	ActivityVersions(ctx context.Context, id int64) ([]ActivityVersion, error)
	// ActivityLocks returns what orders hold of an activity by state (locked, confirmed,
	// released): how many orders, and the discount summed.
	ActivityLocks(ctx context.Context, id int64) (map[string]CouponTally, error)
}

// The states of what an order holds of an activity.
const (
	LockLocked    = "locked"    // the order waits for payment
	LockConfirmed = "confirmed" // the order is paid
	LockReleased  = "released"  // the order was cancelled, expired or refunded: the use is back
)

// ActivitiesOnOrder is one order in the events of activities going on orders (promo.locked),
// being paid for (promo.used) and given back (promo.released).
type ActivitiesOnOrder struct {
	OrderID    int64           `json:"order_id,string"`
	UserID     int64           `json:"user_id,string"`
	MerchantID int64           `json:"merchant_id,string,omitempty"`
	Currency   string          `json:"currency"`
	Discount   int64           `json:"discount"`
	Activities []ActivityTaken `json:"activities"`
}

// PriceChanged is the refusal of an order whose price is not the one quoted: Quote is the
// price it would charge now.
type PriceChanged struct {
	Err   *Error
	Quote *PriceBreakdown
}

func (p *PriceChanged) Error() string { return p.Err.Error() }

func (p *PriceChanged) Unwrap() error { return p.Err }
