package promo

import (
	"sync"
	"time"

	"github.com/surgecommerce/surge"
)

// Index maps SKUs, shops and top-level categories to the live activities that may apply to
// their lines: an inverted index every node keeps in memory, changed one activity at a time as
// changes arrive (Put, Drop) and replaced whole on a reload (Replace). The store stays the
// truth: the index holds each activity as last read, counters included.
type Index struct {
	mu         sync.RWMutex
	byID       map[int64]*entry
	bySKU      map[int64][]*entry
	byShop     map[int64][]*entry
	byCategory map[string][]*entry
	everywhere []*entry // the platform's activities of platform scope
	postings   int
	versions   map[int64]int64 // the newest version seen of each activity, live or not
	gen        uint64          // counts the changes Put took
}

// entry is a live activity in the index: as last read, compiled, and the change (Generation)
// that put it there.
type entry struct {
	a   *surge.Activity
	act *Act
	gen uint64
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byID: map[int64]*entry{}, bySKU: map[int64][]*entry{}, byShop: map[int64][]*entry{}, byCategory: map[string][]*entry{},
		versions: map[int64]int64{}}
}

// Generation counts the changes the index took one at a time: a reload notes it before it reads
// the store (see Replace).
func (ix *Index) Generation() uint64 {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.gen
}

