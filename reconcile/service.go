package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/payment"
)

// Money is what repairs act through (package order): a callback applied as the provider would
// have sent it, and money given back through the provider.
type Money interface {
	HandlePayment(ctx context.Context, n payment.Notification) (string, error)
	HandleRefunded(ctx context.Context, n payment.Notification) (string, error)
	RefundPayment(ctx context.Context, by, orderID int64, txnID string, amount surge.Money, requestID, reason string) (*surge.Refund, error)
	SweepAll(ctx context.Context) (int, error)
}

// Ledgers opens the provider's ledger of a closed day.
type Ledgers func(ctx context.Context, day string) (io.ReadCloser, error)

// Service runs the daily reconciliation, keeps its reports and makes its repairs, for staff;
// and answers what the real-time reconciliation raised.
type Service struct {
	store   surge.ReconcileStore
	daily   *Daily
	money   Money
	ledgers Ledgers
	log     *slog.Logger
	now     func() time.Time
}

// NewService returns the reconciliation's service. daily, money and ledgers may be nil on a
// node that does not run the daily reconciliation (its routes answer EUNAVAILABLE); now may be
// nil for the wall clock.
func NewService(store surge.ReconcileStore, daily *Daily, money Money, ledgers Ledgers, log *slog.Logger, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, daily: daily, money: money, ledgers: ledgers, log: log, now: now}
}

// RunDay reconciles a closed day against the provider's ledger, stores its report (over an
// earlier one) and returns it. EINVALID for a day that is not YYYY-MM-DD, one to come, or
// whose ledger is malformed, truncated or another day's (today's once the provider closed it
// early); ENOTFOUND when the provider has no
// ledger of it.
func (s *Service) RunDay(ctx context.Context, a surge.Actor, day string) (*Report, error) {
	if err := staff(a); err != nil {
		return nil, err
	}
	start, err := payment.ParseLedgerDay(day)
	if err != nil {
		return nil, err
	}
	if s.now().Before(start) {
		return nil, surge.Errorf(surge.EINVALID, "%s has not begun", day)
	}
	if s.daily == nil || s.ledgers == nil {
		return nil, surge.Errorf(surge.EUNAVAILABLE, "this node does not reconcile")
	}
	r, err := s.ledgers(ctx, day)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return s.Reconcile(ctx, day, r, nil)
}

// Reconcile reconciles day against a ledger read from r and stores the report: what RunDay and
// the scheduled run do with the provider's file, and surge reconcile with one it was given.
func (s *Service) Reconcile(ctx context.Context, day string, r io.Reader, progress func(string, int64)) (*Report, error) {
	rep, err := s.daily.Run(ctx, day, r, progress)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return nil, err
	}
	if err := s.store.PutRun(ctx, day, b, s.now()); err != nil {
		return nil, err
	}
	return rep, s.withRepairs(ctx, rep)
}

// Report returns a reconciled day's report, each finding with its repair when it was made.
func (s *Service) Report(ctx context.Context, a surge.Actor, day string) (*Report, error) {
	if err := staff(a); err != nil {
		return nil, err
	}
	if _, err := payment.ParseLedgerDay(day); err != nil {
		return nil, err
	}
	return s.report(ctx, day)
}

func (s *Service) report(ctx context.Context, day string) (*Report, error) {
	b, err := s.store.Run(ctx, day)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, surge.Errorf(surge.EINTERNAL, "the stored report of %s: %v", day, err)
	}
	return &rep, s.withRepairs(ctx, &rep)
}

func (s *Service) withRepairs(ctx context.Context, rep *Report) error {
	list, err := s.store.Repairs(ctx, rep.Day)
	if err != nil {
		return err
	}
	for i := range list {
		if f, ok := rep.Find(list[i].FindingID); ok {
			f.Repaired = &list[i]
		}
	}
	return nil
}

