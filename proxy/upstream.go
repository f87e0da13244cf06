package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// upstream is a pool of keep-alive connections to the one model server.
//
// fasthttp's HostClient pools connections too, but it applies its read
// timeout to the whole response, body included, and it hides the connection
// from the caller; warden needs a limit on the time to response headers only,
// never on a token stream, and needs to decide per response whether the
// connection can be reused. So warden keeps its own small pool and uses
// fasthttp for the wire format.
type upstream struct {
	addr        string
	dialTimeout time.Duration
	idleTimeout time.Duration
	pools       *bufferPools
	watch       *watcher
	dialFunc    func(addr string, deadline time.Time) (net.Conn, error)

	// slots holds one token per connection in use; its capacity is the
	// limit. Idle connections hold no token.
	slots chan struct{}

	mu     sync.Mutex
	idle   []*conn // most recently used last
	closed bool

	stop chan struct{}
	done chan struct{}
}

// conn is one connection to the upstream. It holds buffers only while it
// uses them (buffers.go).
type conn struct {
	net.Conn
	br        *bufio.Reader // nil while nothing is buffered: reader, dropReader
	bw        *bufio.Writer // nil between requests: writer, dropWriter
	pools     *bufferPools
	src       socketSource
	fill      func(fd uintptr) bool // fillSocket, built once per connection
	fillErr   error
	idleSince time.Time
	// reused is true once the connection has carried a response: a failure
	// on it may then mean the upstream closed it while idle.
	reused bool
	// deadline is the read deadline set on the socket; zero for none.
	deadline time.Time

	// For alive: the socket, and the peek it runs (built once per
	// connection, so that a check allocates nothing).
	raw      syscall.RawConn
	peek     func(fd uintptr) bool
	peekBuf  [1]byte
	peekIdle bool

	// waiter is the exchange using the connection, whose client the
	// watcher looks at while a read waits; nil when none is to be watched
	// (idle in the pool, or carrying a websocket tunnel).
	waiter *exchange
	watch  *watcher
}

// alive reports whether the upstream has left the connection open while it
// sat idle, with one non-blocking peek at the socket: nothing to read
// (EAGAIN) is alive. A pending end of stream or reset means the upstream
// closed it (a restart, an idle timeout of its own) and a request sent on it
// would fail without the model ever seeing it; pending bytes mean the
// upstream sent something nobody asked for, and the connection cannot be
// trusted either.
func (c *conn) alive() bool {
	if c.raw == nil {
		return true // not a socket: an in-memory connection in tests
	}
	c.peekIdle = false
	if err := c.raw.Read(c.peek); err != nil {
		return false
	}
	return c.peekIdle
}

// peekSocket is the body of alive's peek, run by the runtime's poller with
// the socket's descriptor. It never asks to wait.
func (c *conn) peekSocket(fd uintptr) bool {
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.peekBuf[0])), 1, //nolint:gosec // a one-byte buffer of the conn's own, for the length given
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	c.peekIdle = errno == unix.EAGAIN
	return true
}

// setReadDeadline sets the read deadline and remembers it.
func (c *conn) setReadDeadline(t time.Time) error {
	if t.Equal(c.deadline) {
		return nil
	}
	c.deadline = t
	return c.SetReadDeadline(t)
}

// awaitBy makes sure reads on c fail at about t: it keeps a deadline already
// set up to slack earlier than t rather than setting one per request, since
// a deadline is a runtime timer update. A response that comes by t-slack is
// never cut; one that never comes times out between t-slack and t.
func (c *conn) awaitBy(t time.Time, slack time.Duration) error {
	if !c.deadline.IsZero() && !c.deadline.After(t) && t.Sub(c.deadline) <= slack {
		return nil
	}
	return c.setReadDeadline(t)
}

type upstreamConfig struct {
	addr        string
	maxConns    int
	dialTimeout time.Duration
	idleTimeout time.Duration
	readBuf     int
	writeBuf    int
	// dial replaces TCP dialing in tests; nil dials TCP.
	dial func(addr string, deadline time.Time) (net.Conn, error)
	// watch is the proxy's departure watch (watch.go).
	watch *watcher
}

func newUpstream(c upstreamConfig) *upstream {
	u := &upstream{
		addr:        c.addr,
		dialTimeout: c.dialTimeout,
		idleTimeout: c.idleTimeout,
		pools:       newBufferPools(c.readBuf, c.writeBuf),
		dialFunc:    c.dial,
		watch:       c.watch,
		slots:       make(chan struct{}, c.maxConns),
		idle:        make([]*conn, 0, min(c.maxConns, 1024)),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	go u.reap()
	return u
}

// acquire returns a connection, reusing the most recently idle one or dialing
// a new one. It waits for a free slot until deadline when all are in use.
// now is the caller's clock reading, for the idle check.
func (u *upstream) acquire(now, deadline time.Time) (c *conn, dialing bool, err error) {
	select {
	case u.slots <- struct{}{}:
	default:
		if err := u.waitSlot(deadline); err != nil {
			return nil, false, err
		}
	}
	if c := u.popIdle(now); c != nil {
		return c, false, nil
	}
	c, err = u.dial(deadline)
	if err != nil {
		<-u.slots
		return nil, true, err
	}
	return c, true, nil
}

func (u *upstream) waitSlot(deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case u.slots <- struct{}{}:
		return nil
	case <-t.C:
		return errBusy
	}
}

