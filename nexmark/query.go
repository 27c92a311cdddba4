package nexmark

import (
	"cmp"
	"slices"
	"time"

	"github.com/surgecommerce/surge/stream"
)

// Window sizes of the windowed queries, as in the suite.
const (
	q5Size  = 10 * time.Second
	q5Slide = 2 * time.Second
	q7Size  = 10 * time.Second
	q8Size  = 10 * time.Second
)

func bids(s stream.Stream[Event]) stream.Stream[Bid] {
	return stream.Map(stream.Filter(s, func(e Event) bool { return e.Bid != nil }), func(e Event) Bid { return *e.Bid })
}

// Q0 passes every bid through: the cost of the engine itself.
var Q0 = Query[Bid]{
	Name:  "q0",
	Build: bids,
	Batch: func(events []Event) []Bid {
		var out []Bid
		for _, e := range events {
			if e.Bid != nil {
				out = append(out, *e.Bid)
			}
		}
		return out
	},
	Compare: compareBid,
}

func compareBid(a, b Bid) int {
	return cmp.Or(cmp.Compare(a.DateTime, b.DateTime), cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Bidder, b.Bidder),
		cmp.Compare(a.Price, b.Price), cmp.Compare(a.Extra, b.Extra))
}

// toEuro converts a price in dollar cents to euro cents at the suite's rate of 0.908.
func toEuro(b Bid) Bid {
	b.Price = b.Price * 908 / 1000
	return b
}

// Q1 converts every bid's price to euros.
var Q1 = Query[Bid]{
	Name:  "q1",
	Build: func(s stream.Stream[Event]) stream.Stream[Bid] { return stream.Map(bids(s), toEuro) },
	Batch: func(events []Event) []Bid {
		var out []Bid
		for _, e := range events {
			if e.Bid != nil {
				out = append(out, toEuro(*e.Bid))
			}
		}
		return out
	},
	Compare: compareBid,
}

// AuctionPrice is a bid's auction and price.
type AuctionPrice struct{ Auction, Price int64 }

const q2Modulus = 123

// Q2 selects the bids on a few auctions.
var Q2 = Query[AuctionPrice]{
	Name: "q2",
	Build: func(s stream.Stream[Event]) stream.Stream[AuctionPrice] {
		return stream.Map(stream.Filter(bids(s), func(b Bid) bool { return b.Auction%q2Modulus == 0 }),
			func(b Bid) AuctionPrice { return AuctionPrice{b.Auction, b.Price} })
	},
	Batch: func(events []Event) []AuctionPrice {
		var out []AuctionPrice
		for _, e := range events {
			if e.Bid != nil && e.Bid.Auction%q2Modulus == 0 {
				out = append(out, AuctionPrice{e.Bid.Auction, e.Bid.Price})
			}
		}
		return out
	},
	Compare: func(a, b AuctionPrice) int {
		return cmp.Or(cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Price, b.Price))
	},
}

// LocalItem is an auction in category 10 by a seller from Oregon, Idaho or California.
type LocalItem struct {
	Name, City, State string
	Auction           int64
}

func q3Person(p *Person) bool { return p.State == "OR" || p.State == "ID" || p.State == "CA" }

// q3State is a seller's side of the join: the person once known, and the auctions that came
// before them.
type q3State struct {
	Person    Person
	HasPerson bool
	Auctions  []int64
}

// Q3 joins new auctions in category 10 with their sellers from three states: a join without
// a window, whose state grows with the people and auctions.
var Q3 = Query[LocalItem]{
	Name: "q3",
	Build: func(s stream.Stream[Event]) stream.Stream[LocalItem] {
		in := stream.Filter(s, func(e Event) bool {
			return (e.Person != nil && q3Person(e.Person)) || (e.Auction != nil && e.Auction.Category == firstCategory)
		})
		return stream.Process(stream.KeyBy(in, func(e Event) int64 {
			if e.Person != nil {
				return e.Person.ID
			}
			return e.Auction.Seller
		}), stream.Processor[int64, Event, q3State, LocalItem]{OnRecord: func(c *stream.Context[int64, q3State, LocalItem], e Event) {
			st := c.State()
			if e.Auction != nil {
				if st.HasPerson {
					c.Emit(c.Time, LocalItem{st.Person.Name, st.Person.City, st.Person.State, e.Auction.ID})
				} else {
					st.Auctions = append(st.Auctions, e.Auction.ID)
				}
				return
			}
			st.Person, st.HasPerson = *e.Person, true
			for _, a := range st.Auctions {
				c.Emit(c.Time, LocalItem{st.Person.Name, st.Person.City, st.Person.State, a})
			}
			st.Auctions = nil
		}})
	},
	Batch: func(events []Event) []LocalItem {
		people := map[int64]*Person{}
		for _, e := range events {
			if e.Person != nil && q3Person(e.Person) {
				people[e.Person.ID] = e.Person
			}
		}
		var out []LocalItem
		for _, e := range events {
			if a := e.Auction; a != nil && a.Category == firstCategory {
				if p := people[a.Seller]; p != nil {
					out = append(out, LocalItem{p.Name, p.City, p.State, a.ID})
				}
			}
		}
		return out
	},
	Compare: func(a, b LocalItem) int {
		return cmp.Or(cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Name, b.Name), cmp.Compare(a.City, b.City), cmp.Compare(a.State, b.State))
	},
}

