package surge

import "time"

// Bounds on everything that comes from outside. Units are in the names.
const (
	MaxNameRunes        = 200     // names, titles, usernames after trimming
	MaxDescriptionRunes = 4000    // product descriptions
	MaxCodeRunes        = 64      // merchant product codes
	MaxImages           = 20      // images per product
	MaxURLRunes         = 1024    // one image URL
	MaxPasswordBytes    = 256     // longer passwords are refused rather than hashed
	MinPasswordRunes    = 8       // shortest accepted password
	MaxStock            = 1 << 40 // units of one SKU; far above any real warehouse
	MaxPriceMinor       = 1 << 50 // minor units; keeps sums of many prices far from int64 overflow
	MaxPerUserLimit     = 1000    // units one shopper may buy of one session item
	MaxSessionItems     = 200     // items in one sale session
	MaxSessionPage      = 50      // sessions (with their items) in one listing
	MaxListLimit        = 500     // rows in one list page
	DefaultListLimit    = 50      // rows in a list page when the caller gives no limit

	MaxSessionDuration = 7 * 24 * time.Hour // one sale session's window
)
