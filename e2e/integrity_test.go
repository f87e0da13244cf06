package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A response is whole only when its framing says so. Whatever way the
// upstream breaks one off, no client may take what warden sends on for a
// complete answer, and whatever the upstream has sent must reach the client
// at once, headers included.

// scriptedUpstream is a TCP server that reads each request head (and a body
// of known length) and then plays a script: writes separated by pauses, and
// an end (close, reset or keep the connection).
type scriptedUpstream struct {
	ln     net.Listener
	script func(head string, nth int) script // nth: 0 for a connection's first request

	mu    sync.Mutex
	heads []string // every request head received, in order
}

type script struct {
	steps []scriptStep
	end   scriptEnd
}

type scriptStep struct {
	pause time.Duration // before the write
	write string
}

type scriptEnd int

const (
	endClose scriptEnd = iota // FIN
	endReset                  // RST
	endKeep                   // keep the connection for the next request
)

func startScriptedUpstream(t testing.TB, s func(head string, nth int) script) *scriptedUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &scriptedUpstream{ln: ln, script: s}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				u.handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return u
}

func (u *scriptedUpstream) addr() string { return u.ln.Addr().String() }

// received counts the requests whose head contains s.
func (u *scriptedUpstream) received(s string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, h := range u.heads {
		if strings.Contains(h, s) {
			n++
		}
	}
	return n
}

func (u *scriptedUpstream) handle(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for nth := 0; ; nth++ {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		var head bytes.Buffer
		_ = req.Write(&head)
		u.mu.Lock()
		u.heads = append(u.heads, head.String())
		u.mu.Unlock()
		s := u.script(head.String(), nth)
		for _, st := range s.steps {
			time.Sleep(st.pause)
			if _, err := io.WriteString(c, st.write); err != nil {
				return
			}
		}
		switch s.end {
		case endReset:
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			return
		case endClose:
			return
		}
	}
}

// received is what a raw client read of one response: every piece with the
// time it arrived, the response as net/http reads it, and how its body ended.
type received struct {
	sent   time.Time // when the request had been written
	pieces []piece
	resp   *http.Response // nil if no response head could be read
	body   []byte
	// end is nil when the body ended as its framing says (a close-delimited
	// one at a clean close), else the read error: io.ErrUnexpectedEOF for a
	// close short of the framing, ECONNRESET for a reset.
	end error
}

type piece struct {
	at   time.Duration // since sent
	data []byte
}

func (r *received) bytes() []byte {
	var b []byte
	for _, p := range r.pieces {
		b = append(b, p.data...)
	}
	return b
}

// when returns how long after the request the first n bytes had arrived, or
// -1 if they never did.
func (r *received) when(n int) time.Duration {
	got := 0
	for _, p := range r.pieces {
		got += len(p.data)
		if got >= n {
			return p.at
		}
	}
	return -1
}

// headAt is when the whole response head had arrived, or -1.
func (r *received) headAt() time.Duration {
	i := bytes.Index(r.bytes(), []byte("\r\n\r\n"))
	if i < 0 {
		return -1
	}
	return r.when(i + 4)
}

func (r *received) whole() bool { return r.resp != nil && r.end == nil }

func (r *received) reset() bool { return errors.Is(r.end, syscall.ECONNRESET) }

// timedReader records what is read from a connection, and when.
type timedReader struct {
	c net.Conn
	r *received
}

func (t timedReader) Read(p []byte) (int, error) {
	n, err := t.c.Read(p)
	if n > 0 {
		t.r.pieces = append(t.r.pieces, piece{at: time.Since(t.r.sent), data: append([]byte(nil), p[:n]...)})
	}
	return n, err
}

// rawRoundTrip sends req on a new connection and reads one response with
// net/http: its head, then its body until the framing ends it or the
// connection does. A response that neither ends nor is ended within limit
// fails the test.
func rawRoundTrip(t testing.TB, addr, req string, limit time.Duration) *received {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(limit))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	r := &received{sent: time.Now()}
	resp, err := http.ReadResponse(bufio.NewReader(timedReader{c, r}), nil)
	if err != nil {
		r.end = err
	} else {
		r.resp = resp
		r.body, r.end = io.ReadAll(resp.Body)
	}
	if errors.Is(r.end, os.ErrDeadlineExceeded) {
		t.Fatalf("the response neither ended nor was cut within %s; got %q", limit, abbreviate(string(r.bytes())))
	}
	return r
}