// earlyBid is a bid that arrived before its auction.
type earlyBid struct{ TS, Price int64 }

// q4Auction is one auction's side of the auction–bid join.
type q4Auction struct {
	Category, Expires, Start int64
	HasAuction, HasBid       bool
	Max                      int64
	Early                    []earlyBid
}

func (s *q4Auction) offer(ts, price int64) {
	if ts >= s.Start && ts <= s.Expires && (!s.HasBid || price > s.Max) {
		s.Max, s.HasBid = price, true
	}
}

// ClosingPrice is an auction's winning bid.
type ClosingPrice struct{ Category, Price int64 }

// closingPrices is the first stage of q4: each auction's highest bid between its start and its
// end, emitted when the watermark passes the end.
func closingPrices(s stream.Stream[Event]) stream.Stream[ClosingPrice] {
	in := stream.Filter(s, func(e Event) bool { return e.Auction != nil || e.Bid != nil })
	return stream.Process(stream.KeyBy(in, func(e Event) int64 {
		if e.Auction != nil {
			return e.Auction.ID
		}
		return e.Bid.Auction
	}), stream.Processor[int64, Event, q4Auction, ClosingPrice]{
		OnRecord: func(c *stream.Context[int64, q4Auction, ClosingPrice], e Event) {
			st := c.State()
			if a := e.Auction; a != nil {
				st.Category, st.Start, st.Expires, st.HasAuction = a.Category, a.DateTime, a.Expires, true
				for _, b := range st.Early {
					st.offer(b.TS, b.Price)
				}
				st.Early = nil
				c.SetTimer(a.Expires)
				return
			}
			if st.HasAuction {
				st.offer(e.Bid.DateTime, e.Bid.Price)
				return
			}
			// The auction has not arrived: keep the bid until the watermark passes it, after
			// which an auction it could belong to would have arrived.
			st.Early = append(st.Early, earlyBid{e.Bid.DateTime, e.Bid.Price})
			c.SetTimer(e.Bid.DateTime)
		},
		OnTimer: func(c *stream.Context[int64, q4Auction, ClosingPrice]) {
			st := c.State()
			if st.HasAuction {
				if c.Time >= st.Expires {
					if st.HasBid {
						c.Emit(st.Expires, ClosingPrice{st.Category, st.Max})
					}
					c.Clear()
				}
				return
			}
			st.Early = slices.DeleteFunc(st.Early, func(b earlyBid) bool { return b.TS <= c.Watermark })
			if len(st.Early) == 0 {
				c.Clear()
			}
		},
	})
}

// CategoryAverage is the average closing price of a category's auctions.
type CategoryAverage struct {
	Category int64
	Average  float64
}

type sumCount struct{ Sum, Count int64 }

func average(sum, count int64) float64 { return float64(sum) / float64(count) }

