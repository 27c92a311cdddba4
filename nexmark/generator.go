package nexmark

import (
	"iter"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
)

// The generator follows the nexmark/nexmark (and Apache Beam) generator: out of every 50
// events, 1 is a person, 3 are auctions and 46 are bids (2% / 6% / 92%); bids and new auctions
// favour hot auctions, bidders and sellers; auction lengths keep about 100 auctions in flight.
const (
	personProportion  = 1
	auctionProportion = 3
	proportionDenom   = 50 // the rest are bids

	firstPersonID  = 1000
	firstAuctionID = 1000
	firstCategory  = 10
	numCategories  = 5

	numActivePeople     = 1000
	numInFlightAuctions = 100
	personIDLead        = 10
	auctionIDLead       = 10

	hotAuctionRatio = 2
	hotSellerRatio  = 4
	hotBidderRatio  = 4
	hotIDGroup      = 100 // hot ids are multiples of this

	// Average sizes of the extra field, as the suite pads events to (about 200/500/100 bytes).
	personExtraBytes  = 100
	auctionExtraBytes = 300
	bidExtraBytes     = 40

	// BaseTime is the event time of the first event: 2026-11-01T00:00:00Z.
	BaseTime int64 = 1_793_491_200_000
	// DefaultRate is how many events fall in each second of event time.
	DefaultRate = 100_000
)

var (
	usStates   = []string{"AZ", "CA", "ID", "OR", "WA", "WY"}
	usCities   = []string{"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"}
	firstNames = []string{"Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"}
	lastNames  = []string{"Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"}
	channels   = []string{"Google", "Facebook", "Baidu", "Apple"}
)

// Config describes a generated event sequence.
type Config struct {
	Events int
	Seed   uint64
	// Rate is the number of events per second of event time (DefaultRate if zero).
	Rate int
	// MaxDelayMs delays each event's arrival by up to this much: the sequence comes out of
	// event-time order within that bound.
	MaxDelayMs int64
}

// Generate returns the events, in arrival order.
func Generate(cfg Config) []Event {
	out := make([]Event, 0, cfg.Events)
	for e := range Events(Config{Events: cfg.Events, Seed: cfg.Seed, Rate: cfg.Rate}) {
		out = append(out, e)
	}
	if cfg.MaxDelayMs > 0 {
		r := rand.New(rand.NewPCG(cfg.Seed, 0x64656c6179))
		arrive := make([]int64, len(out))
		for i, e := range out {
			arrive[i] = e.Time() + r.Int64N(cfg.MaxDelayMs+1)
		}
		idx := make([]int, len(out))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int { return int(arrive[a] - arrive[b]) })
		shuffled := make([]Event, len(out))
		for i, j := range idx {
			shuffled[i] = out[j]
		}
		out = shuffled
	}
	return out
}

// Events generates the events one at a time, in event-time order (MaxDelayMs is ignored): a
// source that costs generation, as the suite's own data generator does.
func Events(cfg Config) iter.Seq[Event] {
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	return func(yield func(Event) bool) {
		g := &generator{r: rand.New(rand.NewPCG(cfg.Seed, 0x6e65786d61726b)), rate: int64(cfg.Rate)}
		g.pad = make([]byte, 4*auctionExtraBytes)
		for i := range g.pad {
			g.pad[i] = byte('a' + g.r.IntN(26))
		}
		for i := range cfg.Events {
			if !yield(g.event(int64(i))) {
				return
			}
		}
	}
}

type generator struct {
	r    *rand.Rand
	rate int64
	pad  []byte
}

// timestamp is the event time of event id.
func (g *generator) timestamp(id int64) int64 { return BaseTime + id*1000/g.rate }

func (g *generator) event(id int64) Event {
	switch rem := id % proportionDenom; {
	case rem < personProportion:
		return Event{Person: g.person(id)}
	case rem < personProportion+auctionProportion:
		return Event{Auction: g.auction(id)}
	default:
		return Event{Bid: g.bid(id)}
	}
}

// lastPerson is the base-0 id of the newest person at or before event id.
func lastPerson(id int64) int64 {
	epoch, offset := id/proportionDenom, id%proportionDenom
	if offset >= personProportion {
		offset = personProportion - 1
	}
	return epoch*personProportion + offset
}