const (
	chunkedHead = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
	sseHead     = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
)

func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

func sizedHead(contentType string, n int) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", contentType, n)
}

// cutCase is one way of breaking a response off.
type cutCase struct {
	name  string
	steps []string
	end   scriptEnd
	// whole: the upstream did send a complete response (a control).
	whole bool
}

func cutCases() []cutCase {
	k := strings.Repeat("k", 1024)
	ev := func(i int) string { return fmt.Sprintf("data: {\"token\":%d}\n\n", i) }
	return []cutCase{
		{name: "chunked, cut at a chunk boundary", steps: []string{chunkedHead + chunk(k) + chunk(k)}},
		{name: "chunked, reset at a chunk boundary", steps: []string{chunkedHead + chunk(k) + chunk(k)}, end: endReset},
		{name: "chunked, cut inside a chunk", steps: []string{chunkedHead + chunk(k) + "400\r\n" + k[:100]}},
		{name: "chunked, cut inside a chunk-size line", steps: []string{chunkedHead + chunk(k) + "4"}},
		{name: "chunked, cut after the last chunk, before its CRLF", steps: []string{chunkedHead + chunk(k) + "0\r\n"}},
		{name: "chunked, cut after a chunk's data, before its CRLF", steps: []string{chunkedHead + "400\r\n" + k}},
		{name: "chunked, a malformed chunk size", steps: []string{chunkedHead + chunk(k) + "zz\r\n" + k + "\r\n0\r\n\r\n"}},
		{name: "chunked, a chunk line outside the grammar", steps: []string{chunkedHead + chunk(k) + "400 \r\n" + k + "\r\n0\r\n\r\n"}},
		{name: "SSE, cut between two events", steps: []string{sseHead + chunk(ev(1)), chunk(ev(2))}},
		{name: "SSE, cut inside an event", steps: []string{sseHead + chunk(ev(1)), chunk(ev(2)[:8])}},
		{name: "SSE, reset between two events", steps: []string{sseHead + chunk(ev(1)), chunk(ev(2))}, end: endReset},
		{name: "Content-Length, cut short", steps: []string{sizedHead("application/json", 100000) + k}},
		{name: "Content-Length, reset short", steps: []string{sizedHead("application/json", 100000) + k}, end: endReset},
		{name: "Content-Length SSE, cut between two events", steps: []string{sizedHead("text/event-stream", 1000) + ev(1), ev(2)}},
		{name: "no length, reset", steps: []string{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + k}, end: endReset},
		{name: "no length, SSE, reset between two events", steps: []string{"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + ev(1), ev(2)}, end: endReset},

		// Controls: the same framings, whole.
		{name: "control: chunked, whole", steps: []string{chunkedHead + chunk(k) + chunk(k) + "0\r\n\r\n"}, whole: true},
		{name: "control: chunked with a trailer, whole", steps: []string{chunkedHead + chunk(k) + "0\r\nX-Checksum: 1\r\n\r\n"}, whole: true},
		{name: "control: SSE, whole", steps: []string{sseHead + chunk(ev(1)), chunk(ev(2)) + "0\r\n\r\n"}, whole: true},
		{name: "control: Content-Length, whole", steps: []string{sizedHead("application/json", len(k)) + k}, whole: true},
		{name: "control: no length, closed", steps: []string{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + k}, whole: true},
	}
}

func (c cutCase) script(string, int) script {
	s := script{end: c.end}
	for i, w := range c.steps {
		var pause time.Duration
		if i > 0 {
			pause = 20 * time.Millisecond
		}
		s.steps = append(s.steps, scriptStep{pause: pause, write: w})
	}
	return s
}

func TestResponsesTheUpstreamBrokeOffNeverLookComplete(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		t.Run(proto, func(t *testing.T) {
			for _, tc := range cutCases() {
				t.Run(tc.name, func(t *testing.T) {
					up := startScriptedUpstream(t, tc.script)
					w := startWarden(t, protectedEnv(up.addr()))
					req := "GET /cut " + proto + "\r\nHost: warden.test\r\n" + authField + "\r\n\r\n"
					direct := rawRoundTrip(t, up.addr(), req, 5*time.Second)
					got := rawRoundTrip(t, w.addr, req, 5*time.Second)
					checkCut(t, tc, proto, direct, got)

					m := metrics(t, w)
					cuts := 0
					for _, l := range w.logLines(t) {
						if l["message"] == "request" && l["error_code"] == "upstream_body" {
							cuts++
						}
					}
					want := 1
					if tc.whole {
						want = 0
					}
					if cuts != want {
						t.Errorf("access log lines with error_code upstream_body: %d, want %d", cuts, want)
					}
					if line := fmt.Sprintf("warden_upstream_errors_total{kind=\"body\"} %d", want); !strings.Contains(m, line) {
						t.Errorf("metrics lack %q", line)
					}
				})
			}
		})
	}
}

func checkCut(t *testing.T, tc cutCase, proto string, direct, got *received) {
	t.Helper()
	raw := got.bytes()
	if got.resp == nil || got.resp.StatusCode != 200 {
		t.Fatalf("no 200 through warden: %q (%v)", abbreviate(string(raw)), got.end)
	}
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	chunked := len(got.resp.TransferEncoding) > 0
	if proto == "HTTP/1.0" && chunked {
		t.Errorf("chunked encoding to an HTTP/1.0 client: %q", head)
	}
	if tc.whole {
		if !got.whole() {
			t.Errorf("a whole response arrived cut: %v, %d bytes", got.end, len(got.body))
		}
		if !bytes.Equal(got.body, direct.body) {
			t.Errorf("body through warden differs from the upstream's: %d bytes, want %d", len(got.body), len(direct.body))
		}
		return
	}
	if got.whole() {
		t.Errorf("the cut response looks complete to the client: %d body bytes, %q", len(got.body), head)
	}
	if chunked && bytes.Contains(raw, []byte("\r\n0\r\n")) {
		t.Errorf("the cut chunked response carries a last chunk")
	}
	if !bytes.HasPrefix(direct.body, got.body) {
		t.Errorf("warden sent bytes the upstream did not: %q", abbreviate(string(got.body)))
	}
	if got.resp.ContentLength < 0 && !chunked && !got.reset() {
		t.Errorf("a close-delimited body was cut, and the connection ended with %v, not a reset", got.end)
	}
}

// The response head and every body byte that has arrived reach the client
// at once, whatever the framing, and a later failure cuts the response.
func TestResponseBytesAreNeverHeldBack(t *testing.T) {
	k := strings.Repeat("x", 1000)
	pause := 1500 * time.Millisecond
	cases := []struct {
		name  string
		first string
		then  string // after the pause; empty: the upstream closes
		whole bool
	}{
		{name: "Content-Length", first: sizedHead("application/octet-stream", 100000) + k},
		{name: "chunked", first: chunkedHead + chunk(k)},
		{name: "close-delimited", first: "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n" + k, whole: true},
		{name: "JSON in pieces", first: sizedHead("application/json", 2*len(k)+2) + "[" + k, then: k + "]", whole: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := startScriptedUpstream(t, func(string, int) script {
				s := script{steps: []scriptStep{{write: tc.first}}}
				if tc.then != "" {
					s.steps = append(s.steps, scriptStep{pause: pause, write: tc.then})
				}
				return s
			})
			w := startWarden(t, protectedEnv(up.addr()))
			req := "GET /slow HTTP/1.1\r\nHost: warden.test\r\n" + authField + "\r\n\r\n"
			direct := rawRoundTrip(t, up.addr(), req, 10*time.Second)
			got := rawRoundTrip(t, w.addr, req, 10*time.Second)

			firstBody := len(tc.first) - strings.Index(tc.first, "\r\n\r\n") - 4
			headDirect, headWarden := direct.headAt(), got.headAt()
			rawHeadLen := bytes.Index(got.bytes(), []byte("\r\n\r\n")) + 4
			bodyDirect := direct.when(strings.Index(tc.first, "\r\n\r\n") + 4 + firstBody)
			bodyWarden := got.when(rawHeadLen + firstBody)
			t.Logf("head after %s direct, %s through warden; first %d body bytes after %s direct, %s through warden",
				headDirect, headWarden, firstBody, bodyDirect, bodyWarden)
			// Held back means held for the whole pause; a few milliseconds
			// is the cost of a hop, and a loaded machine may add some.
			const slack = 250 * time.Millisecond
			if headWarden < 0 || headWarden > headDirect+slack {
				t.Errorf("response head held back: %s through warden, %s direct", headWarden, headDirect)
			}
			if bodyWarden < 0 || bodyWarden > bodyDirect+slack {
				t.Errorf("first body bytes held back: %s through warden, %s direct", bodyWarden, bodyDirect)
			}
			if tc.then != "" {
				n := len(got.bytes())
				if at := got.when(n); at < pause {
					t.Errorf("the rest arrived after %s, before the upstream sent it", at)
				}
			}
			if got.whole() != tc.whole {
				t.Errorf("whole = %t (%d body bytes, ended by %v), want %t", got.whole(), len(got.body), got.end, tc.whole)
			}
		})
	}
}

