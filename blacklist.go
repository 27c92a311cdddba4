package surge

import (
	"context"
	"time"
)

// Block keeps a user from buying until it expires: a risk-control verdict or an operator's
// decision.
type Block struct {
	UserID    int64     `json:"user_id,string"`
	Reason    string    `json:"reason"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
}

// MaxBlocks bounds the blocks a node holds in memory for the purchase gate.
const MaxBlocks = 1_000_000

// BlacklistStore keeps blocks.
type BlacklistStore interface {
	// Block adds or replaces a user's block.
	Block(ctx context.Context, b Block) error
	// Unblock removes a user's block; ENOTFOUND if there is none.
	Unblock(ctx context.Context, userID int64) error
	// ActiveBlocks returns the blocks that expire after now, at most limit.
	ActiveBlocks(ctx context.Context, now time.Time, limit int) ([]Block, error)
	// BlocksSince returns the blocks made (or renewed) at or after since, oldest first, at most limit.
	BlocksSince(ctx context.Context, since time.Time, limit int) ([]Block, error)
}