// lastAuction is the base-0 id of the newest auction at or before event id.
func lastAuction(id int64) int64 {
	epoch, offset := id/proportionDenom, id%proportionDenom
	switch {
	case offset < personProportion:
		epoch--
		offset = auctionProportion - 1
	case offset >= personProportion+auctionProportion:
		offset = auctionProportion - 1
	default:
		offset -= personProportion
	}
	return epoch*auctionProportion + offset
}

// nextPerson picks an existing person, mostly a recent one, sometimes one about to join.
func (g *generator) nextPerson(id int64) int64 {
	people := lastPerson(id) + 1
	active := min(people, numActivePeople)
	return people - active + g.r.Int64N(active+personIDLead)
}

// nextAuction picks an auction in flight, sometimes one about to open.
func (g *generator) nextAuction(id int64) int64 {
	maxA := lastAuction(id)
	minA := max(maxA-numInFlightAuctions, 0)
	return minA + g.r.Int64N(maxA-minA+1+auctionIDLead)
}

func (g *generator) extra(n int) string {
	n = n/2 + g.r.IntN(n+1)
	start := g.r.IntN(len(g.pad) - n)
	return string(g.pad[start : start+n])
}

func (g *generator) person(id int64) *Person {
	ts := g.timestamp(id)
	pid := lastPerson(id) + firstPersonID
	name := firstNames[g.r.IntN(len(firstNames))] + " " + lastNames[g.r.IntN(len(lastNames))]
	return &Person{ID: pid, Name: name, EmailAddress: "p" + strconv.FormatInt(pid, 10) + "@example.com",
		CreditCard: strconv.FormatInt(1000_0000_0000_0000+g.r.Int64N(9000_0000_0000_0000), 10),
		City:       usCities[g.r.IntN(len(usCities))], State: usStates[g.r.IntN(len(usStates))], DateTime: ts,
		Extra: g.extra(personExtraBytes)}
}

func (g *generator) auction(id int64) *Auction {
	ts := g.timestamp(id)
	seller := g.nextPerson(id)
	if g.r.IntN(hotSellerRatio) > 0 {
		seller = lastPerson(id) / hotIDGroup * hotIDGroup
	}
	initial := g.price()
	aid := lastAuction(id) + firstAuctionID
	return &Auction{ID: aid, ItemName: "item-" + strconv.FormatInt(aid, 10), Description: g.extra(40),
		InitialBid: initial, Reserve: initial + g.price(), DateTime: ts, Expires: ts + g.auctionLength(id),
		Seller: seller + firstPersonID, Category: firstCategory + g.r.Int64N(numCategories), Extra: g.extra(auctionExtraBytes)}
}

// auctionLength keeps about numInFlightAuctions open: it is up to twice the event time it
// takes for that many auctions to be created.
func (g *generator) auctionLength(id int64) int64 {
	eventsFor := int64(numInFlightAuctions * proportionDenom / auctionProportion)
	horizon := g.timestamp(id+eventsFor) - g.timestamp(id)
	return 1 + g.r.Int64N(max(2*horizon, 1))
}

func (g *generator) bid(id int64) *Bid {
	auction := g.nextAuction(id)
	if g.r.IntN(hotAuctionRatio) > 0 {
		auction = lastAuction(id) / hotIDGroup * hotIDGroup
	}
	bidder := g.nextPerson(id)
	if g.r.IntN(hotBidderRatio) > 0 {
		bidder = lastPerson(id)/hotIDGroup*hotIDGroup + 1
	}
	a := auction + firstAuctionID
	return &Bid{Auction: a, Bidder: bidder + firstPersonID, Price: g.price(), Channel: channels[g.r.IntN(len(channels))],
		URL: "https://auction.example.com/item/" + strconv.FormatInt(a, 10), DateTime: g.timestamp(id), Extra: g.extra(bidExtraBytes)}
}

// price is log-uniform between 1 and 10^6, in cents.
func (g *generator) price() int64 { return int64(math.Round(math.Pow(10, g.r.Float64()*6) * 100)) }