// Repair makes the repair a finding calls for, once, and records who made it and what came of
// it. Repairs are safe to make again (a re-driven callback is recorded once by its id, a refund
// is asked once by the finding's id), but a finding repaired already is ECONFLICT, naming the
// first repair. ENOTFOUND for a finding not in the day's report; EINVALID for one with no
// automatic repair (escalate: a person asks the provider).
func (s *Service) Repair(ctx context.Context, a surge.Actor, day, id string) (*surge.Repair, error) {
	if err := staff(a); err != nil {
		return nil, err
	}
	if s.money == nil {
		return nil, surge.Errorf(surge.EUNAVAILABLE, "this node does not repair")
	}
	rep, err := s.Report(ctx, a, day)
	if err != nil {
		return nil, err
	}
	f, ok := rep.Find(id)
	if !ok {
		return nil, surge.Errorf(surge.ENOTFOUND, "%s has no finding %s", day, id)
	}
	if f.Repaired != nil {
		return f.Repaired, repaired(f.Repaired)
	}
	result, err := s.act(ctx, a, f)
	if err != nil {
		return nil, err
	}
	first, fresh, err := s.store.PutRepair(ctx, surge.Repair{FindingID: id, Day: day, Action: f.Action, By: a.UserID, Result: result, At: s.now().UTC()})
	if err != nil {
		return nil, err
	}
	if !fresh {
		return &first, repaired(&first)
	}
	s.log.InfoContext(ctx, "reconciliation finding repaired", "day", day, "finding", id, "action", f.Action, "by", a.UserID, "result", result)
	return &first, nil
}

func repaired(r *surge.Repair) error {
	return surge.Errorf(surge.ECONFLICT, "finding %s was repaired at %s by user %d: %s", r.FindingID, r.At.Format(time.RFC3339), r.By, r.Result)
}

// act makes a finding's repair and says what came of it.
func (s *Service) act(ctx context.Context, a surge.Actor, f *Finding) (string, error) {
	amount := surge.Money{Amount: f.Amount, Currency: f.Currency}
	at := s.now().UTC()
	if f.PaidAt != nil {
		at = *f.PaidAt
	}
	switch f.Action {
	case ActionRedrive:
		outcome, err := s.money.HandlePayment(ctx, payment.Notification{NotifyID: "ledger:" + f.ProviderID, TxnID: f.TxnID, OrderID: f.OrderID,
			Amount: amount, Status: payment.StatusPaid, PaidAt: at})
		if err != nil && outcome == "" {
			return "", err
		}
		return "the ledger's payment applied as its callback: " + outcome, nil
	case ActionCompleteRefund:
		outcome, err := s.money.HandleRefunded(ctx, payment.Notification{NotifyID: "ledger:" + f.ProviderID, TxnID: f.TxnID, OrderID: f.OrderID,
			Amount: amount, Status: payment.StatusRefunded, RefundID: f.RefundID, PaidAt: at})
		if err != nil {
			return "", err
		}
		return "the ledger's refund applied as its callback: " + outcome, nil
	case ActionRefund:
		r, err := s.money.RefundPayment(ctx, a.UserID, f.OrderID, f.TxnID, amount, f.ID, f.Kind)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("refund %s of %d asked of the provider", r.ID, r.Amount.Amount), nil
	case ActionRelease:
		n, err := s.money.SweepAll(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("orders swept: %d expired, the stock of every cancelled order settled", n), nil
	}
	return "", surge.Errorf(surge.EINVALID, "finding %s has no automatic repair: %s", f.ID, f.Detail)
}

// RunSchedule reconciles yesterday once a day, at offset past midnight UTC (the provider closes
// a day at its end), unless it was reconciled already; until ctx ends. A failure is logged and
// tried again within the hour.
func (s *Service) RunSchedule(ctx context.Context, offset time.Duration) {
	for {
		now := s.now().UTC()
		due := now.Truncate(24 * time.Hour).Add(offset)
		wait := due.Sub(now)
		if wait <= 0 {
			wait += 24 * time.Hour
			day := payment.LedgerDay(now.Add(-24 * time.Hour))
			_, err := s.store.Run(ctx, day)
			if err != nil && surge.ErrorCode(err) != surge.ENOTFOUND && !errors.Is(err, context.Canceled) {
				s.log.WarnContext(ctx, "scheduled reconciliation: the store did not say whether the day was reconciled; asking again within the hour", "day", day, "err", err)
				wait = min(wait, time.Hour)
			}
			if surge.ErrorCode(err) == surge.ENOTFOUND {
				rep, err := s.RunDay(ctx, surge.Actor{Role: surge.RoleAdmin}, day)
				switch {
				case errors.Is(err, context.Canceled):
				case surge.ErrorCode(err) == surge.ENOTFOUND: // no file yet (or a day without payments)
					s.log.InfoContext(ctx, "scheduled reconciliation: the provider has no ledger of the day yet; looking again within the hour", "day", day)
					wait = min(wait, time.Hour)
				case err != nil:
					s.log.WarnContext(ctx, "scheduled reconciliation failed; trying again within the hour", "day", day, "err", err)
					wait = min(wait, time.Hour)
				default:
					s.log.InfoContext(ctx, "scheduled reconciliation", "day", day, "findings", int64(len(rep.Findings))+rep.Unlisted, "refunds_due", rep.RefundsDue)
				}
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
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
