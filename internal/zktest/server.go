// Package zktest starts real ZooKeeper servers for tests (Debian's
// package, on free loopback ports, in temporary directories) and puts
// fault proxies in front of them: blackholes, lost replies, resets.
package zktest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The ZooKeeper test servers run Debian's packaged ZooKeeper directly on the
// JVM instead of through Server.sh, so that the harness controls flags,
// logging and the process lifetime.
const (
	zkTestJava      = "/usr/bin/java"
	zkTestJar       = "/usr/share/java/zookeeper.jar"
	zkTestSLF4JJar  = "/usr/share/java/slf4j-simple.jar"
	zkTestMainClass = "org.apache.zookeeper.server.quorum.QuorumPeerMain"

	zkTestStartTimeout = 30 * time.Second
	zkTestPollInterval = 50 * time.Millisecond
	zkTestStartTries   = 3
	zkTestLogTailLines = 40
)

// zkTestJVMFlags keep a server's start time near half a second and its RSS
// small on a 2-core machine. zookeeper.jar's manifest Class-Path pulls in its
// dependencies; slf4j-simple is the only logging binding on the class path, so
// everything goes to stderr. /etc/zookeeper/conf is deliberately not on the
// class path: its log4j.properties is inert anyway (no log4j binding) and the
// servers must not depend on the host's ZooKeeper configuration.
var zkTestJVMFlags = []string{
	"-Xmx256m",
	"-Xss512k",
	"-XX:+UseSerialGC",
	"-XX:TieredStopAtLevel=1",
	"-XX:-UsePerfData", // no hsperfdata files left behind in /tmp
	"-Djava.net.preferIPv4Stack=true",
	"-Dzookeeper.admin.enableServer=false",
	// Killing a JVM keeps the page cache, so fsync buys nothing here but latency.
	"-Dzookeeper.forceSync=no",
	"-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
	"-Dorg.slf4j.simpleLogger.showDateTime=true",
	"-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
	"-Dorg.slf4j.simpleLogger.showShortLogName=true",
}

type options struct {
	tickTime          time.Duration
	maxSessionTimeout time.Duration
	extraConfig       []string
	jvmFlags          []string
	classPath         []string
}

// Option changes how NewEnsemble configures and starts its servers.
type Option func(*options)

// WithMaxSessionTimeout sets maxSessionTimeout, the longest session
// timeout the servers grant whatever a client asks for.
func WithMaxSessionTimeout(d time.Duration) Option {
	return func(o *options) { o.maxSessionTimeout = d }
}

// WithTickTime sets tickTime; ZooKeeper derives the default session timeout
// bounds (2 and 20 ticks) and the quorum timeouts from it.
func WithTickTime(d time.Duration) Option {
	return func(o *options) { o.tickTime = d }
}

// WithExtraConfig appends lines to zoo.cfg; later lines override earlier ones.
func WithExtraConfig(lines ...string) Option {
	return func(o *options) { o.extraConfig = append(o.extraConfig, lines...) }
}

// WithJVMFlags appends JVM arguments after the defaults, so a -D or -X given
// here wins over the harness's own.
func WithJVMFlags(flags ...string) Option {
	return func(o *options) { o.jvmFlags = append(o.jvmFlags, flags...) }
}

// WithClassPath adds jars to the server's class path: Debian's
// zookeeper.jar manifest lacks some of Netty's, which TLS needs.
func WithClassPath(jars ...string) Option {
	return func(o *options) { o.classPath = append(o.classPath, jars...) }
}

// Server is one ZooKeeper server of an Ensemble: its ports and files, and
// the JVM currently running it (a restart keeps the ports and data).
type Server struct {
	ID           int // myid, 1-based; Servers[i].ID == i+1
	ClientPort   int
	PeerPort     int // 0 for a standalone server
	ElectionPort int // 0 for a standalone server
	Dir          string
	DataDir      string
	ConfigPath   string

	e *Ensemble

	mu   sync.Mutex
	proc *zkProc

	logMu      sync.Mutex
	logTail    []string
	bindFailed atomic.Bool
}

// zkProc is one run of a server's JVM; a restart gets a new one.
type zkProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the JVM is reaped and its output drained
	err  error         // cmd.Wait's result, valid after done
}

// Addr is the server's client address on loopback.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.ClientPort))
}

