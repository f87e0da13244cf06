package proxy

import (
	"errors"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// The response: the upstream's head copied for the client, and its body
// streamed to the client as it arrives.

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
		x.finish(src.StatusCode(), 0, "", x.reusable())
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
		if kind := classify(k); kind == kindOther || kind == kindAPIKey {
			b = appendHeader(b, k, v)
		}
	}
	b = append(b, "Connection: close\r\n\r\n"...)
	x.head = b
	raw := ctx.Conn()
	x.hijack(func(c net.Conn) {
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
	return !x.resp.ConnectionClose() && x.body.framing != bodyUntilClose && x.conn.buffered() == 0
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
			x.sending()
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
		case x.watch.left:
			// Seen while the body was silent: the upstream connection is
			// closed already, and the model stops.
			return written, rerr
		case rerr != nil:
			x.upstreamErr = rerr
			return written, rerr
		case len(span) == 0 && b.whole():
			x.eof = true
			return written, nil
		}
	}
}

// sending records the telemetry of a piece of the model's body about to go
// to the client: the time to its first byte, and the silence before it.
func (x *exchange) sending() {
	now := time.Now()
	if x.lastByteAt.IsZero() {
		x.p.m.firstByte.Observe(now.Sub(x.start))
		x.lastByteAt = x.headersAt
	}
	x.silence = max(x.silence, now.Sub(x.lastByteAt))
	x.lastByteAt = now
}

// streamed reports whether the response body is one of unknown length (a
// token stream, as model servers send them), whose silences are recorded.
func (x *exchange) streamed() bool {
	return x.body.framing != bodyFixed && !x.lastByteAt.IsZero()
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
		p.m.clientGone[phaseStreaming].Inc()
	}
	if x.streamed() {
		// The silence before the body's end counts too.
		p.m.silence.Observe(max(x.silence, time.Since(x.lastByteAt)))
	}
	x.finish(x.resp.StatusCode(), x.sent, cause, complete && x.reusable())
	return nil
}
