package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// exchange is the state of one request forwarded upstream. It is pooled:
// its buffers are reused, so the request path allocates nothing once warm.
//
// For a streamed response the exchange outlives the handler: it is the body
// stream fasthttp writes to the client, and fasthttp's call to
// CloseWithError ends it.
type exchange struct {
	p   *Proxy
	ctx *fasthttp.RequestCtx

	head   []byte           // the request head sent upstream
	tokens connectionTokens // header names listed in Connection
	xff    []byte           // X-Forwarded-For values received
	buf    *[]byte          // body copy buffer, from copyBufs while in use

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

	// Timing, for Server-Timing: when the request head went upstream and
	// when the response headers came back.
	sentAt, headersAt time.Time

	// SSE heartbeat state: heartbeat is the silence after which a comment
	// goes out; tail holds the last bytes sent, to tell event boundaries.
	heartbeat time.Duration
	tail      [3]byte
	tailLen   int
}

// copyBufSize is the buffer a body is copied through. Larger buffers (up to
// 256 KiB, and splicing socket to socket) were measured and were no faster
// on loopback: the copies cost less than the cache misses. Buffers are
// pooled apart from exchanges, so only requests copying a body hold one.
const copyBufSize = 32 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// downloadBufSize is the buffer a response body of known length is copied
// through. Here, unlike uploads, a large buffer pays: measured with 64 MiB
// downloads on loopback, 128 KiB moved 15-20% more than fasthttp's own copy
// (32 KiB) and more than splicing socket to socket.
const downloadBufSize = 128 << 10

var downloadBufs = sync.Pool{New: func() any { b := make([]byte, downloadBufSize); return &b }}

// buffer returns the exchange's copy buffer, taking one from the pool.
func (x *exchange) buffer() []byte {
	if x.buf == nil {
		x.buf = copyBufs.Get().(*[]byte) //nolint:forcetypeassert // the pool holds only *[]byte
	}
	return *x.buf
}

func (p *Proxy) putExchange(x *exchange) {
	if x.buf != nil {
		copyBufs.Put(x.buf)
		x.buf = nil
	}
	x.ctx = nil
	x.conn = nil
	x.body = upstreamBody{}
	x.resp.Reset()
	x.upgrade, x.dialing, x.bodyStarted, x.eof, x.direct = false, false, false, false, false
	x.sent = 0
	x.upstreamErr = nil
	x.heartbeat, x.tailLen = 0, 0
	p.exchanges.Put(x)
}