// Ensemble is ZooKeeper servers started together, standalone (one) or as a
// quorum, in one directory; Close stops them all.
type Ensemble struct {
	Servers []*Server
	Dir     string

	logf func(format string, args ...any)
	opts options

	mu     sync.Mutex
	closed bool
}

// NewEnsemble starts n ZooKeeper servers (1: standalone, more: a quorum) in a
// fresh directory under dir and returns once all of them serve and one leads.
func NewEnsemble(dir string, n int, logf func(format string, args ...any), opts ...Option) (*Ensemble, error) {
	if n < 1 {
		return nil, fmt.Errorf("zk ensemble: need at least one server, got %d", n)
	}
	if _, err := os.Stat(zkTestJar); err != nil {
		return nil, fmt.Errorf("zk ensemble: %w", err)
	}
	o := options{tickTime: 500 * time.Millisecond}
	for _, opt := range opts {
		opt(&o)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var lastErr error
	for try := 1; try <= zkTestStartTries; try++ {
		e, err := startZKEnsembleOnce(dir, n, logf, o)
		if err == nil {
			return e, nil
		}
		lastErr = err
		// A freshly reserved port can be grabbed by someone else before the
		// JVM binds it; only that race is worth another try.
		if e == nil || !e.bindFailed() {
			break
		}
		logf("zk ensemble: port taken while starting (try %d of %d), retrying on new ports", try, zkTestStartTries)
	}
	return nil, lastErr
}

// startZKEnsembleOnce returns the torn-down ensemble along with an error so
// the caller can tell a bind failure from other causes.
func startZKEnsembleOnce(dir string, n int, logf func(string, ...any), o options) (*Ensemble, error) {
	base, err := os.MkdirTemp(dir, "zk-")
	if err != nil {
		return nil, fmt.Errorf("zk ensemble: %w", err)
	}
	nports := n
	if n > 1 {
		nports = 3 * n
	}
	ports, err := reserveLoopbackPorts(nports)
	if err != nil {
		return nil, fmt.Errorf("zk ensemble: reserving ports: %w", err)
	}
	e := &Ensemble{Dir: base, logf: logf, opts: o}
	for i := range n {
		s := &Server{ID: i + 1, ClientPort: ports[i], e: e}
		if n > 1 {
			s.PeerPort, s.ElectionPort = ports[n+2*i], ports[n+2*i+1]
		}
		s.Dir = filepath.Join(base, fmt.Sprintf("zk%d", s.ID))
		s.DataDir = filepath.Join(s.Dir, "data")
		s.ConfigPath = filepath.Join(s.Dir, "zoo.cfg")
		e.Servers = append(e.Servers, s)
	}
	for _, s := range e.Servers {
		if err := e.writeConfig(s); err != nil {
			return nil, fmt.Errorf("zk ensemble: %w", err)
		}
	}
	for _, s := range e.Servers {
		if err := s.start(); err != nil {
			e.Close()
			return e, err
		}
	}
	if err := e.waitServing(e.Servers, true, zkTestStartTimeout); err != nil {
		e.Close()
		return e, err
	}
	return e, nil
}

// reserveLoopbackPorts holds every listener until all ports are chosen, so the
// kernel cannot hand out the same port twice.
func reserveLoopbackPorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (e *Ensemble) writeConfig(s *Server) error {
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.DataDir, "myid"), fmt.Appendf(nil, "%d\n", s.ID), 0o644); err != nil {
		return err
	}
	o := e.opts
	var b strings.Builder
	fmt.Fprintf(&b, "tickTime=%d\n", o.tickTime.Milliseconds())
	b.WriteString("initLimit=10\nsyncLimit=5\n")
	fmt.Fprintf(&b, "dataDir=%s\n", s.DataDir)
	fmt.Fprintf(&b, "clientPort=%d\n", s.ClientPort)
	b.WriteString("clientPortAddress=127.0.0.1\n")
	b.WriteString("admin.enableServer=false\n")
	b.WriteString("4lw.commands.whitelist=*\n")
	if o.maxSessionTimeout > 0 {
		fmt.Fprintf(&b, "maxSessionTimeout=%d\n", o.maxSessionTimeout.Milliseconds())
	}
	if len(e.Servers) > 1 {
		b.WriteString("standaloneEnabled=false\n")
		b.WriteString("quorumListenOnAllIPs=false\n")
		for _, p := range e.Servers {
			fmt.Fprintf(&b, "server.%d=127.0.0.1:%d:%d\n", p.ID, p.PeerPort, p.ElectionPort)
		}
	}
	for _, l := range o.extraConfig {
		b.WriteString(l + "\n")
	}
	return os.WriteFile(s.ConfigPath, []byte(b.String()), 0o644)
}

