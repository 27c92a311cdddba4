package client

import (
	"context"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/promo"
)

// CreateActivity creates a draft promotion activity.
func (c *Client) CreateActivity(ctx context.Context, in promo.ActivityInput) (*surge.Activity, error) {
	return call[surge.Activity](ctx, c, "POST", "/v1/activities", in)
}

// Activity gets an activity and what orders hold of it.
func (c *Client) Activity(ctx context.Context, activityID int64) (*promo.ActivityView, error) {
	return call[promo.ActivityView](ctx, c, "GET", "/v1/activities/"+id(activityID), nil)
}

// Activities lists activities; state may be empty.
func (c *Client) Activities(ctx context.Context, state string) ([]*surge.Activity, error) {
	path := "/v1/activities"
	if state != "" {
		path += "?state=" + state
	}
	list, err := call[struct {
		Items []*surge.Activity `json:"items"`
	}](ctx, c, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// ActivityVersions lists an activity's saved versions, oldest first.
func (c *Client) ActivityVersions(ctx context.Context, activityID int64) ([]surge.ActivityVersion, error) {
	list, err := call[struct {
		Items []surge.ActivityVersion `json:"items"`
	}](ctx, c, "GET", "/v1/activities/"+id(activityID)+"/versions", nil)
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// UpdateActivity changes a draft activity.
func (c *Client) UpdateActivity(ctx context.Context, activityID int64, p promo.ActivityPatch) (*surge.Activity, error) {
	return call[surge.Activity](ctx, c, "PATCH", "/v1/activities/"+id(activityID), p)
}

// PublishActivity makes a draft activity live.
func (c *Client) PublishActivity(ctx context.Context, activityID int64) (*surge.Activity, error) {
	return call[surge.Activity](ctx, c, "POST", "/v1/activities/"+id(activityID)+"/publish", nil)
}

// OfflineActivity takes an activity offline.
func (c *Client) OfflineActivity(ctx context.Context, activityID int64) (*surge.Activity, error) {
	return call[surge.Activity](ctx, c, "POST", "/v1/activities/"+id(activityID)+"/offline", nil)
}

// Quote asks for a cart's best price.
func (c *Client) Quote(ctx context.Context, in promo.QuoteRequest) (*promo.Quote, error) {
	return call[promo.Quote](ctx, c, "POST", "/v1/prices/quote", in)
}
