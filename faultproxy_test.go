package main

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type proxyMode int

const (
	proxyPass        proxyMode = iota // forward bytes both ways
	proxyBlackhole                    // read and drop everything, close nothing: a hard partition
	proxyDropReplies                  // forward client->server, drop server->client: lost replies
)

func (m proxyMode) String() string {
	switch m {
	case proxyPass:
		return "pass"
	case proxyBlackhole:
		return "blackhole"
	case proxyDropReplies:
		return "drop-replies"
	}
	return "proxyMode(" + strconv.Itoa(int(m)) + ")"
}

type proxyDir int

const (
	proxyToServer proxyDir = iota
	proxyToClient
)

// faultProxy is a TCP proxy whose links can be cut without the endpoints
// noticing, to simulate partitions and lost packets between a ZooKeeper client
// and a server.
type faultProxy struct {
	ln     net.Listener
	target string
	mode   atomic.Int32

	mu      sync.Mutex
	changed chan struct{} // closed and replaced by every SetMode
	conns   map[*proxyConn]struct{}
	closed  bool

	wg sync.WaitGroup
}

type proxyConn struct {
	client, server net.Conn
	once           sync.Once
	done           chan struct{}
}

func (c *proxyConn) close(rst bool) {
	c.once.Do(func() {
		if rst {
			for _, nc := range []net.Conn{c.client, c.server} {
				if tc, ok := nc.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
			}
		}
		c.client.Close()
		c.server.Close()
		close(c.done)
	})
}

func newFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fault proxy for %s: %v", target, err)
	}
	p := &faultProxy{
		ln:      ln,
		target:  target,
		changed: make(chan struct{}),
		conns:   make(map[*proxyConn]struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

func (p *faultProxy) Mode() proxyMode { return proxyMode(p.mode.Load()) }

func (p *faultProxy) SetMode(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode.Store(int32(m))
	close(p.changed)
	p.changed = make(chan struct{})
}

// Reset aborts every current connection with an RST on both sides, like a
// middlebox dropping its state; new connections are still accepted.
func (p *faultProxy) Reset() {
	for _, c := range p.takeConns() {
		c.close(true)
	}
}

// Conns counts the proxied connections that are currently open.
func (p *faultProxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *faultProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range p.takeConns() {
		c.close(false)
	}
	p.wg.Wait()
}

func (p *faultProxy) takeConns() []*proxyConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
		delete(p.conns, c)
	}
	return cs
}

func (p *faultProxy) drop(c *proxyConn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.close(false)
}

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

func (p *faultProxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	c := &proxyConn{client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.close(false)
		return
	}
	p.conns[c] = struct{}{}
	p.wg.Add(2)
	p.mu.Unlock()
	go p.pump(c, server, client, proxyToServer)
	go p.pump(c, client, server, proxyToClient)
}

func (p *faultProxy) drops(d proxyDir) bool {
	switch p.Mode() {
	case proxyBlackhole:
		return true
	case proxyDropReplies:
		return d == proxyToClient
	}
	return false
}

func (p *faultProxy) pump(c *proxyConn, dst, src net.Conn, d proxyDir) {
	defer p.wg.Done()
	defer p.drop(c)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.drops(d) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			p.holdClose(c, d)
			return
		}
	}
}

// holdClose delays passing on a close while its direction drops bytes: the FIN
// would be lost in a real partition too, and the peer must keep believing the
// connection is alive until the link heals or its own timeouts fire.
func (p *faultProxy) holdClose(c *proxyConn, d proxyDir) {
	for {
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		if !p.drops(d) {
			return
		}
		select {
		case <-changed:
		case <-c.done:
			return
		}
	}
}

// proxyEnsemble puts a fault proxy in front of every server of e and returns
// them with a connect string that goes through them.
func proxyEnsemble(t testing.TB, e *zkEnsemble) ([]*faultProxy, string) {
	t.Helper()
	ps := make([]*faultProxy, len(e.Servers))
	addrs := make([]string, len(e.Servers))
	for i, s := range e.Servers {
		ps[i] = newFaultProxy(t, s.Addr())
		addrs[i] = ps[i].Addr()
	}
	return ps, strings.Join(addrs, ",")
}

type proxyGroup []*faultProxy

func (g proxyGroup) SetMode(m proxyMode) {
	for _, p := range g {
		p.SetMode(m)
	}
}

func (g proxyGroup) Reset() {
	for _, p := range g {
		p.Reset()
	}
}
