package proxy

import (
	"bytes"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// exchange is one request, from its arrival to its end, whatever becomes of
// it: refused at the gate, answered by warden, forwarded upstream, streamed,
// tunnelled. It is pooled: its buffers are reused, so the request path
// allocates nothing once warm.
//
// begin starts an exchange and finish ends it; finish is the only place that
// releases its upstream connection, counts it out of in-flight work, records
// it and returns it to the pool, in that order, and every way a request can
// end calls it once. A streamed response outlives the handler (fasthttp's
// call to CloseWithError ends it), and so does a hijacked connection (the
// hijack handler ends it, or, when fasthttp never runs that handler, the
// connection's close; see hijack).
type exchange struct {
	p      *Proxy
	ctx    *fasthttp.RequestCtx
	client net.Conn  // ctx's connection, for the departure watch
	start  time.Time // the request's arrival
	watch  watchEntry

	head   []byte           // the request head sent upstream
	tokens connectionTokens // header names listed in Connection
	xff    []byte           // X-Forwarded-For values received
	// pathBuf is where a deny-path match normalises the path.
	pathBuf []byte
	buf     *[]byte // body copy buffer, from copyBufs while in use

	conn        *conn
	resp        fasthttp.ResponseHeader // the upstream's response head
	body        upstreamBody            // and its body, read from conn
	direct      bool                    // the body goes straight to the client's socket
	upgrade     bool                    // a websocket upgrade: tunnel on 101
	dialing     bool                    // the last error came from connecting
	bodyStarted bool                    // some of the client's body was read
	sent        int64
	eof         bool
	upstreamErr error
	previous    bool // the credentials were the previous secret's

	// Timing, for Server-Timing: when the request head went upstream and
	// when the response headers came back.
	sentAt, headersAt time.Time

	// Stream telemetry: when the last byte of the model's body went to the
	// client (the response head, before the first), and the longest
	// silence so far.
	lastByteAt time.Time
	silence    time.Duration

	// SSE heartbeat state: heartbeat is the silence after which a comment
	// goes out; tail holds the last bytes sent, to tell event boundaries.
	heartbeat time.Duration
	tail      [3]byte
	tailLen   int
}

// begin starts the exchange of a request that arrived at start, and counts
// it in flight.
func (p *Proxy) begin(ctx *fasthttp.RequestCtx, start time.Time) *exchange {
	x := p.exchanges.Get().(*exchange) //nolint:forcetypeassert // the pool holds only *exchange
	x.ctx, x.client, x.start = ctx, ctx.Conn(), start
	p.m.inFlight.Inc()
	return x
}

// finish ends the exchange: the upstream connection, if it holds one, goes
// back to the pool (reuse) or is closed; the request is counted out of
// in-flight work and recorded (metrics, access log) with the status it got,
// the bytes of body sent and the cause of an error; the exchange goes back
// to its pool. x must not be used afterwards.
func (x *exchange) finish(status int, sent int64, cause string, reuse bool) {
	p := x.p
	now := time.Now()
	if x.conn != nil {
		p.up.release(x.conn, reuse, now)
		x.conn = nil
	}
	p.record(x.ctx, x.start, now, status, sent, cause, x.previous)
	x.reset()
	p.exchanges.Put(x)
}

// fail answers with one of warden's own errors and finishes the exchange.
func (x *exchange) fail(f failure) {
	writeFailure(&x.ctx.Response, f)
	x.finish(f.status, int64(len(f.body)), f.code, false)
}

// failClosing is fail for a request after which the connection must not
// carry another: its body may be unread, or its framing is in doubt.
// (writeFailure resets the response, the close flag with it, so the flag
// is set after it.)
func (x *exchange) failClosing(f failure) {
	writeFailure(&x.ctx.Response, f)
	x.ctx.SetConnectionClose()
	x.finish(f.status, int64(len(f.body)), f.code, false)
}

// pass ends an exchange that only ran the gate, ahead of the handler, for
// "Expect: 100-continue": the request is not over, and its own exchange in
// ServeHTTP counts and records it. Nothing is recorded here.
func (x *exchange) pass() {
	x.p.m.inFlight.Dec()
	x.reset()
	x.p.exchanges.Put(x)
}

func (x *exchange) reset() {
	if x.buf != nil {
		copyBufs.Put(x.buf)
		x.buf = nil
	}
	x.ctx, x.client = nil, nil
	x.conn = nil
	x.body = upstreamBody{}
	x.resp.Reset()
	x.upgrade, x.dialing, x.bodyStarted, x.eof, x.direct, x.previous = false, false, false, false, false, false
	x.sent = 0
	x.upstreamErr = nil
	x.heartbeat, x.tailLen = 0, 0
	x.lastByteAt, x.silence = time.Time{}, 0
	x.watch = watchEntry{}
	if cap(x.pathBuf) > maxKeptPathBuf {
		x.pathBuf = nil // a rare long path does not stay with the pool
	}
}

// maxKeptPathBuf is the largest deny-path scratch buffer an exchange keeps.
const maxKeptPathBuf = 2 << 10

// record counts a finished request out of in-flight work, in the metrics,
// and in the access log.
func (p *Proxy) record(ctx *fasthttp.RequestCtx, start, now time.Time, status int, sent int64, cause string, previous bool) {
	elapsed := now.Sub(start)
	p.m.inFlight.Dec()
	p.m.code(status).Inc()
	p.m.duration.Observe(elapsed)
	if previous {
		p.m.previousSecret.Inc()
	}
	if !p.cfg.AccessLog {
		return
	}
	if e := p.log.Info(); e.Enabled() {
		var ip [64]byte
		e.Bytes("method", ctx.Method()).
			Bytes("path", rawPath(ctx.Request.Header.RequestURI())).
			Int("status", status).
			Float64("duration_ms", float64(elapsed.Microseconds())/1000).
			Int64("bytes", sent).
			Bytes("client", appendClientIP(ip[:0], ctx.RemoteAddr()))
		if cause != "" {
			e.Str("error_code", cause)
		}
		e.Msg("request")
	}
}

// hijack takes the client's connection over, for a websocket tunnel or an
// HTTP/1.0 body delimited by the close, and runs h on it. fasthttp runs h
// once the handler has returned, unless writing an earlier pipelined
// response to that connection fails first: then it closes the connection
// and never runs h. So the exchange is parked on the connection meanwhile,
// and whichever comes first ends it: h (which must finish it), or the close
// (abandon finishes it). Nothing it holds can leak.
func (x *exchange) hijack(h func(c net.Conn)) {
	g, ok := x.ctx.Conn().(guarded)
	if !ok {
		// Only a connection behind the guard can hand the exchange back.
		x.fail(failUnavailable)
		return
	}
	c := g.guard()
	c.park(x)
	x.ctx.HijackSetNoResponse(true)
	x.ctx.Hijack(func(conn net.Conn) {
		if !c.unpark(x) {
			return // closed first: abandon has finished it
		}
		h(conn)
	})
}

// departed ends an exchange whose client went away while it waited for the
// upstream's response head (the watcher saw it and closed the upstream
// connection). Nothing is sent: the client's connection is closed. The
// access log and warden_requests_total record it as 499, nginx's "client
// closed request".
func (x *exchange) departed() {
	x.p.m.clientGone[phaseWaiting].Inc()
	if e := x.p.log.Debug(); e.Enabled() {
		e.Bytes("path", rawPath(x.ctx.Request.Header.RequestURI())).Msg("the client went away while the model worked: upstream connection closed")
	}
	_ = x.ctx.Conn().Close()
	x.ctx.SetConnectionClose()
	x.finish(statusClientClosed, 0, "client_gone", false)
}

// statusClientClosed records a request whose client left before any answer.
const statusClientClosed = 499

// abandon finishes an exchange whose hijack handler fasthttp never ran: the
// client's connection was closed first.
func (x *exchange) abandon() {
	x.p.m.clientGone[phaseStreaming].Inc()
	x.finish(x.resp.StatusCode(), 0, "client_gone", false)
}

// rawPath is the request target without its query, which may carry tokens.
func rawPath(target []byte) []byte {
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		return target[:i]
	}
	return target
}

// copyBufSize is the buffer an upload is copied through; larger ones were no
// faster (README, Performance). Buffers are pooled apart from exchanges, so
// only requests copying a body hold one.
const copyBufSize = 32 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// downloadBufSize is the buffer a large response body of known length is
// read through, straight from the socket: unlike uploads, a large buffer
// pays here (README, Performance).
const downloadBufSize = 128 << 10

var downloadBufs = sync.Pool{New: func() any { b := make([]byte, downloadBufSize); return &b }}

// buffer returns the exchange's copy buffer, taking one from the pool.
func (x *exchange) buffer() []byte {
	if x.buf == nil {
		x.buf = copyBufs.Get().(*[]byte) //nolint:forcetypeassert // the pool holds only *[]byte
	}
	return *x.buf
}
