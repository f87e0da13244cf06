package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// isWebsocketUpgrade reports whether a request asks for a websocket
// (RFC 6455 §4.1): GET over HTTP/1.1, "websocket" among the Upgrade tokens
// and "upgrade" among the Connection tokens. Any other Upgrade, h2c
// included, is dropped as a hop-by-hop header.
func isWebsocketUpgrade(h *fasthttp.RequestHeader) bool {
	if !h.IsGet() || !h.IsHTTP11() {
		return false
	}
	upgrade := h.Peek(fasthttp.HeaderUpgrade)
	if len(upgrade) == 0 || !hasToken(upgrade, "websocket") {
		return false
	}
	for k, v := range h.AllInOrder() {
		if classify(k) == kindConnection && hasToken(v, "upgrade") {
			return true
		}
	}
	return false
}

// hasToken reports whether a comma-separated header value holds token,
// ignoring case.
func hasToken(value []byte, token string) bool {
	for v := range bytes.SplitSeq(value, []byte(",")) {
		if equalFold(trimOWS(v), token) {
			return true
		}
	}
	return false
}

// tunnels tracks open websocket tunnels: they are in-flight work that
// fasthttp's Shutdown does not see once their connections are hijacked.
type tunnels struct {
	mu    sync.Mutex
	open  map[*tunnel]struct{}
	close bool
	// empty, when set, is closed once no tunnel is left open.
	empty chan struct{}
}

type tunnel struct {
	client   net.Conn
	upstream *conn
}

// stop ends a tunnel from outside. A hijacked connection's Close does
// nothing in fasthttp (it closes the connection itself once the hijack
// handler returns), so the client side is unblocked with a past deadline.
func (tn *tunnel) stop() {
	_ = tn.client.SetDeadline(aLongTimeAgo)
	_ = tn.upstream.Close()
}

var aLongTimeAgo = time.Unix(1, 0)

// add registers a tunnel, unless shutdown has begun.
func (t *tunnels) add(tn *tunnel) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.close {
		return false
	}
	if t.open == nil {
		t.open = map[*tunnel]struct{}{}
	}
	t.open[tn] = struct{}{}
	return true
}

func (t *tunnels) remove(tn *tunnel) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.open, tn)
	if len(t.open) == 0 && t.empty != nil {
		close(t.empty)
		t.empty = nil
	}
}

func (t *tunnels) closing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.close
}

// whenEmpty returns a channel closed once no tunnel is open (at once if none
// is). Call with t.mu held.
func (t *tunnels) whenEmpty() <-chan struct{} {
	if len(t.open) == 0 {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	if t.empty == nil {
		t.empty = make(chan struct{})
	}
	return t.empty
}

// closeTunnels waits for open websocket tunnels to end until ctx is done,
// then closes the ones left and returns how many. From its start no new
// tunnel opens. Shutdown calls it once the server has stopped accepting
// requests.
func (p *Proxy) closeTunnels(ctx context.Context) (cut int) {
	t := &p.tunnels
	t.mu.Lock()
	t.close = true
	empty := t.whenEmpty()
	t.mu.Unlock()
	select {
	case <-empty:
		return 0
	case <-ctx.Done():
	}
	t.mu.Lock()
	for tn := range t.open {
		tn.stop()
		cut++
	}
	empty = t.whenEmpty()
	t.mu.Unlock()
	<-empty
	return cut
}

// upgradeWebsocket forwards a websocket handshake. If the upstream switches
// protocols, the client's connection is hijacked and bytes are copied both
// ways until either side closes; otherwise the upstream's answer goes back
// as an ordinary response and nothing becomes a tunnel.
//
// The tunnel is registered inside the hijack handler, where its end is
// known: fasthttp may never run that handler (see hijack), and a tunnel
// registered before it would then stay open for ever.
func (x *exchange) upgradeWebsocket() {
	p := x.p
	if x.resp.StatusCode() != fasthttp.StatusSwitchingProtocols {
		// The upstream refused the upgrade: its answer is an ordinary
		// response, and the connection is not reused after it.
		x.resp.SetConnectionClose()
		x.respond()
		return
	}
	if !hasToken(x.resp.Peek(fasthttp.HeaderUpgrade), "websocket") {
		p.m.upstreamError("protocol")
		x.fail(failUpstream)
		return
	}
	if p.tunnels.closing() {
		// Shutting down: do not start a tunnel that would be cut at once.
		x.fail(failUnavailable)
		return
	}

	// The 101 goes out as the upstream sent it, minus hop-by-hop headers,
	// plus the Upgrade and Connection the handshake needs.
	h := &x.resp
	b := x.head[:0]
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\n"...)
	for k, v := range h.All() {
		switch classify(k) {
		case kindHop, kindFraming, kindTransferEncoding, kindConnection, kindUpgrade:
			continue
		}
		b = appendHeader(b, k, v)
	}
	b = append(b, "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"...)
	x.head = b

	x.hijack(func(client net.Conn) {
		x.conn.waiter = nil // the tunnel watches both ends itself
		tn := &tunnel{client: client, upstream: x.conn}
		if !p.tunnels.add(tn) {
			// Shutdown began meanwhile: the client gets no 101, and the
			// connection closes.
			x.finish(fasthttp.StatusServiceUnavailable, 0, failUnavailable.code, false)
			return
		}
		p.m.tunnelsOpen.Inc()
		sent := x.pump(client, x.conn)
		p.m.tunnelsOpen.Dec()
		p.tunnels.remove(tn)
		x.finish(fasthttp.StatusSwitchingProtocols, sent, "", false)
	})
}

// pump copies both ways until either side closes, then ends both, and
// returns the bytes sent to the client. Bytes already read past the
// handshake on either side (in the bufio readers) go first. fasthttp closes
// the client's connection when the hijack handler returns.
func (x *exchange) pump(client net.Conn, upstream *conn) (sent int64) {
	if _, err := client.Write(x.head); err != nil {
		_ = upstream.Close()
		return 0
	}
	toUpstream := make(chan struct{})
	go func() {
		// client is fasthttp's hijacked connection, whose reader holds
		// whatever the client sent after its handshake.
		bp := copyBufs.Get().(*[]byte) //nolint:forcetypeassert // the pool holds only *[]byte
		_, _ = io.CopyBuffer(writerOnly{upstream.Conn}, client, *bp)
		copyBufs.Put(bp)
		_ = upstream.Close() // ends the other direction's read
		close(toUpstream)
	}()
	buf := x.buffer()
	for {
		n, err := upstream.reader().Read(buf)
		if n > 0 {
			if _, werr := client.Write(buf[:n]); werr != nil {
				break
			}
			sent += int64(n)
		}
		if err != nil {
			break
		}
	}
	_ = client.SetDeadline(aLongTimeAgo) // ends the other direction's read
	_ = upstream.Close()
	<-toUpstream
	return sent
}

// writerOnly hides ReadFrom, so that io.CopyBuffer uses the buffer given.
type writerOnly struct{ io.Writer }
