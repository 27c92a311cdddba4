package nats

import "github.com/nats-io/nats.go"

// Conn is the connection a publisher sends on, for tests that break it.
func (p *AsyncPublisher) Conn() *nats.Conn { return p.nc }