// popIdle returns the most recently used idle connection that has not been
// idle too long and that the upstream has not closed, closing the ones that
// are either.
func (u *upstream) popIdle(now time.Time) *conn {
	for {
		u.mu.Lock()
		n := len(u.idle)
		if n == 0 {
			u.mu.Unlock()
			return nil
		}
		c := u.idle[n-1]
		u.idle[n-1] = nil
		u.idle = u.idle[:n-1]
		u.mu.Unlock()
		if now.Sub(c.idleSince) >= u.idleTimeout {
			// Past its idle time the upstream may be closing it right now
			// (uvicorn closes after 5 s): never send a request on it.
			_ = c.Close()
			continue
		}
		if now.Sub(c.idleSince) < checkAfterIdle || c.alive() {
			return c
		}
		// The upstream closed it while it was idle. When one goes, the
		// others have usually gone the same way (the model server
		// restarted): check them all now rather than handing each to a
		// request in turn.
		_ = c.Close()
		u.sweep()
	}
}

// checkAfterIdle is how long a connection must have been idle before alive
// is asked about it. The check is a system call (README, Performance), and
// under load connections are reused within microseconds; no model server
// restarts that fast, so a connection idle for less is trusted.
const checkAfterIdle = time.Millisecond

// sweep closes the idle connections that the upstream has closed, and keeps
// the others in their order.
func (u *upstream) sweep() {
	u.mu.Lock()
	taken := u.idle
	u.idle = make([]*conn, 0, cap(taken))
	u.mu.Unlock()
	alive := taken[:0]
	for _, c := range taken {
		if c.alive() {
			alive = append(alive, c)
		} else {
			_ = c.Close()
		}
	}
	clear(taken[len(alive):])
	u.mu.Lock()
	// Connections released meanwhile are newer: they go after.
	alive = append(alive, u.idle...)
	if u.closed {
		for _, c := range alive {
			_ = c.Close()
		}
		alive = alive[:0]
	}
	u.idle = alive
	u.mu.Unlock()
}

// closeIdle closes every idle connection: the upstream is not accepting
// connections, so the ones it had are dead or dying.
func (u *upstream) closeIdle() {
	u.mu.Lock()
	idle := u.idle
	u.idle = make([]*conn, 0, cap(idle))
	u.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
}

func (u *upstream) dial(deadline time.Time) (*conn, error) {
	var nc net.Conn
	var err error
	if u.dialFunc != nil {
		nc, err = u.dialFunc(u.addr, deadline)
	} else {
		d := net.Dialer{Timeout: u.dialTimeout, Deadline: deadline}
		nc, err = d.Dial("tcp", u.addr)
	}
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, pools: u.pools, watch: u.watch}
	c.src = socketSource{c: c, fd: -1}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.peek = c.peekSocket
			c.fill = c.fillSocket
		}
	}
	return c, nil
}

// release gives a connection back at now. With reuse it joins the idle
// pool; otherwise it is closed.
func (u *upstream) release(c *conn, reuse bool, now time.Time) {
	c.waiter = nil
	if reuse {
		// Reused only when nothing is left to read: the buffers go back.
		c.dropReader()
		c.dropWriter()
		c.reused = true
		c.idleSince = now
		u.mu.Lock()
		if !u.closed && len(u.idle) < cap(u.slots) {
			u.idle = append(u.idle, c)
			u.mu.Unlock()
			<-u.slots
			return
		}
		u.mu.Unlock()
	}
	_ = c.Close()
	<-u.slots
}

// discard closes a connection that is not to be reused.
func (u *upstream) discard(c *conn) { u.release(c, false, time.Time{}) }

// reap closes connections that stayed idle past idleTimeout, so that the
// upstream never has to close them under warden.
func (u *upstream) reap() {
	defer close(u.done)
	period := max(u.idleTimeout/2, 50*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	var expired []*conn
	for {
		select {
		case <-u.stop:
			return
		case now := <-t.C:
			u.mu.Lock()
			// idle is ordered by idleSince, oldest first.
			i := 0
			for i < len(u.idle) && now.Sub(u.idle[i].idleSince) >= u.idleTimeout {
				i++
			}
			expired = append(expired[:0], u.idle[:i]...)
			n := copy(u.idle, u.idle[i:])
			clear(u.idle[n:])
			u.idle = u.idle[:n]
			u.mu.Unlock()
			for j, c := range expired {
				_ = c.Close()
				expired[j] = nil
			}
		}
	}
}

// Close closes the idle connections and stops the reaper. Connections in use
// are closed when they are released.
func (u *upstream) Close() {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return
	}
	u.closed = true
	idle := u.idle
	u.idle = nil
	u.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
	close(u.stop)
	<-u.done
}

// probe reports whether the upstream accepts a TCP connection now.
func (u *upstream) probe(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// errNoResponse is returned when the upstream closed the connection before
// sending a single byte of the response.
var errNoResponse = errors.New("upstream closed the connection without a response")