// buildHead writes the request head for the upstream into x.head, following
// httputil.ReverseProxy: method and target byte for byte, headers in the
// order received minus hop-by-hop ones and credentials, X-Forwarded-* set,
// and warden's own framing. It reports false for a request that must be
// refused with 400.
func (x *exchange) buildHead() bool {
	h := &x.ctx.Request.Header
	target, authority, ok := requestTarget(h.RequestURI())
	if !ok {
		return false
	}
	b := x.head[:0]
	b = append(b, h.Method()...)
	b = append(b, ' ')
	if len(target) == 0 || target[0] == '?' {
		b = append(b, '/')
	}
	b = append(b, target...)
	// Always HTTP/1.1 upstream, whatever the client spoke (as Go's
	// ReverseProxy does), so the connection can be kept and chunked.
	b = append(b, " HTTP/1.1\r\n"...)

	x.tokens.reset()
	if len(h.Peek(fasthttp.HeaderConnection)) > 0 {
		for k, v := range h.AllInOrder() {
			if classify(k) == kindConnection {
				x.tokens.add(v)
			}
		}
	}
	hasTokens := len(x.tokens.tokens) > 0

	x.xff = x.xff[:0]
	var host []byte
	hostSeen := false
	transferEncodings := 0
	for k, v := range h.AllInOrder() {
		if !validName(k) || !validValue(v) {
			return false
		}
		switch classify(k) {
		case kindTransferEncoding:
			// RFC 9112 §6.1, §6.3: the only coding warden accepts is a
			// single "chunked". fasthttp reads "identity" as an empty body
			// and leaves the rest on the wire: a smuggling vector.
			transferEncodings++
			if transferEncodings > 1 || !equalFold(trimOWS(v), "chunked") {
				return false
			}
			continue
		case kindHop, kindFraming, kindCredentials, kindConnection,
			kindXForwardedHost, kindXForwardedProto, kindUpgrade:
			continue
		case kindXForwardedFor:
			if len(x.xff) > 0 {
				x.xff = append(x.xff, ", "...)
			}
			x.xff = append(x.xff, v...)
			continue
		case kindHost:
			// RFC 9112 §3.2: more than one Host is a bad request.
			if hostSeen {
				return false
			}
			hostSeen = true
			host = v
			if authority != nil {
				// RFC 9112 §3.2.2: the target's authority wins over Host.
				host = authority
			}
			v = host
		default:
			if hasTokens && x.tokens.has(k) {
				continue
			}
		}
		b = appendHeader(b, k, v)
	}
	if !hostSeen {
		if authority == nil && h.IsHTTP11() {
			return false // RFC 9112 §3.2: HTTP/1.1 requires Host.
		}
		host = authority
		if host == nil {
			host = []byte(x.p.cfg.Upstream)
		}
		b = appendHeader(b, []byte(fasthttp.HeaderHost), host)
	}

	b = append(b, "X-Forwarded-For: "...)
	if len(x.xff) > 0 {
		b = append(b, x.xff...)
		b = append(b, ", "...)
	}
	b = appendClientIP(b, x.ctx.RemoteAddr())
	b = append(b, "\r\n"...)
	if len(host) > 0 {
		b = appendHeader(b, []byte("X-Forwarded-Host"), host)
	}
	if x.ctx.IsTLS() {
		b = append(b, "X-Forwarded-Proto: https\r\n"...)
	} else {
		b = append(b, "X-Forwarded-Proto: http\r\n"...)
	}

	if x.upgrade {
		// RFC 6455 §4.1: the one hop-by-hop pair a websocket handshake
		// must carry to the next hop.
		b = append(b, "Upgrade: websocket\r\nConnection: Upgrade\r\n"...)
	}

	switch cl := h.ContentLength(); {
	case cl > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(cl), 10)
		b = append(b, "\r\n"...)
	case cl == -1:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case len(h.Peek(fasthttp.HeaderContentLength)) > 0:
		// The client said "Content-Length: 0"; say it too.
		b = append(b, "Content-Length: 0\r\n"...)
	}
	b = append(b, "\r\n"...)
	x.head = b
	return true
}

func appendHeader(b, k, v []byte) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	b = append(b, v...)
	return append(b, "\r\n"...)
}

// requestTarget returns the target to send upstream. Origin-form ("/p?q")
// and asterisk-form ("*") pass byte for byte. Absolute-form
// ("http://host/p?q", RFC 9112 §3.2.2) becomes origin-form, and its
// authority is returned to replace Host; the request still goes to the
// configured upstream and nowhere else. The returned target may lack the
// leading "/" of an absolute-form target with an empty path.
func requestTarget(raw []byte) (target, authority []byte, ok bool) {
	if len(raw) == 0 {
		return nil, nil, false
	}
	if raw[0] == '/' || (len(raw) == 1 && raw[0] == '*') {
		return raw, nil, true
	}
	i := 0
	for i+2 < len(raw) && (raw[i] != ':' || raw[i+1] != '/' || raw[i+2] != '/') {
		i++
	}
	if i+2 >= len(raw) || i == 0 {
		return nil, nil, false
	}
	scheme := raw[:i]
	if !equalFold(scheme, "http") && !equalFold(scheme, "https") {
		return nil, nil, false
	}
	rest := raw[i+3:]
	j := 0
	for j < len(rest) && rest[j] != '/' && rest[j] != '?' {
		j++
	}
	authority = rest[:j]
	if at := lastIndexByte(authority, '@'); at >= 0 {
		authority = authority[at+1:] // drop userinfo (RFC 9110 §4.2.4)
	}
	if len(authority) == 0 {
		return nil, nil, false
	}
	// "http://h" and "http://h?q" leave a target without its leading "/";
	// buildHead adds it.
	return rest[j:], authority, true
}

func lastIndexByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// roundTrip sends the request upstream and reads the response headers. A
// request that is safe to repeat and met a pooled connection the upstream
// had closed is sent once more on a new connection.
func (x *exchange) roundTrip() error {
	p := x.p
	// Connecting (or waiting for a free connection) counts from the
	// request's arrival; the wait for response headers starts once the
	// request has been sent, however long a large upload took.
	connectBy := x.ctx.Time().Add(p.cfg.UpstreamTimeout)
	for attempt := 0; ; attempt++ {
		c, dialing, err := p.up.acquire(x.ctx.Time(), connectBy)
		x.dialing = dialing
		if err != nil {
			return err
		}
		x.dialing = false
		x.sentAt = time.Now()
		err = x.send(c)
		if err == nil || !errors.Is(err, errClientBody) && !errors.Is(err, errBodyTooLarge) {
			// Read the answer even after a failed write: the upstream may
			// have refused the body with a response before closing. The
			// wait starts once the request is sent; without a body that
			// was at sentAt.
			sent := x.sentAt
			if x.bodyStarted {
				sent = time.Now()
			}
			if rerr := x.readHead(c, sent.Add(p.cfg.UpstreamTimeout)); rerr == nil {
				x.headersAt = time.Now()
				p.m.upstreamWait.Observe(x.headersAt.Sub(x.sentAt))
				x.conn = c
				if err != nil {
					// The request did not go out whole: never reuse.
					x.resp.SetConnectionClose()
				}
				return nil
			} else if err == nil {
				err = rerr
			}
		}
		reused := c.reused
		p.up.discard(c)
		if attempt == 0 && reused && x.retryable() && isConnLost(err) {
			continue
		}
		return err
	}
}

// retryable reports whether the request may be sent twice: an idempotent
// method (RFC 9110 §9.2.2) or an Idempotency-Key, and no body.
func (x *exchange) retryable() bool {
	h := &x.ctx.Request.Header
	if x.bodyStarted || h.ContentLength() > 0 || h.ContentLength() == -1 {
		return false
	}
	if h.IsGet() || h.IsHead() || h.IsOptions() || h.IsTrace() || h.IsPut() || h.IsDelete() {
		return true
	}
	return len(h.Peek("Idempotency-Key")) > 0 || len(h.Peek("X-Idempotency-Key")) > 0
}

// send writes the request head and streams the body, if any.
func (x *exchange) send(c *conn) error {
	if _, err := c.bw.Write(x.head); err != nil {
		return err
	}
	h := &x.ctx.Request.Header
	if cl := h.ContentLength(); cl > 0 || cl == -1 {
		body := x.ctx.Request.BodyStream()
		if body == nil {
			body = bytesReader(x.ctx.Request.Body())
		}
		x.bodyStarted = true
		var err error
		if cl > 0 {
			err = x.copyFixed(c.bw, body, int64(cl))
		} else {
			err = x.copyChunked(c.bw, body)
		}
		if err != nil {
			return err
		}
	}
	return c.bw.Flush()
}

// copyFixed copies exactly n bytes of the client's body, each piece on to
// the upstream as it comes.
func (x *exchange) copyFixed(w *bufio.Writer, r io.Reader, n int64) error {
	client := bodyBuffer(r) // what of the body has arrived and waits to be read
	for n > 0 {
		buf := x.buffer()
		m, err := r.Read(buf[:min(int64(len(buf)), n)])
		if m > 0 {
			n -= int64(m)
			if _, werr := w.Write(buf[:m]); werr != nil {
				return werr
			}
		}
		if n == 0 {
			return nil // send flushes the last piece, with the head if it is all
		}
		if m > 0 && (client == nil || client.Buffered() == 0) {
			// More is coming, maybe slowly: what came goes on now. (The
			// first read brings only the byte fasthttp read ahead; the rest
			// of a small body is buffered behind it, and goes out with the
			// head in one write.)
			if err := w.Flush(); err != nil {
				return err
			}
		}
		if err != nil {
			return errors.Join(errClientBody, err)
		}
	}
	return nil
}

