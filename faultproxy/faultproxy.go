// Package faultproxy is a TCP proxy for fault tests: it forwards to a backend and can stall
// (hold every byte, as a hung server or a dropped link does) or cut (refuse and close every
// connection, as a server that is down does), then recover.
package faultproxy

import (
	"net"
	"sync"
	"time"
)

// Proxy forwards connections from Addr to a target.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	stalled bool
	down    bool
	conns   map[net.Conn]bool
	closed  bool
}

// Start listens on 127.0.0.1 and forwards to target until Close.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.accept() // stops when Close closes the listener
	return p, nil
}

// Addr is where to connect instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Stall holds all traffic (true) or lets it flow again (false).
func (p *Proxy) Stall(v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = v
}

// Down cuts every connection and refuses new ones (true), or accepts them again (false).
func (p *Proxy) Down(v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = v
	if v {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.down || p.closed
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go p.pipe(up, c)
	go p.pipe(c, up)
}

// pipe copies src to dst, holding bytes while stalled; it ends when either side closes.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		for {
			p.mu.Lock()
			stalled := p.stalled
			p.mu.Unlock()
			if !stalled {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}
