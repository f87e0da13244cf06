package proxy

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// Admission: warden serves at most Config.MaxConns client connections at
// once. Each costs memory for as long as it is open, idle or not (README,
// Performance: memory sizing), so past the limit a new connection gets an
// immediate 503 with Retry-After and x-should-retry: true, which clients
// and load balancers retry, instead of a reset, a hang or memory without
// bound. The answer is written by a small, bounded set of goroutines that
// hold no buffers of fasthttp's; past that bound (a flood), a connection is
// closed at once.

// maxRefusing is how many refused connections are answered at once.
const maxRefusing = 64

// refuseTimeout bounds the time spent answering one refused connection.
const refuseTimeout = time.Second

var failTooManyConns = newFailure(503, "too_many_connections", "warden is serving as many connections as it may; retry after the time in Retry-After").retryable()

// admission counts the open client connections against the limit.
type admission struct {
	max      int64
	open     atomic.Int64
	refusing chan struct{}
	answer   []byte // the whole 503 response, built once
	m        *Metrics
}

func newAdmission(max int, m *Metrics) *admission {
	f := failTooManyConns
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 503 Service Unavailable\r\n")
	b.WriteString("Content-Type: application/json\r\n")
	b.WriteString("Cache-Control: no-store\r\n")
	b.WriteString(HeaderError + ": " + f.code + "\r\n")
	b.WriteString("Retry-After: 1\r\n")
	b.WriteString("X-Should-Retry: true\r\n")
	b.WriteString("Connection: close\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(f.body)) + "\r\n\r\n")
	b.Write(f.body)
	return &admission{max: int64(max), refusing: make(chan struct{}, maxRefusing), answer: b.Bytes(), m: m}
}

// admit counts c in and reports whether it may be served.
func (a *admission) admit() bool {
	if a.open.Add(1) <= a.max {
		return true
	}
	a.open.Add(-1)
	return false
}

// leave counts a served connection out.
func (a *admission) leave() { a.open.Add(-1) }

// refuse answers c with the 503 and closes it, in the background.
func (a *admission) refuse(c net.Conn) {
	a.m.connsRefused.Inc()
	select {
	case a.refusing <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-a.refusing }()
		a.answerAndClose(c)
	}()
}

// answerAndClose reads what the client sends with its first request (its
// head, and for TLS the handshake), writes the 503, and closes gracefully:
// closing with unread bytes would reset the connection, and the client
// might lose the answer.
func (a *admission) answerAndClose(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			return
		}
	}
	var buf [1024]byte
	var window []byte // the last bytes read, to find the blank line across reads
	for seen := 0; seen < 64<<10; {
		n, err := c.Read(buf[:])
		seen += n
		window = append(window, buf[:n]...)
		if bytes.Contains(window, []byte("\r\n\r\n")) || err != nil {
			break
		}
		if len(window) > 3 {
			window = append(window[:0], window[len(window)-3:]...)
		}
	}
	if _, err := c.Write(a.answer); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	// Take what else the client sends until it closes, briefly.
	_, _ = io.CopyN(io.Discard, c, 64<<10)
}