// copyChunked re-frames the client's chunked body (which fasthttp has
// decoded) and flushes every chunk, so that a streamed upload reaches the
// model as it is sent. Trailers are not forwarded.
func (x *exchange) copyChunked(w *bufio.Writer, r io.Reader) error {
	limit := x.p.cfg.MaxBodyBytes
	var total int64
	for {
		buf := x.buffer()
		m, err := r.Read(buf)
		if m > 0 {
			total += int64(m)
			if limit > 0 && total > limit {
				return errBodyTooLarge
			}
			if werr := writeChunk(w, buf[:m]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			_, werr := w.WriteString("0\r\n\r\n")
			return werr
		}
		if err != nil {
			return errors.Join(errClientBody, err)
		}
	}
}

// writeChunk writes one chunk (RFC 9112 §7.1) and flushes it.
func writeChunk(w *bufio.Writer, data []byte) error {
	var size [16]byte
	w.Write(strconv.AppendInt(size[:0], int64(len(data)), 16)) //nolint:errcheck,gosec // bufio errors are sticky: Flush returns them
	w.WriteString("\r\n")                                      //nolint:errcheck,gosec // idem
	w.Write(data)                                              //nolint:errcheck,gosec // idem
	w.WriteString("\r\n")                                      //nolint:errcheck,gosec // idem
	return w.Flush()
}

// maxInterimResponses bounds the informational (1xx) responses skipped
// before the final one.
const maxInterimResponses = 16

var errTooManyInterim = errors.New("too many informational responses from the upstream")

// readHead reads the upstream's response status and headers within the
// deadline, skipping informational responses (RFC 9110 §15.2), and sets up
// the reading of the body, which is left to stream.
func (x *exchange) readHead(c *conn, deadline time.Time) error {
	if err := c.awaitBy(deadline, deadlineSlack(x.p.cfg.UpstreamTimeout)); err != nil {
		return err
	}
	h := &x.resp
	for interim := 0; ; interim++ {
		if err := h.Read(c.br); err != nil {
			if interim == 0 && errors.Is(err, io.EOF) {
				return errNoResponse
			}
			return err
		}
		code := h.StatusCode()
		if code < 100 {
			return errors.New("upstream sent an invalid status code")
		}
		if code >= 200 || code == fasthttp.StatusSwitchingProtocols {
			break
		}
		if interim == maxInterimResponses {
			return errTooManyInterim
		}
	}
	code := h.StatusCode()
	if code == fasthttp.StatusSwitchingProtocols && !x.upgrade {
		// warden forwards Upgrade only for websockets, so any other 101 is
		// a protocol error.
		return errors.New("upstream switched protocols without an Upgrade request")
	}
	cl := h.ContentLength()
	x.body.reset(c.br, responseFraming(x.ctx.IsHead(), code, cl), int64(max(cl, 0)))
	if x.readsOn() {
		// The body (or a websocket) will read from the socket for as long
		// as it runs: no deadline. A body already in the buffer needs none
		// lifted, and the next request's deadline is kept then.
		return c.setReadDeadline(time.Time{})
	}
	return nil
}

// responseFraming tells how a response's body ends (RFC 9112 §6.3), from
// fasthttp's reading of its head: a Content-Length of -1 is chunked, -2
// neither.
func responseFraming(head bool, status, contentLength int) bodyFraming {
	switch {
	case head, status < 200, status == fasthttp.StatusNoContent, status == fasthttp.StatusNotModified:
		return bodyNone
	case contentLength == -1:
		return bodyChunked
	case contentLength >= 0:
		return bodyFixed
	}
	return bodyUntilClose
}

// readsOn reports whether the response, once its headers are read, will
// read more from the socket: a body not yet fully buffered, or a tunnel.
func (x *exchange) readsOn() bool {
	if x.resp.StatusCode() == fasthttp.StatusSwitchingProtocols {
		return true
	}
	switch x.body.framing {
	case bodyNone:
		return false
	case bodyFixed:
		return !x.body.buffered()
	}
	return true
}

// deadlineSlack is how much earlier than asked a kept deadline may fall:
// a tenth of the timeout, at most a second.
func deadlineSlack(timeout time.Duration) time.Duration {
	return min(timeout/10, time.Second)
}

// respond copies the upstream's status and end-to-end headers to the client
// response and hands the body to fasthttp as a stream. The head goes out at
// once unless the whole body is already here to go with it.
func (x *exchange) respond() {
	p := x.p
	ctx := x.ctx
	src := &x.resp
	dst := &ctx.Response.Header
	// Without this, src reports fasthttp's default Content-Type for a
	// response that had none, and it would be copied.
	src.SetNoDefaultContentType(true)

	x.tokens.reset()
	if len(src.Peek(fasthttp.HeaderConnection)) > 0 {
		for k, v := range src.All() {
			if classify(k) == kindConnection {
				x.tokens.add(v)
			}
		}
	}
	hasTokens := len(x.tokens.tokens) > 0
	dst.SetStatusCode(src.StatusCode())
	if msg := src.StatusMessage(); len(msg) > 0 {
		dst.SetStatusMessage(msg)
	}
	for k, v := range src.All() {
		switch classify(k) {
		case kindHop, kindFraming, kindTransferEncoding, kindConnection, kindUpgrade:
			continue
		}
		if hasTokens && x.tokens.has(k) {
			continue
		}
		dst.AddBytesKV(k, v)
	}

	if p.cfg.ServerTiming {
		x.addServerTiming(dst)
	}

	cl := src.ContentLength()
	if x.body.whole() {
		// HEAD, 204, 304 or an empty body: nothing to stream, and the
		// connection can go back to the pool now.
		if cl >= 0 {
			dst.SetContentLength(cl)
		}
		status := src.StatusCode()
		p.up.release(x.conn, x.reusable(), x.headersAt)
		p.putExchange(x)
		p.done(ctx, ctx.Time(), status, 0, "")
		return
	}
	if x.body.framing == bodyFixed {
		if !x.body.buffered() {
			// The rest is still to come, maybe slowly: the head goes out
			// now, and each piece of the body as it arrives.
			ctx.Response.ImmediateHeaderFlush = true
			x.direct = true
		}
		ctx.Response.SetBodyStream(x, cl)
		return
	}
	if p.cfg.SSEHeartbeat > 0 && isEventStream(dst.ContentType()) {
		x.heartbeat = p.cfg.SSEHeartbeat
	}
	if !ctx.Request.Header.IsHTTP11() {
		x.streamHTTP10()
		return
	}
	// Sent chunked, each piece flushed as it comes; the head at once, as a
	// token stream may take a while to produce its first event.
	ctx.Response.ImmediateHeaderFlush = true
	ctx.Response.SetBodyStream(x, -1)
}

// streamHTTP10 sends a body of unknown length to an HTTP/1.0 client, which
// cannot read chunked encoding (RFC 9112 §6.1): the body is delimited by
// closing the connection. fasthttp would chunk any streamed body, so warden
// takes the connection over and writes the response itself. This is the only
// path that costs a goroutine; HTTP/1.0 clients are rare.
//
// A close is all such a client has to tell the end of the body by, so when
// the upstream breaks the body off, the connection is reset instead: a
// client that checks how its connection ended can tell a cut body from a
// whole one; one that does not, cannot.
func (x *exchange) streamHTTP10() {
	ctx := x.ctx
	h := &ctx.Response.Header
	b := x.head[:0]
	b = append(b, "HTTP/1.0 "...)
	b = strconv.AppendInt(b, int64(h.StatusCode()), 10)
	b = append(b, ' ')
	if msg := x.resp.StatusMessage(); len(msg) > 0 {
		b = append(b, msg...)
	} else {
		b = append(b, fasthttp.StatusMessage(h.StatusCode())...)
	}
	b = append(b, "\r\n"...)
	for k, v := range h.All() {
		if classify(k) == kindOther {
			b = appendHeader(b, k, v)
		}
	}
	b = append(b, "Connection: close\r\n\r\n"...)
	x.head = b
	raw := ctx.Conn()
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		_, err := c.Write(x.head)
		if err == nil {
			_, err = x.copyBody(c)
		}
		cut := x.upstreamErr != nil
		_ = x.CloseWithError(err)
		if cut {
			abort(raw)
		}
	})
}

