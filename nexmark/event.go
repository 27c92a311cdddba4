// Package nexmark is the Nexmark benchmark on Surge's stream engine: an online auction's
// people, auctions and bids, generated in the standard proportions, and queries q0–q8 (q6
// left out, as the nexmark/nexmark suite also does) written on package stream, each with a
// straightforward batch computation that checks it.
package nexmark

import (
	"encoding/json"
	"errors"
)

// Person is a new user of the auction site.
type Person struct {
	ID           int64  `json:"id"`
	Name         string `json:"name"`
	EmailAddress string `json:"emailAddress"`
	CreditCard   string `json:"creditCard"`
	City         string `json:"city"`
	State        string `json:"state"`
	DateTime     int64  `json:"dateTime"`
	Extra        string `json:"extra"`
}

// Auction is an item put up for auction.
type Auction struct {
	ID          int64  `json:"id"`
	ItemName    string `json:"itemName"`
	Description string `json:"description"`
	InitialBid  int64  `json:"initialBid"`
	Reserve     int64  `json:"reserve"`
	DateTime    int64  `json:"dateTime"`
	Expires     int64  `json:"expires"`
	Seller      int64  `json:"seller"`
	Category    int64  `json:"category"`
	Extra       string `json:"extra"`
}

// Bid is a bid on an auction.
type Bid struct {
	Auction  int64  `json:"auction"`
	Bidder   int64  `json:"bidder"`
	Price    int64  `json:"price"`
	Channel  string `json:"channel"`
	URL      string `json:"url"`
	DateTime int64  `json:"dateTime"`
	Extra    string `json:"extra"`
}

// Event is one of a Person, an Auction or a Bid.
type Event struct {
	Person  *Person  `json:"person,omitempty"`
	Auction *Auction `json:"auction,omitempty"`
	Bid     *Bid     `json:"bid,omitempty"`
}

// Time is the event's time in milliseconds.
func (e Event) Time() int64 {
	switch {
	case e.Bid != nil:
		return e.Bid.DateTime
	case e.Auction != nil:
		return e.Auction.DateTime
	case e.Person != nil:
		return e.Person.DateTime
	}
	return 0
}

// errEvent is returned for a record that is not exactly one of the three kinds.
var errEvent = errors.New("nexmark: event must hold exactly one of person, auction, bid")

// Decode reads an event from its JSON form.
func Decode(data []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return Event{}, err
	}
	n := 0
	for _, set := range []bool{e.Person != nil, e.Auction != nil, e.Bid != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return Event{}, errEvent
	}
	return e, nil
}

// Encode writes an event in its JSON form.
func Encode(e Event) ([]byte, error) { return json.Marshal(e) }
