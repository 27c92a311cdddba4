package http

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	s := &Server{deps: Deps{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	plain := &Server{}
	for _, c := range []struct {
		name, peer, xff, want string
		srv                   *Server
	}{
		{"through the balancer", "10.1.1.1:5000", "203.0.113.7, 10.2.2.2", "203.0.113.7", s},
		{"forged hop before the real one", "10.1.1.1:5000", "1.1.1.1, 203.0.113.7", "203.0.113.7", s},
		{"header from an untrusted peer", "198.51.100.9:5000", "203.0.113.7", "198.51.100.9", s},
		{"only proxies in the chain", "10.1.1.1:5000", "10.3.3.3", "10.1.1.1", s},
		{"malformed chain", "10.1.1.1:5000", "not-an-ip", "10.1.1.1", s},
		{"no header", "10.1.1.1:5000", "", "10.1.1.1", s},
		{"no trusted proxies configured", "10.1.1.1:5000", "203.0.113.7", "10.1.1.1", plain},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := c.srv.clientIP(r); got != c.want {
			t.Errorf("clientIP(%s) = %s; want %s", c.name, got, c.want)
		}
	}
}