// abort resets a client connection (RST rather than FIN), and for TLS sends
// no close_notify: both would say the body before it was whole.
func abort(c net.Conn) {
	for {
		switch v := c.(type) {
		case *net.TCPConn:
			_ = v.SetLinger(0)
			_ = v.Close()
			return
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			_ = c.Close()
			return
		}
	}
}

// reusable reports whether the upstream connection can carry another
// request once this response has been read: not if the upstream asked to
// close it or delimited the body by closing it, nor if it sent bytes beyond
// the response, which would be mistaken for the start of the next one.
func (x *exchange) reusable() bool {
	return !x.resp.ConnectionClose() && x.body.framing != bodyUntilClose && x.conn.br.Buffered() == 0
}

// addServerTiming adds "Server-Timing: warden;dur=…, upstream;dur=…" in
// milliseconds: upstream is from sending the request to its response
// headers (the model's time to first byte), warden is the rest of the time
// from the request's arrival to now.
func (x *exchange) addServerTiming(dst *fasthttp.ResponseHeader) {
	total := x.headersAt.Sub(x.ctx.Time())
	upstream := x.headersAt.Sub(x.sentAt)
	b := x.xff[:0] // free again: X-Forwarded-For went out with the head
	b = append(b, "warden;dur="...)
	b = appendMillis(b, max(total-upstream, 0))
	b = append(b, ", upstream;dur="...)
	b = appendMillis(b, upstream)
	dst.AddBytesKV(strServerTiming, b)
	x.xff = b
}