// Replace makes the index what a reload read: list is every live activity, read after the
// index was at generation since. An activity held at the version read only has its counters
// moved (its compiled rule and its postings stay); one of another version is compiled and filed
// anew; one the reload did not find live goes, unless a change taken after since put it there.
// A change taken meanwhile of a newer version stays. An activity whose rule does not compile is
// skipped and returned.
func (ix *Index) Replace(list []*surge.Activity, since uint64) (bad []int64) {
	ix.mu.RLock()
	held := make(map[int64]*entry, len(ix.byID))
	for id, e := range ix.byID {
		held[id] = e
	}
	ix.mu.RUnlock()
	type change struct {
		a *surge.Activity
		x *Act
	}
	var counters, fresh []change // compiled here, outside the lock
	live := make(map[int64]bool, len(list))
	for _, a := range list {
		if a.State != surge.ActivityLive {
			continue
		}
		live[a.ID] = true
		if e, ok := held[a.ID]; ok && e.a.Version == a.Version {
			counters = append(counters, change{a, e.act.withCounters(a)})
			continue
		}
		x, err := Compile(a)
		if err != nil {
			bad = append(bad, a.ID)
			continue
		}
		fresh = append(fresh, change{a, x})
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, c := range counters {
		if e, ok := ix.byID[c.a.ID]; ok && e.a.Version == c.a.Version {
			e.a, e.act = c.a, c.x // readers copy these under the read lock: they never see a change half made
		}
	}
	for _, c := range fresh {
		if ix.versions[c.a.ID] > c.a.Version {
			continue
		}
		ix.versions[c.a.ID] = c.a.Version
		if old, ok := ix.byID[c.a.ID]; ok {
			ix.remove(old)
		}
		ix.add(&entry{a: c.a, act: c.x, gen: since})
	}
	for id, e := range ix.byID {
		if !live[id] && e.gen <= since {
			ix.remove(e)
		}
	}
	return bad
}

// Put takes an activity as it is now: a live one goes in (replacing what the index held of
// it), any other comes out. A change older than what the index holds (a lower version) is
// ignored.
func (ix *Index) Put(a *surge.Activity) error {
	var x *Act
	if a.State == surge.ActivityLive {
		var err error
		if x, err = Compile(a); err != nil {
			return err
		}
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.versions[a.ID] > a.Version {
		return nil
	}
	ix.versions[a.ID] = a.Version
	if old, ok := ix.byID[a.ID]; ok {
		ix.remove(old)
	}
	ix.gen++
	if x != nil {
		ix.add(&entry{a: a, act: x, gen: ix.gen})
	}
	return nil
}

// Drop takes an activity out.
func (ix *Index) Drop(id int64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old, ok := ix.byID[id]; ok {
		ix.remove(old)
	}
}

// keys calls fn with each posting list an activity belongs on.
func (e *entry) keys(sku func(int64), shop func(int64), category func(string), everywhere func()) {
	s := e.act.Rule.Scope
	switch s.Kind {
	case ScopePlatform:
		if e.act.Merchant != 0 {
			shop(e.act.Merchant)
		} else {
			everywhere()
		}
	case ScopeCategories:
		for _, c := range s.Categories {
			category(c)
		}
	case ScopeShops:
		for _, id := range s.Shops {
			shop(id)
		}
	case ScopeSKUs:
		for _, id := range s.SKUs {
			sku(id)
		}
	}
}

func (ix *Index) add(e *entry) {
	ix.byID[e.a.ID] = e
	e.keys(func(id int64) { ix.bySKU[id] = append(ix.bySKU[id], e); ix.postings++ },
		func(id int64) { ix.byShop[id] = append(ix.byShop[id], e); ix.postings++ },
		func(c string) { ix.byCategory[c] = append(ix.byCategory[c], e); ix.postings++ },
		func() { ix.everywhere = append(ix.everywhere, e); ix.postings++ })
}

func (ix *Index) remove(e *entry) {
	delete(ix.byID, e.a.ID)
	cut := func(list []*entry) []*entry {
		out := list[:0]
		for _, o := range list {
			if o != e {
				out = append(out, o)
			}
		}
		ix.postings -= len(list) - len(out)
		clear(list[len(out):])
		return out
	}
	e.keys(func(id int64) {
		if ix.bySKU[id] = cut(ix.bySKU[id]); len(ix.bySKU[id]) == 0 {
			delete(ix.bySKU, id)
		}
	}, func(id int64) {
		if ix.byShop[id] = cut(ix.byShop[id]); len(ix.byShop[id]) == 0 {
			delete(ix.byShop, id)
		}
	}, func(c string) {
		if ix.byCategory[c] = cut(ix.byCategory[c]); len(ix.byCategory[c]) == 0 {
			delete(ix.byCategory, c)
		}
	}, func() { ix.everywhere = cut(ix.everywhere) })
}

// Candidate is a live activity that may apply to a cart, as the index holds it.
type Candidate struct {
	Activity *surge.Activity
	Act      *Act
}

// Candidates returns the activities that may apply to some line of lines now: live, within
// their window, not used up (as last read), in the currency, and covering a line.
func (ix *Index) Candidates(currency string, lines []Line, now time.Time) []Candidate {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	seen := map[int64]bool{}
	var out []Candidate
	consider := func(list []*entry) {
		for _, e := range list {
			if seen[e.a.ID] {
				continue
			}
			seen[e.a.ID] = true
			a := e.a
			switch {
			case now.Before(a.StartsAt) || !now.Before(a.EndsAt):
			case a.Cap > 0 && a.Used >= a.Cap, a.Budget > 0 && a.Spent >= a.Budget:
			case e.act.Rule.Currency != currency:
			default:
				for i := range lines {
					if e.act.covers(&lines[i]) {
						out = append(out, Candidate{Activity: a, Act: e.act})
						break
					}
				}
			}
		}
	}
	consider(ix.everywhere)
	for i := range lines {
		consider(ix.bySKU[lines[i].SKU])
		consider(ix.byShop[lines[i].Shop])
		if lines[i].Category != "" {
			consider(ix.byCategory[lines[i].Category])
		}
	}
	return out
}

// Get returns a live activity the index holds.
func (ix *Index) Get(id int64) (*surge.Activity, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	e, ok := ix.byID[id]
	if !ok {
		return nil, false
	}
	return e.a, true
}

// All returns the live activities the index holds.
func (ix *Index) All() []*surge.Activity {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]*surge.Activity, 0, len(ix.byID))
	for _, e := range ix.byID {
		out = append(out, e.a)
	}
	return out
}

// Excluding returns the live activities of a group that exclude others.
func (ix *Index) Excluding() []*Act {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []*Act
	for _, e := range ix.byID {
		if e.act.Rule.Group != "" && len(e.act.Rule.Excludes) > 0 {
			out = append(out, e.act)
		}
	}
	return out
}

// Size is how many activities and postings (activity under a key) the index holds.
func (ix *Index) Size() (activities, postings int) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byID), ix.postings
}