// start launches the server's JVM; it fails if the JVM is already running or
// the ensemble is closed.
func (s *Server) start() error {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("zk%d: ensemble is closed", s.ID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.exited() {
		return fmt.Errorf("zk%d: already running", s.ID)
	}

	cp := zkTestJar + ":" + zkTestSLF4JJar
	for _, j := range e.opts.classPath {
		cp += ":" + j
	}
	args := []string{"-cp", cp}
	args = append(args, zkTestJVMFlags...)
	args = append(args, e.opts.jvmFlags...)
	args = append(args, zkTestMainClass, s.ConfigPath)
	cmd := exec.Command(zkTestJava, args...)
	cmd.Dir = s.Dir
	// Own process group so signals reach only the JVM; Pdeathsig so a test
	// binary that dies without running cleanups (timeout panic, ^C) takes its
	// JVMs with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("zk%d: %w", s.ID, err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	s.bindFailed.Store(false)
	if err := cmd.Start(); err != nil {
		// Nothing was written to the pipe; only the descriptors go.
		_ = pr.Close()
		_ = pw.Close()
		return fmt.Errorf("zk%d: starting java: %w", s.ID, err)
	}
	// The JVM holds its own copy of the write end; closing ours lets the
	// reader see EOF when the JVM exits, and loses nothing.
	_ = pw.Close()

	p := &zkProc{cmd: cmd, done: make(chan struct{})}
	s.proc = p
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		s.pumpLog(pr)
	}()
	go func() {
		p.err = cmd.Wait()
		// Waiting for the drain means no log line arrives after Close returns,
		// when logf may belong to a finished test.
		<-drained
		_ = pr.Close() // read to EOF already
		e.logf("zk%d: process exited: %v", s.ID, p.err)
		close(p.done)
	}()
	return nil
}

func (s *Server) pumpLog(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			if strings.Contains(line, "Address already in use") {
				s.bindFailed.Store(true)
			}
			s.logMu.Lock()
			s.logTail = append(s.logTail, line)
			if len(s.logTail) > zkTestLogTailLines {
				s.logTail = s.logTail[len(s.logTail)-zkTestLogTailLines:]
			}
			s.logMu.Unlock()
			s.e.logf("zk%d: %s", s.ID, line)
		}
		if err != nil {
			return
		}
	}
}

func (s *Server) tail() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return strings.Join(s.logTail, "\n")
}

func (p *zkProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (s *Server) current() *zkProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

func (s *Server) running() bool {
	p := s.current()
	return p != nil && !p.exited()
}

// signal sends sig to the server's process group and returns the process to
// wait for, or nil when nothing is running.
func (s *Server) signal(sig syscall.Signal) *zkProc {
	p := s.current()
	if p == nil || p.exited() {
		return nil
	}
	// ESRCH only means the JVM is already gone; the reaper will notice.
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	return p
}

func (s *Server) kill() {
	if p := s.signal(syscall.SIGKILL); p != nil {
		<-p.done
	}
}

func (s *Server) stop() {
	p := s.signal(syscall.SIGTERM)
	if p == nil {
		return
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		s.kill()
	}
}

func (e *Ensemble) server(i int) (*Server, error) {
	if i < 0 || i >= len(e.Servers) {
		return nil, fmt.Errorf("zk ensemble: no server with index %d (have %d)", i, len(e.Servers))
	}
	return e.Servers[i], nil
}

// Close kills every server and waits for it; it is safe to call repeatedly.
func (e *Ensemble) Close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range e.Servers {
		wg.Go(s.kill)
	}
	wg.Wait()
}

