package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// The request guard holds chunked request bodies to RFC 9112's grammar.
//
// fasthttp decodes a chunked request body leniently: it accepts a chunk
// size followed by whitespace ("a \r\n"), an empty extension ("2;\r\n") and
// anything at all, unbalanced quotes included, after a ";". A proxy in front
// of warden that reads such a line differently would see another body, and
// another request after it. warden re-frames what it forwards, so its
// upstream is safe either way; the proxy in front is not.
//
// So every client connection is wrapped in a guardedConn, which passes bytes
// through untouched (and uncounted) until a handler starts on a chunked
// request. From then on, up to the end of that body's trailer section, it
// follows the chunked framing with chunkedScanner and hands fasthttp only the
// bytes before the first one outside the grammar; the next read fails.
// fasthttp's decoder therefore never sees a bad chunk line, and the request
// fails with 400 where it stands: nothing after the line is forwarded, and a
// body already streaming upstream is cut, never completed.
//
// Where the body starts is the one thing the guard needs from fasthttp: by
// the time the handler runs, fasthttp has read the head and nothing of a
// chunked body, so the body starts at the first byte fasthttp holds buffered
// for the connection. That buffer (a *bufio.Reader) is an unexported field of
// fasthttp's body stream; bodyBuffer reads it through reflection, checked
// once at start, and a test pins it. Should a fasthttp release move it,
// chunked request bodies are refused rather than parsed leniently.

// guardedConn is a client connection behind the request guard. It also
// holds an exchange waiting for a hijack handler (see exchange.hijack).
type guardedConn struct {
	net.Conn
	active bool // following a chunked body
	chunks chunkedScanner
	err    error // the framing error found, returned from then on

	parked atomic.Pointer[exchange]

	adm    *admission // counts the connection out on Close; nil: not counted
	closed atomic.Bool

	// raw is the socket, for the departure watch; set by the watcher
	// goroutine, the only one that uses it, when it first looks.
	raw syscall.RawConn
}

// park hands x to the connection until unpark: if the connection is closed
// first, its Close abandons x.
func (c *guardedConn) park(x *exchange) { c.parked.Store(x) }

// unpark takes x back, and reports false if the connection's Close was
// first (and has abandoned it).
func (c *guardedConn) unpark(x *exchange) bool { return c.parked.CompareAndSwap(x, nil) }

// Close closes the connection, first ending an exchange whose hijack
// handler will never run.
func (c *guardedConn) Close() error {
	if x := c.parked.Swap(nil); x != nil {
		x.abandon()
	}
	if c.adm != nil && c.closed.CompareAndSwap(false, true) {
		c.adm.leave()
	}
	return c.Conn.Close()
}

// guardedTLSConn is a guarded TLS connection: fasthttp recognises TLS by
// these two methods.
type guardedTLSConn struct {
	*guardedConn
	tls *tls.Conn
}

func (c *guardedTLSConn) Handshake() error                     { return c.tls.Handshake() }
func (c *guardedTLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// guarded is what both kinds of guarded connection have.
type guarded interface{ guard() *guardedConn }

func (c *guardedConn) guard() *guardedConn { return c }

// NetConn returns the wrapped connection.
func (c *guardedConn) NetConn() net.Conn { return c.Conn }

func guard(c net.Conn) net.Conn {
	g := &guardedConn{Conn: c}
	if tc, ok := c.(*tls.Conn); ok {
		return &guardedTLSConn{guardedConn: g, tls: tc}
	}
	return g
}

// guardListener puts every accepted connection behind the guard, and
// refuses those past the connection limit (admission.go).
type guardListener struct {
	net.Listener
	adm *admission
}

func (l guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.adm.admit() {
			l.adm.refuse(c)
			continue
		}
		g := guard(c)
		g.(guarded).guard().adm = l.adm
		return g, nil
	}
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if !c.active || n == 0 {
		return n, err
	}
	valid, ferr := c.follow(p[:n])
	if ferr != nil {
		// The bytes before the bad one are fasthttp's; the error comes on
		// the next read, after them.
		c.err = ferr
		if valid == 0 {
			return 0, ferr
		}
		return valid, nil
	}
	return n, err
}

// follow runs the chunked framing over b and returns how many of its bytes
// are within the grammar. Once the body has ended, the rest of b belongs to
// the next request, and the guard goes passive.
func (c *guardedConn) follow(b []byte) (int, error) {
	s := &c.chunks
	i := 0
	for i < len(b) {
		if s.inData() {
			k := int(min(s.remaining, int64(len(b)-i)))
			s.consumeData(k)
			i += k
			continue
		}
		k, err := s.framing(b[i:])
		i += k
		if err != nil {
			return i, err
		}
		if s.done() {
			c.active = false
			return len(b), nil
		}
	}
	return len(b), nil
}

// errUnguarded refuses a chunked body that the guard cannot follow.
var errUnguarded = errors.New("chunked request body on a connection the guard cannot follow")

// guardChunkedBody starts the guard on the chunked body of the request ctx
// holds, and checks at once what fasthttp has already buffered of it. An
// error means the request must be refused with 400 and the connection
// closed.
func guardChunkedBody(ctx *fasthttp.RequestCtx) error {
	g, ok := ctx.Conn().(guarded)
	if !ok {
		return errUnguarded
	}
	br := bodyBuffer(ctx.Request.BodyStream())
	if br == nil {
		return errUnguarded
	}
	c := g.guard()
	if c.err != nil {
		return c.err
	}
	c.active = true
	c.chunks = chunkedScanner{}
	buffered, _ := br.Peek(br.Buffered())
	if _, err := c.follow(buffered); err != nil {
		c.err = err
		return err
	}
	return nil
}

// bodyBuffer returns the buffer a streamed request body is read from: the
// client connection's *bufio.Reader, held by fasthttp's body stream. nil if
// s is not such a stream. Besides the guard's start, it tells copyFixed
// whether more of a body is at hand without waiting for the client.
func bodyBuffer(s io.Reader) *bufio.Reader { return streamField.reader(s) }

func (f streamFieldInfo) reader(s io.Reader) *bufio.Reader {
	if !f.ok || s == nil || reflect.TypeOf(s) != f.typ {
		return nil
	}
	v := reflect.ValueOf(s).Elem().FieldByIndex(f.index)
	return *(**bufio.Reader)(unsafe.Pointer(v.UnsafeAddr())) //nolint:gosec // the field's type is checked in findStreamField
}

// streamField is where fasthttp's request body stream keeps its reader.
var streamField = findStreamField()

type streamFieldInfo struct {
	typ   reflect.Type
	index []int
	ok    bool
}

// findStreamField looks, once, for the *bufio.Reader field of the stream
// fasthttp makes for a chunked request body, and checks that it holds the
// reader the body was read from.
func findStreamField() streamFieldInfo {
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentLength(-1) // chunked
	br := bufio.NewReader(strings.NewReader("0\r\n\r\n"))
	if err := req.ContinueReadBodyStream(br, 0); err != nil {
		return streamFieldInfo{}
	}
	s := req.BodyStream()
	t := reflect.TypeOf(s)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return streamFieldInfo{}
	}
	readerType := reflect.TypeFor[*bufio.Reader]()
	var found []int
	for i := range t.Elem().NumField() {
		if t.Elem().Field(i).Type == readerType {
			if found != nil {
				return streamFieldInfo{} // two candidates: do not guess
			}
			found = []int{i}
		}
	}
	if found == nil {
		return streamFieldInfo{}
	}
	info := streamFieldInfo{typ: t, index: found, ok: true}
	if info.reader(s) != br {
		return streamFieldInfo{}
	}
	return info
}
