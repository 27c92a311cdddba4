package coupon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/surgecommerce/surge"
)

// Bounds and pace of bulk grants.
const (
	maxUserLine = 256              // bytes of one line of a user file
	grantLease  = 10 * time.Second // how long a node holds a grant without saving its progress
	grantSave   = time.Second      // how often a running grant saves its progress (and renews its lease)
	grantRetry  = 2 * time.Second  // how soon a grant stopped by a failure is taken again
	grantPoll   = time.Second      // how often an idle node looks for a grant to run
)

// ReadUsers reads a grant's users from a file: one user id per line, or a CSV whose first
// column is the user id (a first line "user_id" is its header). Blank lines are skipped; a
// user listed twice is granted once. Returns EINVALID naming the line of anything else, or
// for more than surge.MaxGrantUsers users; a failure of r is returned wrapped.
func ReadUsers(r io.Reader) ([]int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, maxUserLine), maxUserLine)
	var users []int64
	line := 0
	for sc.Scan() {
		line++
		text := sc.Bytes()
		if line == 1 {
			text = bytes.TrimPrefix(text, []byte("\xef\xbb\xbf")) // the byte-order mark spreadsheets write
		}
		field, _, _ := bytes.Cut(text, []byte(","))
		field = bytes.Trim(bytes.TrimSpace(field), `"`)
		if len(field) == 0 || line == 1 && strings.EqualFold(string(field), "user_id") {
			continue
		}
		id, err := strconv.ParseInt(string(field), 10, 64)
		if err != nil || id <= 0 {
			return nil, surge.Errorf(surge.EINVALID, "line %d: %q is not a user id", line, truncate(field))
		}
		if len(users) == surge.MaxGrantUsers {
			return nil, surge.Errorf(surge.EINVALID, "a grant has at most %d users", surge.MaxGrantUsers)
		}
		users = append(users, id)
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return nil, surge.Errorf(surge.EINVALID, "line %d is longer than %d bytes", line+1, maxUserLine)
	} else if err != nil { // the reader's own failure, such as a body past its limit
		return nil, fmt.Errorf("reading the users: %w", err)
	}
	return unique(users), nil
}

func truncate(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "…"
	}
	return string(b)
}

// unique returns the ids without those listed before, in their order; ids is left as it is.
func unique(ids []int64) []int64 {
	seen := make(map[int64]struct{}, len(ids))
	out := make([]int64, 0, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}

// GrantInput asks for a bulk grant: one coupon of the batch to each user, once per request id.
type GrantInput struct {
	RequestID string       `json:"request_id"`
	Users     surge.IDList `json:"users"`
}

// Grant stores a bulk grant of a live batch for the nodes to run (RunGrants): operators for any
// batch, merchants for their own. The same request id again returns the grant stored first,
// also once the batch went offline.
func (s *Service) Grant(ctx context.Context, a surge.Actor, batch int64, in GrantInput) (*surge.CouponGrant, error) {
	if err := surge.ValidateRequestID(in.RequestID); err != nil {
		return nil, err
	}
	users := unique(in.Users)
	if len(users) == 0 || len(users) > surge.MaxGrantUsers {
		return nil, surge.Errorf(surge.EINVALID, "a grant has 1 to %d users", surge.MaxGrantUsers)
	}
	for _, u := range users {
		if u <= 0 {
			return nil, surge.Errorf(surge.EINVALID, "user ids are positive")
		}
	}
	b, err := s.store.CouponBatch(ctx, batch)
	if err == nil && owns(a, b) { // a retry gets the grant stored first, whatever the batch's state now
		if g, err := s.store.CouponGrantByRequest(ctx, batch, in.RequestID); err == nil {
			return g, nil
		} else if surge.ErrorCode(err) != surge.ENOTFOUND {
			return nil, err
		}
	}
	switch {
	case err != nil:
		return nil, err
	case !owns(a, b):
		return nil, surge.Errorf(surge.ENOTFOUND, "coupon batch not found")
	case b.State != surge.BatchLive:
		return nil, surge.Errorf(surge.ECONFLICT, "batch %d is %s; coupons are granted from a live batch", batch, b.State)
	}
	if n, err := s.store.RunningGrants(ctx, b.MerchantID); err != nil {
		return nil, err
	} else if n >= surge.MaxRunningGrants {
		return nil, surge.Errorf(surge.ERATELIMIT, "%d grants of this shop's batches are waiting or running; send this one once one is done", n)
	}
	id, err := s.ids()
	if err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	return s.store.CreateGrant(ctx, &surge.CouponGrant{ID: id, BatchID: batch, RequestID: in.RequestID, Users: int64(len(users)),
		State: surge.GrantRunning, CreatedBy: a.UserID, CreatedAt: now, UpdatedAt: now}, users)
}

// GrantStatus returns a grant and its progress to who manages its batch.
func (s *Service) GrantStatus(ctx context.Context, a surge.Actor, batch, id int64) (*surge.CouponGrant, error) {
	g, err := s.store.CouponGrant(ctx, id)
	if err != nil {
		return nil, err
	}
	b, err := s.store.CouponBatch(ctx, g.BatchID)
	if err != nil {
		return nil, err
	}
	if g.BatchID != batch || !owns(a, b) {
		return nil, surge.Errorf(surge.ENOTFOUND, "coupon grant not found")
	}
	return g, nil
}

// RunGrants runs the stored grants until ctx ends, one at a time, granting at most perSecond
// coupons a second on this node so that a grant never starves a sale of the stores it shares.
// node names this node (its worker id). A node holds the grant it runs (a lease it renews each
// time it saves its progress, every second); if it dies, it takes the grant up again as soon as
// it restarts, or another node once the lease ends, from the progress saved last. The users it
// goes through again get the coupon they were granted (each user's claim is idempotent by the
// grant), so each user gets one coupon of a grant at most.
func (s *Service) RunGrants(ctx context.Context, node int64, perSecond float64) {
	limit := rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10)))
	for ctx.Err() == nil {
		now := s.now()
		g, err := s.store.LeaseGrant(ctx, node, now, now.Add(grantLease))
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "coupon grants: no grant leased", "err", err)
		}
		if g == nil {
			select {
			case <-ctx.Done():
			case <-time.After(grantPoll):
			}
			continue
		}
		err = s.runGrant(ctx, node, g, limit)
		switch {
		case err == nil || ctx.Err() != nil:
			continue
		case surge.ErrorCode(err) == surge.ECONFLICT: // another node took it over
			s.log.InfoContext(ctx, "coupon grant taken over by another node", "grant", g.ID)
		default:
			s.log.WarnContext(ctx, "coupon grant paused; it goes on shortly", "grant", g.ID, "position", g.Position, "err", err)
			g.UpdatedAt = s.now().UTC()
			_ = s.store.SaveGrant(ctx, g, node, s.now()) // or the lease ends on its own
		}
		select { // whatever failed gets a moment before this node takes a grant again
		case <-ctx.Done():
		case <-time.After(grantRetry):
		}
	}
}

