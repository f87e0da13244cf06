package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// The upstream request: the head warden writes for the upstream, the body
// it streams after it, and the response head it reads back.

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
		case kindAPIKey:
			if x.p.stripAPIKey || hasTokens && x.tokens.has(k) {
				continue
			}
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
	if at := bytes.LastIndexByte(authority, '@'); at >= 0 {
		authority = authority[at+1:] // drop userinfo (RFC 9110 §4.2.4)
	}
	if len(authority) == 0 {
		return nil, nil, false
	}
	// "http://h" and "http://h?q" leave a target without its leading "/";
	// buildHead adds it.
	return rest[j:], authority, true
}

// roundTrip sends the request upstream and reads the response headers. A
// request that is safe to repeat and met a pooled connection the upstream
// had closed is sent once more on a new connection.
func (x *exchange) roundTrip() error {
	p := x.p
	// Connecting (or waiting for a free connection) counts from the
	// request's arrival; the wait for response headers starts once the
	// request has been sent, however long a large upload took.
	connectBy := x.start.Add(p.cfg.UpstreamTimeout)
	for attempt := 0; ; attempt++ {
		c, dialing, err := p.up.acquire(x.start, connectBy)
		x.dialing = dialing
		if err != nil {
			return err
		}
		x.dialing = false
		c.waiter = x
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
	bw := c.writer()
	if _, err := bw.Write(x.head); err != nil {
		return err
	}
	h := &x.ctx.Request.Header
	if cl := h.ContentLength(); cl > 0 || cl == -1 {
		body := x.ctx.Request.BodyStream()
		if body == nil {
			body = bytes.NewReader(x.ctx.Request.Body())
		}
		x.bodyStarted = true
		var err error
		if cl > 0 {
			err = x.copyFixed(bw, body, int64(cl))
		} else {
			err = x.copyChunked(bw, body)
		}
		if err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	c.dropWriter()
	return nil
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
		err := c.await()
		if err == nil {
			err = h.Read(c.br)
		}
		if err != nil {
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
	x.body.reset(c, responseFraming(x.ctx.IsHead(), code, cl), int64(max(cl, 0)))
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
