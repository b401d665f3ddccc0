package main

// The ZooKeeper connection: connect string, digest auth, TLS, logging, and
// the session as hacron sees it. go-zookeeper/zk reports sessions in ways
// that are easy to misread (docs/zookeeper-rules.md, rules 5 and 8); this file
// turns them into one snapshot that says whether the session is usable, its
// id, and the timeout the server granted.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// zkConfig is what a ZooKeeper connection is made from.
type zkConfig struct {
	Connect        string        // "h1:2181,h2:2181/chroot"
	SessionTimeout time.Duration // requested; the server may grant less
	ConnectTimeout time.Duration // how long to wait for a usable session
	AuthFile       string        // digest "user:password", mode 0600
	WorldRead      bool          // with AuthFile: anyone may read (monitoring)
	ClusterRoot    string        // "/hacron/<cluster>" (chroot-relative): the nodes above it are shared ground
	TLSCA          string
	TLSCert        string
	TLSKey         string
}

// defaultZKPort is ZooKeeper's client port, used when a host has none.
const defaultZKPort = "2181"

// parseConnectString splits "h1:2181,h2/chroot" into servers with ports and
// the chroot ("" for none). go-zk does no chroot parsing of its own.
func parseConnectString(s string) (servers []string, chroot string, err error) {
	hosts := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		hosts, chroot = s[:i], s[i:]
		if err := validateZKPath(chroot); err != nil {
			return nil, "", fmt.Errorf("zk connect string %q: chroot: %w", s, err)
		}
		if chroot == "/" {
			chroot = ""
		}
	}
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, "", fmt.Errorf("zk connect string %q: empty host", s)
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			// No port: a bare name or address ("zk1", "10.0.0.1").
			host, port = h, defaultZKPort
			if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
				return nil, "", fmt.Errorf("zk connect string %q: bad host %q", s, h)
			}
			host = strings.Trim(host, "[]")
		}
		if host == "" {
			return nil, "", fmt.Errorf("zk connect string %q: bad host %q", s, h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, "", fmt.Errorf("zk connect string %q: bad port in %q", s, h)
		}
		servers = append(servers, net.JoinHostPort(host, port))
	}
	return servers, chroot, nil
}

// validateZKPath accepts absolute paths without empty, "." or ".." parts
// and without a trailing slash, as ZooKeeper does.
func validateZKPath(p string) error {
	if p == "/" {
		return nil
	}
	if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return fmt.Errorf("%q must start with / and not end with /", p)
	}
	for _, part := range strings.Split(p[1:], "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("%q has an empty, . or .. component", p)
		}
	}
	return nil
}

