package main

import (
	"context"
	"strconv"

	"github.com/surgecommerce/surge/nats"
)

// promoSubject carries the notes of changed activities to every node's index.
const promoSubject = "surge.notes.promo"

// promoChanges carries promo.Changes over the bus's notes.
type promoChanges struct{ bus *nats.Bus }

func (c promoChanges) Changed(_ context.Context, id int64) error {
	return c.bus.Notify(promoSubject, strconv.AppendInt(nil, id, 10))
}

func (c promoChanges) Watch(ctx context.Context, fn func(id int64)) (<-chan struct{}, error) {
	return c.bus.Listen(ctx, promoSubject, func(data []byte) {
		if id, err := strconv.ParseInt(string(data), 10, 64); err == nil && id > 0 {
			fn(id)
		}
	})
}