// Q4 keeps the average closing price per category, updated as auctions close.
var Q4 = Query[CategoryAverage]{
	Name: "q4",
	Build: func(s stream.Stream[Event]) stream.Stream[CategoryAverage] {
		return stream.Process(stream.KeyBy(closingPrices(s), func(p ClosingPrice) int64 { return p.Category }),
			stream.Processor[int64, ClosingPrice, sumCount, CategoryAverage]{OnRecord: func(c *stream.Context[int64, sumCount, CategoryAverage], p ClosingPrice) {
				st := c.State()
				st.Sum += p.Price
				st.Count++
				c.Emit(c.Time, CategoryAverage{p.Category, average(st.Sum, st.Count)})
			}})
	},
	Batch: func(events []Event) []CategoryAverage {
		auctions := map[int64]*Auction{}
		for _, e := range events {
			if e.Auction != nil {
				auctions[e.Auction.ID] = e.Auction
			}
		}
		closing := map[int64]int64{}
		for _, e := range events {
			if b := e.Bid; b != nil {
				if a := auctions[b.Auction]; a != nil && b.DateTime >= a.DateTime && b.DateTime <= a.Expires {
					if p, ok := closing[a.ID]; !ok || b.Price > p {
						closing[a.ID] = b.Price
					}
				}
			}
		}
		per := map[int64]*sumCount{}
		for id, price := range closing {
			c := auctions[id].Category
			if per[c] == nil {
				per[c] = &sumCount{}
			}
			per[c].Sum += price
			per[c].Count++
		}
		var out []CategoryAverage
		for c, s := range per {
			out = append(out, CategoryAverage{c, average(s.Sum, s.Count)})
		}
		return out
	},
	// The stream updates a category's average with every closing auction; its result is the last.
	Final: func(updates []CategoryAverage) []CategoryAverage {
		last := map[int64]CategoryAverage{}
		for _, u := range updates {
			last[u.Category] = u
		}
		var out []CategoryAverage
		for _, u := range last {
			out = append(out, u)
		}
		return out
	},
	Compare: func(a, b CategoryAverage) int { return cmp.Compare(a.Category, b.Category) },
}

// HotItem is an auction with the most bids in a window.
type HotItem struct{ Auction, Bids, WindowStart int64 }

type hottest struct {
	Max      int64
	Auctions []int64
}

// Q5 finds, every 2 seconds, the auctions with the most bids over the last 10 seconds.
var Q5 = Query[HotItem]{
	Name: "q5",
	Build: func(s stream.Stream[Event]) stream.Stream[HotItem] {
		counts, _ := stream.Aggregate(stream.KeyBy(bids(s), func(b Bid) int64 { return b.Auction }), stream.Sliding(q5Size, q5Slide),
			stream.Aggregator[Bid, int64]{Add: func(n int64, _ Bid) int64 { return n + 1 }},
			func(a int64, w stream.Window, n int64) HotItem { return HotItem{a, n, w.Start} })
		return stream.Process(stream.KeyBy(counts, func(h HotItem) int64 { return h.WindowStart }), stream.Processor[int64, HotItem, hottest, HotItem]{
			OnRecord: func(c *stream.Context[int64, hottest, HotItem], h HotItem) {
				st := c.State()
				switch {
				case h.Bids > st.Max:
					st.Max, st.Auctions = h.Bids, append(st.Auctions[:0], h.Auction)
				case h.Bids == st.Max:
					st.Auctions = append(st.Auctions, h.Auction)
				}
				c.SetTimer(c.Time) // the window's end: every count of it has arrived
			},
			OnTimer: func(c *stream.Context[int64, hottest, HotItem]) {
				st := c.State()
				for _, a := range st.Auctions {
					c.Emit(c.Time, HotItem{a, st.Max, c.Key})
				}
				c.Clear()
			},
		})
	},
	Batch: func(events []Event) []HotItem {
		size, slide := q5Size.Milliseconds(), q5Slide.Milliseconds()
		type wa struct{ start, auction int64 }
		counts := map[wa]int64{}
		for _, e := range events {
			if b := e.Bid; b != nil {
				for start := b.DateTime - b.DateTime%slide; start > b.DateTime-size; start -= slide {
					counts[wa{start, b.Auction}]++
				}
			}
		}
		most := map[int64]int64{}
		for k, n := range counts {
			most[k.start] = max(most[k.start], n)
		}
		var out []HotItem
		for k, n := range counts {
			if n == most[k.start] {
				out = append(out, HotItem{k.auction, n, k.start})
			}
		}
		return out
	},
	Compare: func(a, b HotItem) int {
		return cmp.Or(cmp.Compare(a.WindowStart, b.WindowStart), cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Bids, b.Bids))
	},
}

// HighestBid is a bid with the highest price of its window.
type HighestBid struct {
	Auction, Price, Bidder, DateTime, WindowEnd int64
}

type highest struct {
	Max  int64
	Bids []HighestBid
}

