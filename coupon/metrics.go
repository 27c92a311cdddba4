package coupon

import (
	"cmp"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
)

// metrics are the coupon service's Prometheus metrics.
type metrics struct {
	claims  *prometheus.CounterVec // by outcome
	wallets *prometheus.CounterVec // wallet reads, by where they were served from
	orders  *prometheus.CounterVec // coupons' steps on orders
	budgets prometheus.Counter     // minor units red envelopes took from their budgets
	grants  *prometheus.CounterVec // users bulk grants went through, by outcome
}

// Register registers the service's metrics: surge_coupon_claims_total{outcome} (claimed,
// replayed, or the refusal's error code) and surge_coupon_wallet_reads_total{from} (cache or
// store), surge_coupon_order_steps_total{step} (locked, lock_refused, used, returned) and
// surge_budget_claimed_minor_total and surge_coupon_grant_users_total{outcome}. Without it the
// service counts nothing.
func (s *Service) Register(reg prometheus.Registerer) {
	m := &metrics{
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_coupon_claims_total",
			Help: "Coupon claims by outcome: claimed, replayed (a retry given its first coupon), or the refusal's error code."}, []string{"outcome"}),
		wallets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_coupon_wallet_reads_total",
			Help: "Wallet reads by where they were served from: a node's cache (the version unchanged) or the store."}, []string{"from"}),
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_coupon_order_steps_total",
			Help: "Orders whose coupons took a step: locked (on an order being made), lock_refused, used (paid), returned (cancelled, expired, refunded or never made)."},
			[]string{"step"}),
	}
	m.budgets = prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_budget_claimed_minor_total",
		Help: "Minor units of money red envelopes took from their budgets (a retried claim counts once)."})
	m.grants = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_coupon_grant_users_total",
		Help: "Users bulk grants went through, by outcome: granted, or the refusal's error code (ELIMIT: at the batch's per-user limit)."}, []string{"outcome"})
	reg.MustRegister(m.claims, m.wallets, m.orders, m.budgets, m.grants)
	s.metrics = m
}

func (m *metrics) claim(replayed bool, err error) {
	if m == nil {
		return
	}
	outcome := "claimed"
	switch {
	case err != nil:
		outcome = surge.ErrorCode(err)
	case replayed:
		outcome = "replayed"
	}
	m.claims.WithLabelValues(outcome).Inc()
}

func (m *metrics) wallet(from string) {
	if m != nil {
		m.wallets.WithLabelValues(from).Inc()
	}
}

func (m *metrics) order(step string) {
	if m != nil {
		m.orders.WithLabelValues(step).Inc()
	}
}

func (m *metrics) budget(amount int64) {
	if m != nil {
		m.budgets.Add(float64(amount))
	}
}

func (m *metrics) grant(err error) {
	if m != nil {
		m.grants.WithLabelValues(cmp.Or(surge.ErrorCode(err), "granted")).Inc()
	}
}