// Addrs lists the servers' client addresses, in the order of Servers.
func (e *Ensemble) Addrs() []string {
	addrs := make([]string, len(e.Servers))
	for i, s := range e.Servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// ConnectString is a client connect string naming every server.
func (e *Ensemble) ConnectString() string {
	return strings.Join(e.Addrs(), ",")
}

// Stop shuts server i down gracefully (SIGTERM), escalating to SIGKILL after
// 5 s, and waits for the JVM to exit.
func (e *Ensemble) Stop(i int) error {
	s, err := e.server(i)
	if err != nil {
		return err
	}
	s.stop()
	return nil
}

// Kill crashes server i (SIGKILL) and waits for the JVM to exit.
func (e *Ensemble) Kill(i int) error {
	s, err := e.server(i)
	if err != nil {
		return err
	}
	s.kill()
	return nil
}

// Pause freezes server i (SIGSTOP): it keeps its ports and state but
// answers nothing, as a server that hangs. Resume thaws it.
func (e *Ensemble) Pause(i int) error {
	s, err := e.server(i)
	if err != nil {
		return err
	}
	s.signal(syscall.SIGSTOP)
	return nil
}

// Resume thaws a paused server i (SIGCONT).
func (e *Ensemble) Resume(i int) error {
	s, err := e.server(i)
	if err != nil {
		return err
	}
	s.signal(syscall.SIGCONT)
	return nil
}

// Restart starts a stopped or killed server i again with its old config, data
// and ports, and waits until it serves clients.
func (e *Ensemble) Restart(i int) error {
	return e.RestartWithin(i, zkTestStartTimeout)
}

// RestartWithin is Restart with its own bound: a JVM that starts on a
// machine busy with other tests may take longer than a fresh ensemble's
// start, and killing it to try again only starts the wait over.
func (e *Ensemble) RestartWithin(i int, limit time.Duration) error {
	s, err := e.server(i)
	if err != nil {
		return err
	}
	if err := s.start(); err != nil {
		return err
	}
	if err := e.waitServing([]*Server{s}, false, limit); err != nil {
		s.kill()
		return err
	}
	return nil
}

// Leader returns the index of the running server that leads (or runs
// standalone), polling until timeout.
func (e *Ensemble) Leader(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		var states []string
		for i, s := range e.Servers {
			if !s.running() {
				states = append(states, fmt.Sprintf("zk%d: not running", s.ID))
				continue
			}
			mode, err := SrvrMode(s.Addr())
			if IsLeaderMode(mode) {
				return i, nil
			}
			states = append(states, fmt.Sprintf("zk%d: %s", s.ID, describeMode(mode, err)))
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("zk ensemble: no leader after %v: %s", timeout, strings.Join(states, "; "))
		}
		time.Sleep(zkTestPollInterval)
	}
}

// WaitQuorum waits until a running server leads and every running server has
// joined (reports a Mode).
func (e *Ensemble) WaitQuorum(timeout time.Duration) error {
	var running []*Server
	for _, s := range e.Servers {
		if s.running() {
			running = append(running, s)
		}
	}
	if len(running) == 0 {
		return errors.New("zk ensemble: no server is running")
	}
	return e.waitServing(running, true, timeout)
}

// waitServing polls until every server in ss answers ruok with imok and reports
// a Mode in srvr (ruok alone says imok before the server serves), and, with
// needLeader, one of them leads. It fails early when a JVM exits.
func (e *Ensemble) waitServing(ss []*Server, needLeader bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var notReady []string
		var notReadyServer *Server
		leader := false
		for _, s := range ss {
			if s.bindFailed.Load() {
				return fmt.Errorf("zk%d could not bind a port; last log lines:\n%s", s.ID, s.tail())
			}
			if p := s.current(); p == nil || p.exited() {
				// The exit status is for the person reading a failed test;
				// nothing matches on it.
				status := "not running"
				switch {
				case p == nil:
				case p.err == nil:
					status = "exit status 0"
				default:
					status = p.err.Error()
				}
				return fmt.Errorf("zk%d exited while waiting for it to serve (%s); last log lines:\n%s", s.ID, status, s.tail())
			}
			out, err := FourLetter(s.Addr(), "ruok", time.Second)
			if err != nil || out != "imok" {
				notReady = append(notReady, fmt.Sprintf("zk%d: ruok: %q, %v", s.ID, out, err))
				notReadyServer = s
				continue
			}
			mode, err := SrvrMode(s.Addr())
			if mode == "" {
				notReady = append(notReady, fmt.Sprintf("zk%d: %s", s.ID, describeMode(mode, err)))
				notReadyServer = s
				continue
			}
			leader = leader || IsLeaderMode(mode)
		}
		if len(notReady) == 0 && (leader || !needLeader) {
			return nil
		}
		if time.Now().After(deadline) {
			if notReadyServer == nil {
				return fmt.Errorf("zk ensemble: no leader after %v", timeout)
			}
			return fmt.Errorf("zk ensemble: not serving after %v: %s; last log lines of zk%d:\n%s",
				timeout, strings.Join(notReady, "; "), notReadyServer.ID, notReadyServer.tail())
		}
		time.Sleep(zkTestPollInterval)
	}
}