// appendMillis appends d in milliseconds with three decimals ("12.345").
func appendMillis(b []byte, d time.Duration) []byte {
	us := d.Microseconds()
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	return append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

var strServerTiming = []byte("Server-Timing")

func isEventStream(contentType []byte) bool {
	const sse = "text/event-stream"
	if len(contentType) < len(sse) || !equalFold(contentType[:len(sse)], sse) {
		return false
	}
	rest := contentType[len(sse):]
	return len(rest) == 0 || rest[0] == ';' || rest[0] == ' '
}

var heartbeatComment = []byte(": keep-alive\n\n")

// SupportsBodyWriteTo tells fasthttp to hand the body to WriteTo, whatever
// its length: warden copies it in its own loop.
func (x *exchange) SupportsBodyWriteTo() bool { return true }

// WriteTo copies the response body to the client. fasthttp passes a writer
// that frames each Write as a chunk and flushes it (a body of unknown
// length), or one that buffers until full (a sized body). A sized body that
// is not all here yet goes straight to the client's socket instead, after
// the head (which ImmediateHeaderFlush has sent), so that nothing waits in a
// buffer while the upstream is slow.
func (x *exchange) WriteTo(w io.Writer) (int64, error) {
	if x.direct {
		w = x.ctx.Conn()
	}
	return x.copyBody(w)
}

// copyBody copies the upstream's body to w as it arrives, each write what
// the connection's buffer holds of it (no buffer of the exchange's own, so a
// stream waiting for its next event holds nothing but its connection), until
// the body ends or either side fails. A large sized body still to come is
// read straight from the socket through a larger buffer instead.
//
// With an SSE heartbeat, a wait that starts between events is bounded by the
// heartbeat interval; if nothing came, an SSE comment goes out instead, so
// that idle timeouts in front of warden do not cut a stream that is only
// slow (a long prefill).
func (x *exchange) copyBody(w io.Writer) (written int64, err error) {
	var big *[]byte
	defer func() {
		if big != nil {
			downloadBufs.Put(big)
		}
	}()
	b := &x.body
	for {
		if x.heartbeat > 0 && b.waits() && x.atEventBoundary() && x.silentFor(x.heartbeat) {
			n, werr := w.Write(heartbeatComment)
			written += int64(n)
			x.sent += int64(n)
			x.p.m.heartbeats.Inc()
			if werr != nil {
				return written, werr
			}
			continue
		}
		var span []byte
		var rerr error
		fromSocket := b.framing == bodyFixed && b.waits() && b.left >= downloadBufSize
		if fromSocket {
			if big == nil {
				big = downloadBufs.Get().(*[]byte) //nolint:forcetypeassert // the pool holds only *[]byte
			}
			var n int
			n, rerr = b.Read(*big)
			span = (*big)[:n]
		} else {
			span, rerr = b.next()
		}
		if len(span) > 0 {
			n, werr := w.Write(span)
			if !fromSocket {
				b.consume(n)
			}
			written += int64(n)
			x.sent += int64(n)
			if x.heartbeat > 0 {
				x.remember(span[:n])
			}
			if werr != nil {
				return written, werr
			}
		}
		switch {
		case errors.Is(rerr, io.EOF):
			x.eof = true
			return written, nil
		case rerr != nil:
			x.upstreamErr = rerr
			return written, rerr
		case len(span) == 0 && b.whole():
			x.eof = true
			return written, nil
		}
	}
}

// silentFor waits up to d for the upstream to send something, and reports
// whether it stayed silent. Only a Peek waits with that deadline, so the
// body's parser never sees the timeout; any other failure is the body's.
func (x *exchange) silentFor(d time.Duration) bool {
	c := x.conn
	_ = c.setReadDeadline(time.Now().Add(d))
	_, err := c.br.Peek(1)
	_ = c.setReadDeadline(time.Time{})
	if err == nil {
		return false
	}
	if isTimeout(err) {
		return true
	}
	x.body.interrupt(err)
	return false
}

// Read reads the body; fasthttp uses WriteTo, and Read is there for the
// io.Reader that a body stream must be.
func (x *exchange) Read(b []byte) (int, error) {
	n, err := x.body.Read(b)
	x.sent += int64(n)
	switch {
	case errors.Is(err, io.EOF):
		x.eof = true
	case err != nil:
		x.upstreamErr = err
	}
	return n, err
}

// writerOnly hides ReadFrom, so that io.CopyBuffer uses the buffer given.
type writerOnly struct{ io.Writer }

// remember keeps the last bytes sent, to tell event boundaries.
func (x *exchange) remember(b []byte) {
	if len(b) >= len(x.tail) {
		copy(x.tail[:], b[len(b)-len(x.tail):])
		x.tailLen = len(x.tail)
		return
	}
	for _, c := range b {
		copy(x.tail[:], x.tail[1:])
		x.tail[len(x.tail)-1] = c
		x.tailLen = min(x.tailLen+1, len(x.tail))
	}
}

// atEventBoundary reports whether the bytes sent so far end an SSE event
// (a blank line, with any of the three line endings), or none were sent.
func (x *exchange) atEventBoundary() bool {
	if x.tailLen == 0 {
		return true
	}
	t := x.tail[len(x.tail)-x.tailLen:]
	return bytes.HasSuffix(t, []byte("\n\n")) || bytes.HasSuffix(t, []byte("\r\r")) || bytes.HasSuffix(t, []byte("\n\r\n"))
}

// CloseWithError ends the exchange once fasthttp has written the response,
// or failed to. A connection whose body was not read to the end is closed,
// so that the model stops generating for a client that is gone.
func (x *exchange) CloseWithError(werr error) error {
	p := x.p
	complete := x.eof && werr == nil
	cause := ""
	switch {
	case x.upstreamErr != nil:
		cause = "upstream_body"
		p.m.upstreamError("body")
		if e := p.log.Warn(); e.Enabled() {
			e.Err(x.upstreamErr).Msg("upstream broke off the response body")
		}
	case !complete:
		cause = "client_gone"
		p.m.clientGone.Inc()
	}
	p.up.release(x.conn, complete && x.reusable(), time.Now())
	ctx, status, sent := x.ctx, x.resp.StatusCode(), x.sent
	p.putExchange(x)
	p.done(ctx, ctx.Time(), status, sent, cause)
	return nil
}

type byteReader struct {
	b []byte
}

func bytesReader(b []byte) io.Reader { return &byteReader{b} }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