// Before warden has sent anything, an upstream failure is warden's 502.
func TestUpstreamFailingBeforeItsHeadGets502(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		write string
		end   scriptEnd
	}{
		{name: "nothing, closed", end: endClose},
		{name: "nothing, reset", end: endReset},
		{name: "half a status line, closed", write: "HTTP/1.1 20"},
		{name: "half a head, closed", write: "HTTP/1.1 200 OK\r\nContent-Length: 10"},
		{name: "half a head, reset", write: "HTTP/1.1 200 OK\r\nContent-Le", end: endReset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startScriptedUpstream(t, func(string, int) script {
				return script{steps: []scriptStep{{write: tc.write}}, end: tc.end}
			})
			w := startWarden(t, protectedEnv(up.addr()))
			// POST: warden does not send it twice.
			resp, body := do(t, "POST", w.url("/fail"), authHeader(), strings.NewReader("{}"))
			wardenError(t, resp, body, 502, "upstream_error")
		})
	}
}

// The other direction: a request body that the client sends slowly reaches
// the model piece by piece, as it comes, and not once warden has gathered a
// buffer's worth (a model that reads audio or a document as it streams in).
func TestRequestBodyBytesAreNeverHeldBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// requests gets, for each request the upstream reads, the times at
	// which each piece of its body arrived.
	requests := make(chan chan time.Time, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					pieces := make(chan time.Time, 1000)
					requests <- pieces
					buf := make([]byte, 64<<10)
					for {
						n, err := req.Body.Read(buf)
						if n > 0 {
							pieces <- time.Now()
						}
						if err != nil {
							break
						}
					}
					close(pieces)
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
						return
					}
				}
			}()
		}
	}()
	w := startWarden(t, protectedEnv(ln.Addr().String()))
	for _, framing := range []string{"Content-Length: 2000", "Transfer-Encoding: chunked"} {
		t.Run(framing, func(t *testing.T) {
			c, err := net.Dial("tcp", w.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			piece := strings.Repeat("a", 1000)
			first, second := piece, piece
			if strings.HasPrefix(framing, "Transfer") {
				first, second = chunk(piece), chunk(piece)+"0\r\n\r\n"
			}
			_, _ = io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: warden.test\r\n"+authField+"\r\n"+framing+"\r\n\r\n"+first)
			sent := time.Now()
			var pieces chan time.Time
			select {
			case pieces = <-requests:
			case <-time.After(1500 * time.Millisecond):
				t.Fatal("the request did not reach the model within 1.5s")
			}
			select {
			case at := <-pieces:
				t.Logf("the first body bytes reached the model %s after the client sent them", at.Sub(sent))
				if at.Sub(sent) > 250*time.Millisecond {
					t.Errorf("the first body bytes were held back for %s", at.Sub(sent))
				}
			case <-time.After(1500 * time.Millisecond):
				t.Errorf("the first 1000 body bytes did not reach the model within 1.5s: warden holds them")
			}
			_, _ = io.WriteString(c, second)
			for range pieces {
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("answer: %v %v", resp, err)
			}
		})
	}
}