// Q7 reports, every 10 seconds, the bids with the highest price in them.
var Q7 = Query[HighestBid]{
	Name: "q7",
	Build: func(s stream.Stream[Event]) stream.Stream[HighestBid] {
		win, _ := stream.Aggregate(stream.KeyBy(bids(s), func(Bid) struct{} { return struct{}{} }), stream.Tumbling(q7Size),
			stream.Aggregator[Bid, highest]{Add: func(h highest, b Bid) highest {
				hb := HighestBid{b.Auction, b.Price, b.Bidder, b.DateTime, 0}
				switch {
				case len(h.Bids) == 0 || b.Price > h.Max:
					h.Max, h.Bids = b.Price, append(h.Bids[:0], hb)
				case b.Price == h.Max:
					h.Bids = append(h.Bids, hb)
				}
				return h
			}},
			func(_ struct{}, w stream.Window, h highest) highest {
				for i := range h.Bids {
					h.Bids[i].WindowEnd = w.End
				}
				return h
			})
		return stream.FlatMap(win, func(h highest, emit func(HighestBid)) {
			for _, b := range h.Bids {
				emit(b)
			}
		})
	},
	Batch: func(events []Event) []HighestBid {
		size := q7Size.Milliseconds()
		most := map[int64]int64{}
		for _, e := range events {
			if b := e.Bid; b != nil {
				end := b.DateTime - b.DateTime%size + size
				if p, ok := most[end]; !ok || b.Price > p {
					most[end] = b.Price
				}
			}
		}
		var out []HighestBid
		for _, e := range events {
			if b := e.Bid; b != nil {
				end := b.DateTime - b.DateTime%size + size
				if b.Price == most[end] {
					out = append(out, HighestBid{b.Auction, b.Price, b.Bidder, b.DateTime, end})
				}
			}
		}
		return out
	},
	Compare: func(a, b HighestBid) int {
		return cmp.Or(cmp.Compare(a.WindowEnd, b.WindowEnd), cmp.Compare(a.DateTime, b.DateTime), cmp.Compare(a.Auction, b.Auction),
			cmp.Compare(a.Bidder, b.Bidder), cmp.Compare(a.Price, b.Price))
	},
}

// NewSeller is a person who joined and opened an auction within the same 10-second window.
type NewSeller struct {
	Person      int64
	Name        string
	WindowStart int64
}

type q8Window struct {
	Name                  string
	HasPerson, HasAuction bool
}

// Q8 finds the people who opened an auction in the window in which they joined.
var Q8 = Query[NewSeller]{
	Name: "q8",
	Build: func(s stream.Stream[Event]) stream.Stream[NewSeller] {
		in := stream.Filter(s, func(e Event) bool { return e.Person != nil || e.Auction != nil })
		win, _ := stream.Aggregate(stream.KeyBy(in, func(e Event) int64 {
			if e.Person != nil {
				return e.Person.ID
			}
			return e.Auction.Seller
		}), stream.Tumbling(q8Size), stream.Aggregator[Event, q8Window]{Add: func(w q8Window, e Event) q8Window {
			if e.Person != nil {
				w.Name, w.HasPerson = e.Person.Name, true
			} else {
				w.HasAuction = true
			}
			return w
		}}, func(id int64, w stream.Window, a q8Window) NewSeller {
			if !a.HasPerson || !a.HasAuction {
				return NewSeller{}
			}
			return NewSeller{id, a.Name, w.Start}
		})
		return stream.Filter(win, func(n NewSeller) bool { return n.Person != 0 })
	},
	Batch: func(events []Event) []NewSeller {
		size := q8Size.Milliseconds()
		type pw struct{ id, start int64 }
		people := map[pw]string{}
		for _, e := range events {
			if p := e.Person; p != nil {
				people[pw{p.ID, p.DateTime - p.DateTime%size}] = p.Name
			}
		}
		seen := map[pw]bool{}
		var out []NewSeller
		for _, e := range events {
			if a := e.Auction; a != nil {
				k := pw{a.Seller, a.DateTime - a.DateTime%size}
				if name, ok := people[k]; ok && !seen[k] {
					seen[k] = true
					out = append(out, NewSeller{k.id, name, k.start})
				}
			}
		}
		return out
	},
	Compare: func(a, b NewSeller) int {
		return cmp.Or(cmp.Compare(a.WindowStart, b.WindowStart), cmp.Compare(a.Person, b.Person), cmp.Compare(a.Name, b.Name))
	},
}
