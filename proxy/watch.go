package proxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watching departed clients. A model keeps generating for a client that has
// gone until someone closes its connection, and warden would otherwise
// notice a departure only when it next writes to the client: a
// non-streaming completion the client abandoned would run to its end on the
// GPU, and so would a stream still in prefill.
//
// So an exchange that waits for the upstream (for the response head, or for
// the next piece of a body) is on the watch list while it waits, and one
// goroutine for the whole proxy looks, every watchTick, at the client
// connection of each exchange that has been waiting for at least
// watchAfter ticks, with one non-blocking peek at its socket. An end of
// stream or a reset there means the client has gone: the watcher closes the
// upstream connection, which ends the wait (and tells the model server, which
// aborts the request), and the exchange ends as a departure.
//
// A request that does not wait pays nothing for this, and one that waits
// pays a lock and an unlock when it starts waiting and when it stops: no
// goroutine, timer or allocation of its own. Bytes waiting on the client's
// socket (a pipelined request) are not a departure and are left where they
// are. A client that half-closed its connection after sending its request
// (shutdown(SHUT_WR)) cannot be told from one that has gone, and is treated
// as gone, as nginx does. Over TLS only the TCP connection is looked at: a
// client that sends close_notify before closing is seen only by the next
// write.

const (
	// watchTick is how often the watcher looks.
	watchTick = 50 * time.Millisecond
	// watchAfter is how many ticks an exchange waits before the watcher
	// looks at its client: a stream between two close events is not looked
	// at; one silent for 100 to 150 ms is. A departure is seen within
	// (watchAfter+1) ticks, 200 ms.
	watchAfter = 3
)

// The phases in which a departure is seen, labelling
// warden_client_disconnects_total.
const (
	phaseWaiting   uint8 = iota + 1 // before the response head
	phaseStreaming                  // during the response body
)

var phaseNames = [...]string{phaseWaiting: "waiting", phaseStreaming: "streaming"}

// errClientGone ends a wait whose client went away.
var errClientGone = errors.New("the client closed its connection")

// watchEntry is an exchange's place on the watch list.
type watchEntry struct {
	prev, next *exchange
	conn       *conn // the upstream connection waited on
	since      int64 // the watcher's tick when the wait began
	listed     bool
	gone       bool // set by the watcher: the client has gone
	// left stays set once a wait of the exchange ended with its client
	// gone, whatever error the read that waited returned.
	left bool
}

// watcher is the watch list and its goroutine.
type watcher struct {
	mu         sync.Mutex
	head, tail *exchange // oldest first
	tick       atomic.Int64

	// The watcher goroutine's own: the peek it runs and its outcome.
	peekFn   func(fd uintptr)
	peekBuf  [1]byte
	peekGone bool
}

func newWatcher() *watcher {
	w := &watcher{}
	w.peekFn = w.peekSocket
	return w
}

// add puts x on the list while it waits on c.
func (w *watcher) add(x *exchange, c *conn) {
	e := &x.watch
	w.mu.Lock()
	e.conn, e.since, e.listed, e.gone = c, w.tick.Load(), true, false
	e.prev, e.next = w.tail, nil
	if w.tail != nil {
		w.tail.watch.next = x
	} else {
		w.head = x
	}
	w.tail = x
	w.mu.Unlock()
}

// remove takes x off the list once its wait is over, and reports whether the
// watcher found its client gone meanwhile (and closed the upstream
// connection).
func (w *watcher) remove(x *exchange) (gone bool) {
	e := &x.watch
	w.mu.Lock()
	if e.listed {
		w.unlink(x)
	}
	gone = e.gone
	e.left = e.left || gone
	e.conn, e.gone = nil, false
	w.mu.Unlock()
	return gone
}

func (w *watcher) unlink(x *exchange) {
	e := &x.watch
	if e.prev != nil {
		e.prev.watch.next = e.next
	} else {
		w.head = e.next
	}
	if e.next != nil {
		e.next.watch.prev = e.prev
	} else {
		w.tail = e.prev
	}
	e.prev, e.next, e.listed = nil, nil, false
}

// run looks at the clients of long waits every watchTick until stop closes.
func (w *watcher) run(stop <-chan struct{}) {
	t := time.NewTicker(watchTick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			w.look()
		}
	}
}

// look checks the clients of the exchanges that have waited watchAfter
// ticks or more. The list is in the order the waits began, so it stops at
// the first younger one. A departed client's exchange is taken off the
// list, marked, and its upstream connection closed, all under the lock, so
// that the exchange cannot have moved on meanwhile.
func (w *watcher) look() {
	now := w.tick.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	for x := w.head; x != nil; {
		next := x.watch.next
		if now-x.watch.since < watchAfter {
			break
		}
		if w.clientGone(x.client) {
			e := &x.watch
			w.unlink(x)
			e.gone = true
			_ = e.conn.Close()
		}
		x = next
	}
}

// clientGone peeks at a client connection's socket without waiting: an end
// of stream or an error means the client has gone; bytes waiting (a
// pipelined request) or nothing (EAGAIN) mean it has not. A connection that
// is not a TCP socket (an in-memory one, in tests) is never seen as gone.
func (w *watcher) clientGone(c net.Conn) bool {
	raw := rawSocket(c)
	if raw == nil {
		return false
	}
	w.peekGone = false
	if err := raw.Control(w.peekFn); err != nil {
		return true // closed under us
	}
	return w.peekGone
}

func (w *watcher) peekSocket(fd uintptr) {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&w.peekBuf[0])), 1, //nolint:gosec // a one-byte buffer of the watcher's own, for the length given
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		case 0:
			w.peekGone = n == 0 // end of stream
		case unix.EAGAIN:
			w.peekGone = false
		default:
			w.peekGone = true // reset, or the socket is unusable
		}
		return
	}
}

// rawSocket returns the raw socket under a client connection (through the
// guard, and TLS), caching it on the guard; nil when there is none.
func rawSocket(c net.Conn) syscall.RawConn {
	var g *guardedConn
	if gd, ok := c.(guarded); ok {
		g = gd.guard()
	}
	if g != nil && g.raw != nil {
		return g.raw
	}
	inner := c
	for {
		switch v := inner.(type) {
		case *net.TCPConn:
			raw, err := v.SyscallConn()
			if err != nil {
				return nil
			}
			if g != nil {
				g.raw = raw
			}
			return raw
		case interface{ NetConn() net.Conn }:
			inner = v.NetConn()
		default:
			return nil
		}
	}
}
