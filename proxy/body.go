package proxy

import (
	"errors"
	"io"
)

// bodyFraming is how an upstream response's body ends (RFC 9112 §6.3).
type bodyFraming uint8

const (
	bodyNone       bodyFraming = iota // HEAD, 1xx, 204, 304: no body
	bodyFixed                         // Content-Length
	bodyChunked                       // Transfer-Encoding: chunked
	bodyUntilClose                    // neither: the body ends when the upstream closes
)

// errBodyCut is a body that ended, by a close or a reset, before its framing
// said it would.
var errBodyCut = errors.New("the upstream closed the connection before the end of the response body")

// upstreamBody reads a response body from an upstream connection by its
// framing. A body the upstream broke off is an error, never an end: a
// chunked body is whole only once its last chunk and trailer section have
// arrived, a sized one once all its bytes have. Only a body delimited by the
// close ends at a close, and then only at a clean one (FIN); a reset is an
// error.
//
// Read returns what has arrived without waiting for more: it blocks only
// when it has nothing to return yet, so that whatever the upstream sent goes
// on to the client at once.
type upstreamBody struct {
	c       *conn
	framing bodyFraming
	left    int64 // bodyFixed: bytes still to come
	chunks  chunkedScanner
	err     error // sticky: io.EOF at the end, or why the body failed
}

func (b *upstreamBody) reset(c *conn, framing bodyFraming, length int64) {
	*b = upstreamBody{c: c, framing: framing, left: length}
	if framing == bodyNone || framing == bodyFixed && length == 0 {
		b.err = io.EOF
	}
}

// whole reports whether the body has been read to its end.
func (b *upstreamBody) whole() bool { return errors.Is(b.err, io.EOF) }

// buffered reports whether the rest of the body, to its end, is already in
// the connection's buffer (known only for sized bodies).
func (b *upstreamBody) buffered() bool {
	return b.framing == bodyFixed && b.left <= int64(b.c.buffered())
}

// Read reads body bytes into p. It returns data with a nil error; the end
// (io.EOF) or a failure comes on the call after the last data.
func (b *upstreamBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var err error
	switch b.framing {
	case bodyFixed:
		n, err = b.readFixed(p)
	case bodyUntilClose:
		n, err = b.readUntilClose(p)
	case bodyChunked:
		n, err = b.readChunked(p)
	}
	if err != nil {
		b.err = err
		if n == 0 {
			return 0, err
		}
	}
	return n, nil
}

// next returns the next body bytes that have arrived, without copying them:
// a slice of the connection's buffer, valid until the next call. It waits
// for the upstream only when none are buffered. The caller says with consume
// how many it used. At the end it returns io.EOF; a cut body is an error.
func (b *upstreamBody) next() ([]byte, error) {
	for b.err == nil {
		if err := b.c.await(); err != nil {
			b.interrupt(err)
			break
		}
		br := b.c.br
		avail := int64(br.Buffered())
		switch b.framing {
		case bodyFixed:
			span, _ := br.Peek(int(min(avail, b.left)))
			return span, nil
		case bodyUntilClose:
			span, _ := br.Peek(int(avail))
			return span, nil
		case bodyChunked:
			s := &b.chunks
			if s.inData() {
				span, _ := br.Peek(int(min(avail, s.remaining)))
				return span, nil
			}
			buf, _ := br.Peek(int(avail))
			k, err := s.framing(buf)
			_, _ = br.Discard(k)
			switch {
			case err != nil:
				b.err = err
			case s.done():
				b.err = io.EOF
			}
		}
	}
	return nil, b.err
}

// consume marks n bytes that next returned as used.
func (b *upstreamBody) consume(n int) {
	_, _ = b.c.br.Discard(n)
	switch b.framing {
	case bodyFixed:
		b.left -= int64(n)
		if b.left == 0 {
			b.err = io.EOF
		}
	case bodyChunked:
		b.chunks.consumeData(n)
	}
}

// more reports whether reading on would not wait for the upstream.
func (b *upstreamBody) more() bool { return b.c.buffered() > 0 }

// waits reports whether the next Read would wait for the upstream: the body
// has not ended and nothing of it is buffered.
func (b *upstreamBody) waits() bool { return b.err == nil && !b.more() }

func (b *upstreamBody) readFixed(p []byte) (n int, err error) {
	for n < len(p) && b.left > 0 && (n == 0 || b.more()) {
		var m int
		m, err = b.c.reader().Read(p[n:min(int64(len(p)), int64(n)+b.left)])
		n += m
		b.left -= int64(m)
		if err != nil {
			break
		}
	}
	switch {
	case b.left == 0:
		return n, io.EOF
	case errors.Is(err, io.EOF):
		return n, errBodyCut
	}
	return n, err
}

func (b *upstreamBody) readUntilClose(p []byte) (n int, err error) {
	for n < len(p) && (n == 0 || b.more()) {
		var m int
		m, err = b.c.reader().Read(p[n:])
		n += m
		if err != nil {
			break
		}
	}
	return n, err // io.EOF: the upstream closed cleanly, the end
}

func (b *upstreamBody) readChunked(p []byte) (n int, err error) {
	s := &b.chunks
	for n < len(p) {
		if s.inData() {
			if n > 0 && !b.more() {
				return n, nil
			}
			var m int
			m, err = b.c.reader().Read(p[n:min(int64(len(p)), int64(n)+s.remaining)])
			n += m
			s.consumeData(m)
			if err != nil {
				return n, cutIfEOF(err)
			}
			continue
		}
		if !b.more() {
			if n > 0 {
				return n, nil
			}
			if err = b.c.await(); err != nil {
				return n, cutIfEOF(err)
			}
		}
		br := b.c.br
		buf, _ := br.Peek(br.Buffered())
		k, ferr := s.framing(buf)
		_, _ = br.Discard(k)
		if ferr != nil {
			return n, ferr
		}
		if s.done() {
			return n, io.EOF
		}
	}
	return n, nil
}

func cutIfEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return errBodyCut
	}
	return err
}

// interrupt ends the body with err, a failure met outside Read: the end if
// the body is delimited by a clean close, a cut body otherwise.
func (b *upstreamBody) interrupt(err error) {
	if b.err != nil {
		return
	}
	if b.framing == bodyUntilClose && errors.Is(err, io.EOF) {
		b.err = io.EOF
		return
	}
	b.err = cutIfEOF(err)
}
