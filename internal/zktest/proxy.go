package zktest

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Mode is what a Proxy does with the bytes it is handed.
type Mode int

// The modes: a working link and the two ways a real network fails a
// ZooKeeper client without closing anything.
const (
	Pass        Mode = iota // forward bytes both ways
	Blackhole               // read and drop everything, close nothing: a hard partition
	DropReplies             // forward client->server, drop server->client: lost replies
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Blackhole:
		return "blackhole"
	case DropReplies:
		return "drop-replies"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

type proxyDir int

const (
	proxyToServer proxyDir = iota
	proxyToClient
)

// Proxy is a TCP proxy whose links can be cut without the endpoints
// noticing, to simulate partitions and lost packets between a ZooKeeper client
// and a server.
type Proxy struct {
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

// NewProxy listens on a free loopback port and forwards to target in Pass
// mode; it stops, closing every connection, when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fault proxy for %s: %v", target, err)
	}
	p := &Proxy{
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

// Addr is the address for clients to dial instead of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Mode is the mode the proxy is in.
func (p *Proxy) Mode() Mode { return Mode(p.mode.Load()) }

// SetMode switches the mode for open and new connections alike; a close
// held back while its direction dropped bytes is passed on once it no
// longer does.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode.Store(int32(m))
	close(p.changed)
	p.changed = make(chan struct{})
}

// Reset aborts every current connection with an RST on both sides, like a
// middlebox dropping its state; new connections are still accepted.
func (p *Proxy) Reset() {
	for _, c := range p.takeConns() {
		c.close(true)
	}
}

// Conns counts the proxied connections that are currently open.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range p.takeConns() {
		c.close(false)
	}
	p.wg.Wait()
}

func (p *Proxy) takeConns() []*proxyConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
		delete(p.conns, c)
	}
	return cs
}

func (p *Proxy) drop(c *proxyConn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.close(false)
}

func (p *Proxy) accept() {
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

func (p *Proxy) serve(client net.Conn) {
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

func (p *Proxy) drops(d proxyDir) bool {
	switch p.Mode() {
	case Blackhole:
		return true
	case DropReplies:
		return d == proxyToClient
	}
	return false
}

func (p *Proxy) pump(c *proxyConn, dst, src net.Conn, d proxyDir) {
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
func (p *Proxy) holdClose(c *proxyConn, d proxyDir) {
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

// ProxyEnsemble puts a fault proxy in front of every server of e and returns
// them with a connect string that goes through them.
func ProxyEnsemble(t testing.TB, e *Ensemble) ([]*Proxy, string) {
	t.Helper()
	ps := make([]*Proxy, len(e.Servers))
	addrs := make([]string, len(e.Servers))
	for i, s := range e.Servers {
		ps[i] = NewProxy(t, s.Addr())
		addrs[i] = ps[i].Addr()
	}
	return ps, strings.Join(addrs, ",")
}

// ProxyGroup is the proxies in front of every server of an ensemble,
// faulted together: the client cut off from the whole cluster.
type ProxyGroup []*Proxy

// SetMode sets m on every proxy of the group.
func (g ProxyGroup) SetMode(m Mode) {
	for _, p := range g {
		p.SetMode(m)
	}
}

// Reset resets every proxy of the group (see Proxy.Reset).
func (g ProxyGroup) Reset() {
	for _, p := range g {
		p.Reset()
	}
}
