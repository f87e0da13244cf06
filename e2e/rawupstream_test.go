package e2e

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// rawUpstream is a TCP server that records every request's bytes exactly as
// warden sent them, and answers with a canned raw response. It exists for
// the byte-level checks the Go test upstream (net/http) cannot make.
type rawUpstream struct {
	ln       net.Listener
	respond  func(head string) string // raw response for a request head
	closeAll bool                     // close each connection after one response

	mu     sync.Mutex
	heads  []string // raw request line and headers, through the blank line
	bodies [][]byte
	conns  int // connections that carried a request (readiness probes carry none)
	closed int // of those, the ones the peer (warden) closed between requests
}

func startRawUpstream(t testing.TB, respond func(head string) string) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, respond: respond}
	if u.respond == nil {
		u.respond = func(string) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }
	}
	go u.serve()
	t.Cleanup(func() { ln.Close() })
	return u
}

func (u *rawUpstream) addr() string { return u.ln.Addr().String() }

func (u *rawUpstream) serve() {
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		go u.handle(c)
	}
}

func (u *rawUpstream) handle(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for served := 0; ; served++ {
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			head.WriteString(line)
			if err != nil {
				if head.Len() == 0 && served > 0 {
					u.mu.Lock()
					u.closed++
					u.mu.Unlock()
				}
				return
			}
			if line == "\r\n" {
				break
			}
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head.String())))
		if err != nil {
			return
		}
		var body []byte
		switch {
		case req.ContentLength > 0:
			body = make([]byte, req.ContentLength)
			if _, err := io.ReadFull(br, body); err != nil {
				return
			}
		case len(req.TransferEncoding) > 0:
			body, err = io.ReadAll(httputilChunked(br))
			if err != nil {
				return
			}
		}
		u.mu.Lock()
		if served == 0 {
			u.conns++
		}
		u.heads = append(u.heads, head.String())
		u.bodies = append(u.bodies, body)
		u.mu.Unlock()
		if _, err := io.WriteString(c, u.respond(head.String())); err != nil {
			return
		}
		if u.closeAll {
			return
		}
	}
}

// connCounts returns how many connections carried requests, and how many
// of them warden closed between requests.
func (u *rawUpstream) connCounts() (accepted, closedByPeer int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns, u.closed
}

// requests returns the heads recorded so far.
func (u *rawUpstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.heads...)
}

func (u *rawUpstream) lastBody() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		return nil
	}
	return u.bodies[len(u.bodies)-1]
}

// headerLines splits a raw head into its request line and header lines.
func headerLines(head string) (string, []string) {
	lines := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")
	return lines[0], lines[1:]
}

// httputilChunked decodes a chunked body from br.
func httputilChunked(br *bufio.Reader) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		var out bytes.Buffer
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if n == 0 {
				// trailers until the blank line
				for {
					l, err := br.ReadString('\n')
					if err != nil || l == "\r\n" {
						break
					}
				}
				pw.Write(out.Bytes())
				pw.Close()
				return
			}
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(br, buf); err != nil {
				pw.CloseWithError(err)
				return
			}
			out.Write(buf[:n])
		}
	}()
	return pr
}