// readAuthFile reads a digest credential. The file holds a password, so a
// group- or world-readable file is refused rather than trusted.
func readAuthFile(path string) (user, password string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", "", fmt.Errorf("zk auth file: %w", err)
	}
	if fi.Mode().Perm()&0o044 != 0 {
		return "", "", withHint(fmt.Errorf("zk auth file %s is readable by group or others (mode %04o)", path, fi.Mode().Perm()),
			fmt.Sprintf("chmod 600 %s", path))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("zk auth file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	user, password, ok := strings.Cut(strings.TrimSpace(line), ":")
	if !ok || user == "" || password == "" {
		return "", "", fmt.Errorf("zk auth file %s: want one line user:password", path)
	}
	return user, password, nil
}

// tlsConfig builds the client side of ZooKeeper TLS. ServerName is filled
// in per server by the dialer.
func tlsConfig(cfg zkConfig) (*tls.Config, error) {
	if cfg.TLSCA == "" && cfg.TLSCert == "" && cfg.TLSKey == "" {
		return nil, nil
	}
	if cfg.TLSCA == "" || cfg.TLSCert == "" || cfg.TLSKey == "" {
		return nil, errors.New("zk TLS needs all three of --zk-tls-ca, --zk-tls-cert and --zk-tls-key")
	}
	pem, err := os.ReadFile(cfg.TLSCA)
	if err != nil {
		return nil, fmt.Errorf("zk TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("zk TLS CA %s: no PEM certificate found", cfg.TLSCA)
	}
	// ZooKeeper asks for a client certificate by default.
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("zk TLS client certificate: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// staticHosts is a zk.HostProvider that hands out the servers as written,
// round robin. go-zk's default provider resolves names to IP addresses first,
// which would leave the TLS dialer without the name to verify.
type staticHosts struct {
	mu       sync.Mutex
	servers  []string
	next     int
	sinceHit int
}

func (h *staticHosts) Init(servers []string) error {
	h.servers = servers
	return nil
}

func (h *staticHosts) Len() int { return len(h.servers) }

func (h *staticHosts) Next() (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.servers[h.next]
	h.next = (h.next + 1) % len(h.servers)
	retryStart := h.sinceHit >= len(h.servers)
	if retryStart {
		h.sinceHit = 0
	}
	h.sinceHit++
	return s, retryStart
}

func (h *staticHosts) Connected() {
	h.mu.Lock()
	h.sinceHit = 0
	h.mu.Unlock()
}

// session is one snapshot of the connection. Usable means go-zk reported
// StateHasSession and the granted timeout of that session is known; only then
// may anything be trusted (StateConnected is just TCP).
type session struct {
	Conn    *zk.Conn
	State   zk.State
	ID      int64         // 0 before the first session and after an expiry
	Timeout time.Duration // granted by the server for ID
	Changed <-chan struct{}
}

func (s session) Usable() bool {
	return s.Conn != nil && s.State == zk.StateHasSession && s.ID != 0 && s.Timeout > 0
}

// zkClient owns one go-zk connection and can replace it (reopen) when a
// session must be abandoned.
type zkClient struct {
	cfg     zkConfig
	servers []string
	chroot  string
	log     *slog.Logger
	acl     []zk.ACL
	auth    []byte // "user:password", nil without auth
	tls     *tls.Config

	mu      sync.Mutex
	gen     int // which go-zk connection callbacks belong to
	conn    *zk.Conn
	state   zk.State
	id      int64
	timeout time.Duration
	lastErr string
	warned  time.Duration
	changed chan struct{} // closed and replaced on every change
	closed  bool
}

// dialZK connects and waits for a usable session, so that an unreachable
// ensemble is an error instead of go-zk's silent retrying.
func dialZK(ctx context.Context, cfg zkConfig, log *slog.Logger) (*zkClient, error) {
	c, err := newZKClient(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := c.open(); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	if _, err := c.waitUsable(wctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func newZKClient(cfg zkConfig, log *slog.Logger) (*zkClient, error) {
	servers, chroot, err := parseConnectString(cfg.Connect)
	if err != nil {
		return nil, err
	}
	if cfg.SessionTimeout <= 0 {
		return nil, errors.New("session timeout must be positive")
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = cfg.SessionTimeout
	}
	c := &zkClient{cfg: cfg, servers: servers, chroot: chroot, log: log, changed: make(chan struct{})}
	c.acl = zk.WorldACL(zk.PermAll)
	if cfg.AuthFile != "" {
		user, pw, err := readAuthFile(cfg.AuthFile)
		if err != nil {
			return nil, err
		}
		c.auth = []byte(user + ":" + pw)
		c.acl = zk.DigestACL(zk.PermAll, user, pw)
		if cfg.WorldRead {
			c.acl = append(c.acl, zk.WorldACL(zk.PermRead)...)
		}
	}
	if c.tls, err = tlsConfig(cfg); err != nil {
		return nil, err
	}
	return c, nil
}

// open starts a new go-zk connection and forgets the previous one.
func (c *zkClient) open() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return zk.ErrClosing
	}
	c.gen++
	gen := c.gen
	c.state, c.id, c.timeout = zk.StateDisconnected, 0, 0
	c.notifyLocked()
	c.mu.Unlock()

	conn, _, err := zk.Connect(c.servers, c.cfg.SessionTimeout,
		zk.WithHostProvider(&staticHosts{}),
		zk.WithDialer(c.dial),
		zk.WithLogger(zkLogger{c: c, gen: gen}),
		// The "authenticated" info line is how the granted timeout is
		// learned (go-zk keeps it private), so info lines stay on and are
		// routed to debug.
		zk.WithLogInfo(true),
		zk.WithEventCallback(func(ev zk.Event) { c.onEvent(gen, ev) }),
	)
	if err != nil {
		return fmt.Errorf("connect to ZooKeeper at %s: %w", strings.Join(c.servers, ","), err)
	}
	c.mu.Lock()
	if c.gen == gen {
		c.conn = conn
		c.notifyLocked()
	}
	c.mu.Unlock()
	if c.auth != nil {
		// Queued ahead of any other request; go-zk re-sends it on every
		// reconnect by itself.
		go func() {
			if err := conn.AddAuth("digest", c.auth); err != nil && !errors.Is(err, zk.ErrClosing) && !errors.Is(err, zk.ErrConnectionClosed) {
				c.log.Error("zk auth failed", "err", err)
			}
		}()
	}
	return nil
}

func (c *zkClient) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	if c.tls == nil {
		return net.DialTimeout(network, addr, timeout)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg := c.tls.Clone()
	cfg.ServerName = host
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout}, network, addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("TLS to %s: %w", addr, err)
	}
	return conn, nil
}

// reopen abandons the current session: go-zk's Close sends closeSession,
// so the server deletes the session's ephemeral nodes at once when it is
// reachable, and lets them expire otherwise. Used when a node of ours could
// not be deleted and must not stay behind as an orphan.
func (c *zkClient) reopen() error {
	c.mu.Lock()
	old := c.conn
	c.mu.Unlock()
	if old != nil {
		// Close can block for a second or two on a dead link; nothing here
		// waits for it.
		go old.Close()
	}
	return c.open()
}

// Close ends the session for good.
func (c *zkClient) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	conn := c.conn
	c.gen++
	c.state, c.id = zk.StateDisconnected, 0
	c.notifyLocked()
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

func (c *zkClient) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// onEvent runs on go-zk's connection goroutine: it must not block and must
// not call any go-zk method that waits for the server.
func (c *zkClient) onEvent(gen int, ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	c.state = ev.State
	switch ev.State {
	case zk.StateExpired:
		c.id, c.timeout = 0, 0
		c.lastErr = "session expired"
	case zk.StateHasSession:
		// Not usable until the granted timeout is known: see sessionGranted,
		// which go-zk reaches right after this event.
	}
	c.notifyLocked()
}

// sessionGranted is called from go-zk's "authenticated" log line, printed
// right after StateHasSession with the session's id and granted timeout.
func (c *zkClient) sessionGranted(gen int, id int64, timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	c.id, c.timeout = id, timeout
	if timeout != c.cfg.SessionTimeout && c.warned != timeout {
		c.warned = timeout
		c.log.Warn(fmt.Sprintf("ZooKeeper granted a session timeout of %v instead of the requested %v (server minSessionTimeout/maxSessionTimeout); the lease uses %v",
			timeout, c.cfg.SessionTimeout, timeout), "session_timeout", timeout.String())
	}
	c.notifyLocked()
}

func (c *zkClient) noteError(gen int, msg string) {
	c.mu.Lock()
	if gen == c.gen {
		c.lastErr = msg
	}
	c.mu.Unlock()
}

// lastError is what went wrong last while connecting ("" if nothing).
func (c *zkClient) lastError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// snapshot returns the current session. Wait on Changed for the next change.
func (c *zkClient) snapshot() session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return session{Conn: c.conn, State: c.state, ID: c.id, Timeout: c.timeout, Changed: c.changed}
}

// waitUsable waits for a usable session, or says which servers were tried
// and what went wrong last.
func (c *zkClient) waitUsable(ctx context.Context) (session, error) {
	for {
		s := c.snapshot()
		if s.Usable() {
			return s, nil
		}
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return s, zk.ErrClosing
		}
		select {
		case <-s.Changed:
		case <-ctx.Done():
			c.mu.Lock()
			last := c.lastErr
			c.mu.Unlock()
			if last == "" {
				last = "no answer"
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return s, fmt.Errorf("no ZooKeeper session with %s within %v (last error: %s)",
					strings.Join(c.servers, ","), c.cfg.ConnectTimeout, last)
			}
			return s, ctx.Err()
		}
	}
}

// abs puts the chroot in front of a hacron path.
func (c *zkClient) abs(p string) string {
	if p == "/" && c.chroot != "" {
		return c.chroot
	}
	return c.chroot + p
}

// ensurePath creates p (chroot-relative) and its parents as persistent
// nodes; existing nodes are fine. Nodes above the cluster's root get the
// shared ACL, the root and below the cluster's (see acl.go).
func (c *zkClient) ensurePath(conn *zk.Conn, p string) error {
	full := c.abs(p)
	// Nearly always the path is there: one request rather than a create
	// per component, on every direct-mode run.
	if ok, _, err := conn.Exists(full); err == nil && ok {
		return nil
	}
	top := ""
	if c.cfg.ClusterRoot != "" {
		top = c.abs(c.cfg.ClusterRoot)
	}
	for i := 1; i <= len(full); i++ {
		if i < len(full) && full[i] != '/' {
			continue
		}
		node, acl := full[:i], c.acl
		if top != "" && isAbove(node, top) {
			acl = sharedACL
		}
		_, err := conn.Create(node, nil, 0, acl)
		switch {
		case err == nil, errors.Is(err, zk.ErrNodeExists):
		case errors.Is(err, zk.ErrNoAuth):
			// ZooKeeper checks the parent's ACL before it looks whether
			// the node exists: a chroot made by an administrator refuses
			// creates of nodes that are there.
			if ok, _, xerr := conn.Exists(node); xerr != nil || !ok {
				return c.createDenied(conn, node, err)
			}
		default:
			return fmt.Errorf("create %s: %w", node, err)
		}
	}
	return nil
}

// zkLogger routes go-zk's log lines into hacron's logger at debug level:
// they would otherwise land on stderr, and cron mails stderr.
type zkLogger struct {
	c   *zkClient
	gen int
}

func (l zkLogger) Printf(format string, args ...any) {
	if format == "authenticated: id=%d, timeout=%d" && len(args) == 2 {
		id, ok1 := args[0].(int64)
		ms, ok2 := args[1].(int32)
		if ok1 && ok2 {
			l.c.sessionGranted(l.gen, id, time.Duration(ms)*time.Millisecond)
		}
	}
	msg := fmt.Sprintf(format, args...)
	if strings.HasPrefix(format, "failed to connect to") || strings.HasPrefix(format, "authentication failed") {
		l.c.noteError(l.gen, msg)
	}
	l.c.log.Debug(msg, "component", "zk")
}