func (e *Ensemble) bindFailed() bool {
	for _, s := range e.Servers {
		if s.bindFailed.Load() {
			return true
		}
	}
	return false
}

// FourLetter sends a four-letter-word command and returns the whole reply; the
// server closes the connection after answering.
func FourLetter(addr, cmd string, timeout time.Duration) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", err
	}
	out, err := io.ReadAll(conn)
	return string(out), err
}

// SrvrMode returns the "Mode:" of a server's srvr reply: standalone, leader,
// follower or observer; "" while the server does not serve requests.
func SrvrMode(addr string) (string, error) {
	out, err := FourLetter(addr, "srvr", time.Second)
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(out) {
		if mode, ok := strings.CutPrefix(line, "Mode: "); ok {
			return strings.TrimSpace(mode), nil
		}
	}
	return "", fmt.Errorf("srvr: %q", strings.TrimSpace(out))
}

// IsLeaderMode reports whether a SrvrMode answer means the server leads:
// a quorum's leader, or a standalone server.
func IsLeaderMode(mode string) bool {
	return mode == "leader" || mode == "standalone"
}

func describeMode(mode string, err error) string {
	if err != nil {
		return err.Error()
	}
	return "mode " + mode
}

// Start starts n servers for the test and stops them at cleanup; their logs
// are shown only when the test failed.
func Start(t testing.TB, n int, opts ...Option) *Ensemble {
	t.Helper()
	skipShort(t)
	if _, err := os.Stat(zkTestJar); err != nil {
		t.Fatalf("Debian's zookeeper is not installed: run `apt-get install -y zookeeper` (as root)")
	}
	var (
		mu   sync.Mutex
		logs []string
	)
	logf := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		mu.Lock()
		logs = append(logs, line)
		mu.Unlock()
	}
	// Registered before the ensemble's Close so it runs after it and sees
	// every line.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		t.Logf("ZooKeeper server logs:\n%s", strings.Join(logs, "\n"))
	})
	start := time.Now()
	e, err := NewEnsemble(t.TempDir(), n, logf, opts...)
	if err != nil {
		t.Fatalf("starting %d ZooKeeper server(s): %v", n, err)
	}
	t.Cleanup(e.Close)
	t.Logf("started %d ZooKeeper server(s) in %v: %s", n, time.Since(start).Round(time.Millisecond), e.ConnectString())
	return e
}

// shared is one standalone ZooKeeper for the tests of a test binary that do
// not fault the server itself; each test uses paths of its own.
var shared struct {
	once sync.Once
	dir  string
	ens  *Ensemble
	err  error
}

// Shared returns the test binary's shared standalone server, starting it on
// first use; CloseShared stops it (from TestMain, after the tests).
func Shared(t testing.TB) *Ensemble {
	t.Helper()
	skipShort(t)
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "hacron-zk-")
		if shared.err != nil {
			return
		}
		shared.ens, shared.err = NewEnsemble(shared.dir, 1, nil)
	})
	if shared.err != nil {
		t.Fatalf("shared ZooKeeper: %v", shared.err)
	}
	return shared.ens
}

// CloseShared stops the shared server, if it was started.
func CloseShared() {
	if shared.ens != nil {
		shared.ens.Close()
	}
	if shared.dir != "" {
		// After the last test there is no test left to fail; a leftover
		// temporary directory harms no later run.
		_ = os.RemoveAll(shared.dir)
	}
}

// skipShort skips a test that needs ZooKeeper under -short (make unit).
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs ZooKeeper servers (skipped under -short: make unit)")
	}
}