// grantKey is a grant's request id in its users' claims: shoppers' own request ids hold no
// control character (see claim), so none of them is a grant's.
func grantKey(grant int64) string { return "\x00grant-" + strconv.FormatInt(grant, 10) }

// maxGrantDraws bounds the claims one user of a grant makes while a budget has money left
// that the amount drawn did not fit (each claim draws anew).
const maxGrantDraws = 8

// runGrant goes through a grant's users from its position, saving its progress every second.
func (s *Service) runGrant(ctx context.Context, node int64, g *surge.CouponGrant, limit *rate.Limiter) error {
	s.log.InfoContext(ctx, "coupon grant running", "grant", g.ID, "batch", g.BatchID, "users", g.Users, "position", g.Position)
	saved := time.Now()
	for g.Position < g.Users && g.State == surge.GrantRunning {
		users, err := s.store.GrantUsers(ctx, g.ID, g.Position, surge.GrantChunk)
		if err != nil {
			return err
		}
		if len(users) == 0 {
			return surge.Errorf(surge.EINTERNAL, "grant %d has %d users stored, not %d", g.ID, g.Position, g.Users)
		}
		for _, u := range users {
			err := s.grantOne(ctx, g, u, limit)
			switch surge.ErrorCode(err) {
			case "":
				g.Granted++
			case surge.ELIMIT:
				g.Refused++
			case surge.ESOLDOUT, surge.ECONFLICT: // all issued, or offline: no one else gets one
				g.State, g.Reason = surge.GrantStopped, surge.ErrorMessage(err)
			default:
				return err
			}
			s.metrics.grant(err)
			if g.State != surge.GrantRunning {
				break
			}
			g.Position++
			if time.Since(saved) >= grantSave {
				break // save, and read on from there
			}
		}
		if g.Position == g.Users {
			g.State = surge.GrantDone
		}
		g.UpdatedAt = s.now().UTC()
		if err := s.store.SaveGrant(ctx, g, node, s.now().Add(grantLease)); err != nil {
			return err
		}
		saved = time.Now()
		s.log.InfoContext(ctx, "coupon grant progress", "grant", g.ID, "position", g.Position, "users", g.Users,
			"granted", g.Granted, "refused", g.Refused, "state", g.State)
	}
	return nil
}

// grantOne claims a grant's coupon for one user. A budget that has money left, but less than
// the amount drawn, is claimed again (each claim draws anew), a few times, before its "all
// issued" stops the grant.
func (s *Service) grantOne(ctx context.Context, g *surge.CouponGrant, user int64, limit *rate.Limiter) error {
	for range maxGrantDraws {
		if err := limit.Wait(ctx); err != nil {
			return err
		}
		_, _, err := s.claimAs(ctx, surge.Actor{UserID: user, Role: surge.RoleShopper}, g.BatchID, ClaimRequest{RequestID: grantKey(g.ID)}, true)
		if surge.ErrorCode(err) != surge.ESOLDOUT {
			return err
		}
		rule, err2 := s.ruleOf(ctx, g.BatchID)
		if err2 != nil {
			return err2 // the grant pauses, and goes on from here
		}
		is, err2 := s.ledger.Issuance(ctx, g.BatchID)
		if err2 != nil {
			return err2
		}
		if is.Left == 0 || rule.Kind != Envelope || is.Left < max(rule.Min, rule.Value) {
			return err
		}
	}
	return surge.Errorf(surge.ESOLDOUT, "budget %d: what is left fitted none of %d envelopes drawn", g.BatchID, maxGrantDraws)
}

// Give gives a shopper one coupon of a live batch as a grant does (outside the claim window),
// once per key: a promotion's rebate for a paid order. ELIMIT when the shopper is at the
// batch's per-user limit, ESOLDOUT when it is all issued.
func (s *Service) Give(ctx context.Context, batch, user int64, key string) (*surge.Coupon, error) {
	c, replayed, err := s.claimAs(ctx, surge.Actor{UserID: user, Role: surge.RoleShopper}, batch, ClaimRequest{RequestID: "\x00give-" + key}, true)
	s.metrics.claim(replayed, err)
	return c, err
}
