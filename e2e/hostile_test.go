package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Hostile input gets a 4xx or a closed connection, never a 5xx, never a
// hang, and never a smuggled request at the upstream.
//
// Every hostile request carries valid credentials, so that it is the input
// that gets refused and not the caller. Where a request could be read as two,
// the second one is a complete request with credentials too, for /smuggled:
// had warden parsed it as a request of its own, it would have forwarded it,
// and the tap on the upstream's connections would have seen it.

const (
	// answerTimeout bounds every exchange: past it, an open connection
	// without an answer is a hang. It is more than the header read timeout of
	// hostileTarget, so that a request warden waits on is answered 408.
	answerTimeout = 5 * time.Second
	// afterAnswer is how long a connection left open after the first answer
	// is watched for what warden does with the bytes that followed.
	afterAnswer = 500 * time.Millisecond

	lastChunk = "0\r\n\r\n"
)

var (
	authField = "Authorization: " + basicAuth(testUser, testPassword)
	// smuggled is a complete, authorised request: if it ever reaches the
	// upstream, warden read the bytes before it with another framing than
	// their sender meant.
	smuggled = rawRequest("GET /smuggled HTTP/1.1", "Host: warden.test", authField)
)

// rawRequest is a request head: the start line, the header lines and the
// blank line, each ended by CRLF.
func rawRequest(start string, lines ...string) string {
	var b strings.Builder
	b.WriteString(start + "\r\n")
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// hostilePost and hostileGet are authorised requests for /hostile with the extra header
// lines given.
func hostilePost(lines ...string) string {
	return rawRequest("POST /hostile HTTP/1.1", append([]string{"Host: warden.test", authField}, lines...)...)
}

func hostileGet(lines ...string) string {
	return rawRequest("GET /hostile HTTP/1.1", append([]string{"Host: warden.test", authField}, lines...)...)
}

// hostileCase is one raw request and what may come of it.
type hostileCase struct {
	name string
	req  string
	// want is the status required; 0 takes any 4xx, or the connection
	// closed without an answer.
	want int
	// code is the X-Warden-Error required along with want.
	code string
	// orClose also takes the connection closed without an answer when want
	// is set.
	orClose bool
	// bodies, when not nil, means that RFC 9112 also lets warden process the
	// request: it may then answer 200, if the upstream received exactly one
	// well-framed request with one of these bodies.
	bodies []string
	// also lists further acceptable statuses (505 for a version).
	also []int
}

// hostileAnswer is what a client saw of one exchange.
type hostileAnswer struct {
	status int // of the first response; 0 for none
	header http.Header
	rest   string // bytes after the first response
	closed bool   // warden closed the connection
	hung   bool   // neither an answer nor a close within answerTimeout
	err    error  // why no first response could be read
}

func (a hostileAnswer) String() string {
	switch {
	case a.hung:
		return "no answer within " + answerTimeout.String() + ", connection still open"
	case a.status == 0 && a.closed:
		return "connection closed without an answer (" + a.err.Error() + ")"
	case a.status == 0:
		return "no HTTP answer: " + a.err.Error()
	}
	s := strconv.Itoa(a.status) + " " + a.header.Get("X-Warden-Error")
	if !a.closed {
		s += ", connection left open"
	}
	if a.rest != "" {
		s += ", then " + strconv.Quote(a.rest)
	}
	return s
}

// sendHostile writes req on a new connection and reads the first response,
// then watches the connection for afterAnswer more.
func sendHostile(t testing.TB, addr, req string) hostileAnswer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(answerTimeout))
	// warden may answer and close before it has read everything (a 431
	// does), so a failed write is no failure: the answer says what happened.
	_, _ = io.WriteString(c, req)

	var a hostileAnswer
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		a.err = err
		a.hung = errors.Is(err, os.ErrDeadlineExceeded)
		a.closed = isPeerClose(err)
		return a
	}
	a.status, a.header = resp.StatusCode, resp.Header
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = c.SetReadDeadline(time.Now().Add(afterAnswer))
	rest, err := io.ReadAll(br)
	a.rest = string(rest)
	a.closed = err == nil || isPeerClose(err)
	return a
}

// isPeerClose reports whether a read error means that the peer closed the
// connection.
func isPeerClose(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// hostileTarget is a warden in protected mode, with a short header read
// timeout, in front of a raw upstream whose connections are tapped.
func hostileTarget(t *testing.T, env map[string]string) (*wardenProc, *upstreamTap) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tap := &upstreamTap{Listener: ln}
	// startRawUpstream's server, on the tapped listener: its record of heads
	// takes a chunked body cut at a chunk boundary for a complete one, so
	// the tap parses what warden sent itself, strictly.
	up := &rawUpstream{ln: tap, respond: func(string) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }}
	go up.serve()
	t.Cleanup(func() { ln.Close() })
	w := startWarden(t, merge(protectedEnv(ln.Addr().String()), map[string]string{"WARDEN_READ_HEADER_TIMEOUT": "2s"}, env))
	return w, tap
}

// upstreamTap is a listener that keeps every byte the upstream reads, per
// connection.
type upstreamTap struct {
	net.Listener
	mu    sync.Mutex
	conns []*bytes.Buffer
}

func (l *upstreamTap) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := &bytes.Buffer{}
	l.conns = append(l.conns, buf)
	return &tappedConn{Conn: c, tap: l, buf: buf}, nil
}

type tappedConn struct {
	net.Conn
	tap *upstreamTap
	buf *bytes.Buffer
}

func (c *tappedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.tap.mu.Lock()
	c.buf.Write(p[:n])
	c.tap.mu.Unlock()
	return n, err
}

// mark is how many bytes each connection has carried so far.
func (l *upstreamTap) mark() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make([]int, len(l.conns))
	for i, b := range l.conns {
		m[i] = b.Len()
	}
	return m
}

// since returns the requests warden sent after m, once nothing more has
// arrived for a moment.
func (l *upstreamTap) since(m []int) []upstreamRequest {
	total := func() (n int) {
		for _, v := range l.mark() {
			n += v
		}
		return n
	}
	for last, deadline := -1, time.Now().Add(time.Second); time.Now().Before(deadline); {
		n := total()
		if n == last {
			break
		}
		last = n
		time.Sleep(20 * time.Millisecond)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []upstreamRequest
	for i, b := range l.conns {
		from := 0
		if i < len(m) {
			from = m[i]
		}
		out = append(out, parseUpstream(b.Bytes()[from:])...)
	}
	return out
}

// upstreamRequest is one request as the upstream received it.
type upstreamRequest struct {
	head     string // request line and fields, through the blank line
	body     []byte
	complete bool // the head parsed and the whole body arrived
}

// parseUpstream splits what warden sent on one connection into requests.
// It stops at the first one that is malformed or cut short.
func parseUpstream(b []byte) []upstreamRequest {
	var out []upstreamRequest
	br := bufio.NewReader(bytes.NewReader(b))
	for {
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			head.WriteString(line)
			if err != nil {
				if head.Len() > 0 {
					out = append(out, upstreamRequest{head: head.String()})
				}
				return out
			}
			if line == "\r\n" {
				break
			}
		}
		r := upstreamRequest{head: head.String()}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(r.head)))
		if err != nil {
			return append(out, r)
		}
		switch {
		case len(req.TransferEncoding) > 0:
			r.body, err = io.ReadAll(httputil.NewChunkedReader(br))
			for err == nil { // trailer fields, through the blank line
				var line string
				if line, err = br.ReadString('\n'); line == "\r\n" {
					break
				}
			}
		case req.ContentLength > 0:
			r.body = make([]byte, req.ContentLength)
			_, err = io.ReadFull(br, r.body)
		}
		r.complete = err == nil
		out = append(out, r)
		if !r.complete {
			return out
		}
	}
}

// runHostile sends each case on its own connection, one after the other, and
// checks the answer and what reached the upstream.
func runHostile(t *testing.T, w *wardenProc, tap *upstreamTap, cases []hostileCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tap.mark()
			a := sendHostile(t, w.addr, tc.req)
			sent := tap.since(m)
			t.Logf("answer: %s; the upstream received %d request(s)", a, len(sent))
			checkAnswer(t, tc, a)
			checkUpstream(t, tc, a, sent)
			if t.Failed() {
				t.Logf("request: %q", abbreviate(tc.req))
				for _, r := range sent {
					t.Logf("upstream received (complete: %t): %q, body %q", r.complete, r.head, abbreviate(string(r.body)))
				}
			}
		})
	}
}

func checkAnswer(t *testing.T, tc hostileCase, a hostileAnswer) {
	t.Helper()
	switch {
	case a.hung:
		t.Errorf("warden hung: %s", a)
		return
	case a.status == 0 && !a.closed:
		t.Errorf("%s", a)
		return
	case tc.want != 0:
		if a.status == 0 && tc.orClose {
			return
		}
		if a.status != tc.want {
			t.Errorf("answered %s; want %d", a, tc.want)
		} else if tc.code != "" && a.header.Get("X-Warden-Error") != tc.code {
			t.Errorf("X-Warden-Error = %q, want %q", a.header.Get("X-Warden-Error"), tc.code)
		}
	case a.status == 0:
		// Closed without an answer: allowed.
	case a.status >= 400 && a.status <= 499, slices.Contains(tc.also, a.status):
	case a.status == 200 && tc.bodies != nil:
		// Processed, as the RFC allows; checkUpstream looks at what went on.
	default:
		t.Errorf("answered %s; hostile input must get a 4xx or a closed connection", a)
	}
	if a.status >= 400 && a.status <= 499 {
		if code := a.header.Get("X-Warden-Error"); code == "" {
			t.Errorf("the %d is not warden's own answer: no X-Warden-Error", a.status)
		} else {
			checkShouldRetry(t, a.header, code)
		}
	}
}

func checkUpstream(t *testing.T, tc hostileCase, a hostileAnswer, sent []upstreamRequest) {
	t.Helper()
	var own []upstreamRequest // complete requests but the smuggled one
	for _, r := range sent {
		line, _, _ := strings.Cut(r.head, "\n")
		if strings.Contains(line, "/smuggled") {
			t.Errorf("SMUGGLED: the upstream received a second request: %q", r.head)
			continue
		}
		if why := malformedHead(r.head); why != "" {
			t.Errorf("the upstream received a malformed head (%s): %q", why, r.head)
		}
		if r.complete {
			own = append(own, r)
		}
	}
	if a.status < 200 || a.status > 299 {
		for _, r := range own {
			t.Errorf("refused, yet the upstream received the whole request: %q with body %q", r.head, abbreviate(string(r.body)))
		}
		return
	}
	if len(own) != 1 {
		t.Errorf("answered %d, and the upstream received %d whole requests; want 1", a.status, len(own))
		return
	}
	if body := string(own[0].body); tc.bodies != nil && !slices.Contains(tc.bodies, body) {
		t.Errorf("the upstream received the body %q; want one of %q", abbreviate(body), tc.bodies)
	}
}

// malformedHead says what is wrong with a request head warden sent, or "".
// warden frames what it sends itself: CRLF line ends, no bare CR, LF or NUL,
// no folded lines, valid names, one Host, and never both Content-Length and
// Transfer-Encoding (RFC 9112 §2.2, §5, §6).
func malformedHead(head string) string {
	for i := 0; i < len(head); i++ {
		switch head[i] {
		case 0:
			return "NUL"
		case '\r':
			if i+1 == len(head) || head[i+1] != '\n' {
				return "bare CR"
			}
		case '\n':
			if i == 0 || head[i-1] != '\r' {
				return "bare LF"
			}
		}
	}
	if !strings.HasSuffix(head, "\r\n\r\n") {
		return "" // cut short: nothing more to judge
	}
	line, fields := headerLines(head)
	parts := strings.Split(line, " ")
	if len(parts) != 3 || !isHTTPToken(parts[0]) || parts[1] == "" || hasControlByte(parts[1], false) || parts[2] != "HTTP/1.1" {
		return "request line"
	}
	var cl, te, host int
	for _, f := range fields {
		name, value, ok := strings.Cut(f, ":")
		switch {
		case f != "" && (f[0] == ' ' || f[0] == '\t'):
			return "folded line"
		case !ok || !isHTTPToken(name):
			return "field name"
		case hasControlByte(value, true):
			return "control character in a value"
		}
		value = strings.Trim(value, " \t")
		switch strings.ToLower(name) {
		case "content-length":
			cl++
			if _, err := strconv.ParseUint(value, 10, 63); err != nil {
				return "Content-Length"
			}
		case "transfer-encoding":
			te++
			if value != "chunked" {
				return "Transfer-Encoding"
			}
		case "host":
			host++
		}
	}
	switch {
	case cl > 1 || te > 1:
		return "repeated framing header"
	case cl > 0 && te > 0:
		return "both Content-Length and Transfer-Encoding"
	case host != 1:
		return strconv.Itoa(host) + " Host fields"
	}
	return ""
}

func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		digit := '0' <= c && c <= '9'
		if !letter && !digit && strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return true
}

func hasControlByte(s string, spaceOK bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if spaceOK && (c == ' ' || c == '\t') {
			continue
		}
		if c <= ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

func abbreviate(s string) string {
	if len(s) > 300 {
		return s[:300] + "…(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}

func TestConflictingOrInvalidContentLengthAndTransferEncodingNeverSmuggle(t *testing.T) {
	t.Parallel()
	w, tap := hostileTarget(t, nil)
	cases := []hostileCase{
		// RFC 9112 §6.1: with both, a server may reject the request or
		// process it as chunked, dropping Content-Length; either way it
		// must close the connection after responding.
		{name: "Content-Length then chunked", req: hostilePost("Content-Length: 5", "Transfer-Encoding: chunked") + lastChunk + smuggled, bodies: []string{""}},
		{name: "chunked then a Content-Length that covers the next request", req: hostilePost("Transfer-Encoding: chunked", "Content-Length: "+strconv.Itoa(len(lastChunk+smuggled))) + lastChunk + smuggled, bodies: []string{""}},
		{name: "Content-Length 0 with chunked", req: hostilePost("Content-Length: 0", "Transfer-Encoding: chunked") + "5\r\nhello\r\n" + lastChunk + smuggled, bodies: []string{"hello"}},
		// RFC 9110 §8.6, RFC 9112 §6.3: differing lengths are an
		// unrecoverable error; a list of one value repeated may be taken as
		// that value.
		{name: "two different Content-Length fields", req: hostilePost("Content-Length: 5", "Content-Length: "+strconv.Itoa(5+len(smuggled))) + "hello" + smuggled},
		{name: "a Content-Length list of different values", req: hostilePost("Content-Length: 5, "+strconv.Itoa(5+len(smuggled))) + "hello" + smuggled},
		{name: "two equal Content-Length fields", req: hostilePost("Content-Length: 5", "Content-Length: 5") + "hello", bodies: []string{"hello"}},
		{name: "a Content-Length list of equal values", req: hostilePost("Content-Length: 5, 5") + "hello", bodies: []string{"hello"}},
	}
	for _, v := range []string{"+5", "-5", "-1", "5 5", "0x5", "5a", "5.0", "", "18446744073709551621"} {
		cases = append(cases, hostileCase{name: "Content-Length " + strconv.Quote(v), req: hostilePost("Content-Length: "+v) + "hello" + smuggled})
	}

	// Each way of writing Transfer-Encoding, along with a Content-Length
	// (the classic CL.TE and TE.CL desyncs), and alone with the smuggled
	// request as its body (TE.TE: a body that is no valid chunk).
	for _, te := range []struct {
		name  string
		lines []string
		valid bool // chunked, however unusually written
	}{
		{"Transfer-Encoding xchunked", []string{"Transfer-Encoding: xchunked"}, false},
		{"Transfer-Encoding chunked, identity", []string{"Transfer-Encoding: chunked, identity"}, false},
		{"Transfer-Encoding identity, chunked", []string{"Transfer-Encoding: identity, chunked"}, false},
		{"Transfer-Encoding identity", []string{"Transfer-Encoding: identity"}, false},
		{"Transfer-Encoding chunked, chunked", []string{"Transfer-Encoding: chunked, chunked"}, false},
		{"Transfer-Encoding quoted", []string{`Transfer-Encoding: "chunked"`}, false},
		{"two Transfer-Encoding fields", []string{"Transfer-Encoding: chunked", "Transfer-Encoding: chunked"}, false},
		{"Transfer-Encoding identity then chunked", []string{"Transfer-Encoding: identity", "Transfer-Encoding: chunked"}, false},
		{"space before the colon", []string{"Transfer-Encoding : chunked"}, false},
		{"vertical tab before the value", []string{"Transfer-Encoding:\x0bchunked"}, false},
		{"form feed after the value", []string{"Transfer-Encoding: chunked\x0c"}, false},
		{"lower-case name", []string{"transfer-encoding: chunked"}, true},
		{"mixed-case name and value", []string{"Transfer-encoding: cHuNkEd"}, true},
		{"spaces around the value", []string{"Transfer-Encoding:    chunked   "}, true},
		{"tab separator", []string{"Transfer-Encoding:\tchunked"}, true},
		{"value folded onto a continuation line", []string{"Transfer-Encoding:", " chunked"}, true},
	} {
		var bodies []string
		if te.valid {
			bodies = []string{""}
		}
		withCL := append([]string{"Content-Length: 5"}, te.lines...)
		cases = append(cases,
			hostileCase{name: te.name + " with Content-Length", req: hostilePost(withCL...) + lastChunk + smuggled, bodies: bodies},
			hostileCase{name: te.name + " alone", req: hostilePost(te.lines...) + smuggled},
		)
	}
	// RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
	cases = append(cases, hostileCase{
		name: "Transfer-Encoding in an HTTP/1.0 keep-alive request",
		req:  rawRequest("POST /hostile HTTP/1.0", "Host: warden.test", authField, "Connection: keep-alive", "Transfer-Encoding: chunked") + smuggled,
	})
	runHostile(t, w, tap, cases)
}

func TestBadChunksAreRefusedAndNeverSmuggle(t *testing.T) {
	t.Parallel()
	w, tap := hostileTarget(t, nil)
	chunked := hostilePost("Transfer-Encoding: chunked")
	runHostile(t, w, tap, []hostileCase{
		{name: "chunk size that is not hex", req: chunked + "zz\r\nhello\r\n" + lastChunk + smuggled},
		{name: "negative chunk size", req: chunked + "-1\r\nhello\r\n" + lastChunk + smuggled},
		{name: "chunk size of 80 bits", req: chunked + "ffffffffffffffffffff\r\nhello\r\n" + lastChunk + smuggled},
		{name: "chunk size that is 5 modulo 2^64", req: chunked + "10000000000000005\r\nhello\r\n" + lastChunk + smuggled},
		{name: "chunk size with a 0x prefix", req: chunked + "0x5\r\nhello\r\n" + lastChunk + smuggled},
		{name: "chunk size after a space", req: chunked + " 5\r\nhello\r\n" + lastChunk + smuggled},
		{name: "chunk data longer than its size", req: chunked + "3\r\nhello\r\n" + lastChunk + smuggled},
		{name: "no CRLF after the chunk data", req: chunked + "5\r\nhelloXX" + lastChunk + smuggled},
		{name: "bare LF ending a chunk extension", req: chunked + "5;ext\nhello\r\n" + lastChunk + smuggled},
		{name: "quoted chunk extension across a line break", req: chunked + "5;ext=\"a\r\nb\"\r\nhello\r\n" + lastChunk + smuggled},
		{name: "the next request where trailers or the blank line belong", req: chunked + "5\r\nhello\r\n0\r\n" + smuggled},
		// A long but well-formed extension may be read past or refused.
		{name: "64 KiB chunk extension", req: chunked + "5;" + strings.Repeat("x", 64<<10) + "\r\nhello\r\n" + lastChunk, bodies: []string{"hello"}},
	})
}

// Every chunk line outside RFC 9112's grammar,
//
//	chunk-size [ chunk-ext ] CRLF
//	chunk-ext = *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )
//
// and every malformed trailer section, is refused with 400 and the
// connection closed, wherever in the body it comes (llhttp's strict test
// cases, and their neighbours). The smuggled request after each is there to
// be seen if warden read on.
func TestChunkLinesOutsideTheGrammarGet400(t *testing.T) {
	t.Parallel()
	w, tap := hostileTarget(t, nil)
	chunked := hostilePost("Transfer-Encoding: chunked")
	good := "5\r\nhello\r\n"
	var cases []hostileCase
	for _, bad := range []struct{ name, line string }{
		{"a chunk size followed by a space", "5 \r\n"},
		{"a chunk size followed by a tab", "5\t\r\n"},
		{"an empty chunk extension", "5;\r\n"},
		{"an empty extension after whitespace", "5; \r\n"},
		{"two semicolons", "5;;a\r\n"},
		{"an unbalanced quote in an extension", "5;a=\"b\r\n"},
		{"a quote inside a token value", "5;a=b\"c\"\r\n"},
		{"a space inside a token value", "5;a=b c\r\n"},
		{"an extension name that is not a token", "5;a@b\r\n"},
		{"an extension with an empty value", "5;a=\r\n"},
		{"an extension value without a name", "5;=b\r\n"},
		{"text after a quoted value", "5;a=\"b\"c\r\n"},
		{"whitespace after an extension value", "5;a=b \r\n"},
		{"whitespace after an extension name", "5;a \r\n"},
		{"NUL in a quoted value", "5;a=\"\x00\"\r\n"},
		{"DEL in a quoted value", "5;a=\"\x7f\"\r\n"},
		{"a control byte in a name", "5;a\x01\r\n"},
		{"a bare CR ending a chunk line", "5\rhello\r\n"},
		{"a CR inside an extension", "5;a\rb\r\n"},
	} {
		cases = append(cases,
			hostileCase{name: bad.name, req: chunked + bad.line + "hello\r\n" + lastChunk + smuggled, want: 400, code: "bad_request", orClose: true},
			hostileCase{name: bad.name + ", after a good chunk", req: chunked + good + bad.line + "hello\r\n" + lastChunk + smuggled, want: 400, code: "bad_request", orClose: true},
		)
	}
	for _, bad := range []struct{ name, end string }{
		{"a last chunk followed by a space", "0 \r\n\r\n"},
		{"an empty extension on the last chunk", "0;\r\n\r\n"},
		{"a trailer line without a colon", "0\r\nnot a field\r\n\r\n"},
		{"a trailer name that is not a token", "0\r\nX(T): 1\r\n\r\n"},
		{"a trailer line ended by a bare LF", "0\r\nX-T: 1\n\r\n"},
		{"a folded trailer line", "0\r\nX-T: 1\r\n 2\r\n\r\n"},
		{"a control byte in a trailer value", "0\r\nX-T: a\x01b\r\n\r\n"},
		{"a bare LF ending the trailer section", "0\r\n\n"},
	} {
		cases = append(cases, hostileCase{name: bad.name, req: chunked + good + bad.end + smuggled, want: 400, code: "bad_request", orClose: true})
	}
	runHostile(t, w, tap, cases)
}

// Chunk lines inside the grammar pass, and the upstream gets the body.
func TestWellFormedChunkLinesAreAccepted(t *testing.T) {
	t.Parallel()
	w, tap := hostileTarget(t, nil)
	chunked := hostilePost("Transfer-Encoding: chunked")
	for _, tc := range []struct{ name, body string }{
		{"an extension name", "5;a\r\nhello\r\n" + lastChunk},
		{"a token value", "5;a=b\r\nhello\r\n" + lastChunk},
		{"a quoted value with escapes", "5;a=\"b \\\"c\\\" ;=\"\r\nhello\r\n" + lastChunk},
		{"whitespace around the equals sign", "5;a = b\r\nhello\r\n" + lastChunk},
		{"whitespace after the semicolon", "5; a=b\r\nhello\r\n" + lastChunk},
		{"several extensions", "5;a=b;c;d=\"e\"\r\nhello\r\n" + lastChunk},
		{"upper-case hex", "A\r\nhellohello\r\n" + lastChunk},
		{"leading zeros", "0005\r\nhello\r\n" + lastChunk},
		{"an extension on the last chunk", "5\r\nhello\r\n0;a=b\r\n\r\n"},
		{"two zeros as the last chunk", "5\r\nhello\r\n00\r\n\r\n"},
		{"a trailer field", "5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n"},
		{"chunks split across many", "1\r\nh\r\n1\r\ne\r\n3\r\nllo\r\n" + lastChunk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tap.mark()
			a := sendHostile(t, w.addr, chunked+tc.body)
			sent := tap.since(m)
			if a.status != 200 {
				t.Fatalf("answered %s; want 200", a)
			}
			if len(sent) != 1 || !sent[0].complete {
				t.Fatalf("the upstream received %d requests, want one whole", len(sent))
			}
			want := "hello"
			if strings.HasPrefix(tc.body, "A\r\n") {
				want = "hellohello"
			}
			if got := string(sent[0].body); got != want {
				t.Fatalf("the upstream received the body %q, want %q", got, want)
			}
		})
	}
}

// A bad chunk line that arrives after part of the body has gone upstream
// cuts the upstream's request: it never sees the body completed.
func TestBadChunkLineMidStreamCutsTheForwardedRequest(t *testing.T) {
	t.Parallel()
	w, tap := hostileTarget(t, nil)
	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(answerTimeout))
	m := tap.mark()
	if _, err := io.WriteString(c, hostilePost("Transfer-Encoding: chunked")+"5\r\nhello\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the first chunk to reach the upstream", func() bool {
		for _, r := range tap.since(m) {
			if strings.Contains(r.head, "/hostile") {
				return true
			}
		}
		return false
	})
	_, _ = io.WriteString(c, "3 \r\nabc\r\n"+lastChunk+smuggled)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("X-Warden-Error") != "bad_request" {
		t.Fatalf("answered %d %s, want 400 bad_request", resp.StatusCode, resp.Header.Get("X-Warden-Error"))
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection stayed open")
	}
	for _, r := range tap.since(m) {
		if r.complete || strings.Contains(r.head, "/smuggled") {
			t.Fatalf("the upstream received a whole request: %q body %q", r.head, r.body)
		}
	}
}

func TestControlCharactersAndMalformedFieldLinesNeverReachTheUpstream(t *testing.T) {
	t.Parallel()
	w, tap := hostileTarget(t, nil)
	runHostile(t, w, tap, []hostileCase{
		// RFC 9110 §5.5, RFC 9112 §2.2: CR, LF or NUL in a value: reject,
		// or replace with SP before forwarding.
		{name: "CR inside a value", req: hostileGet("X-Note: a\rb"), bodies: []string{""}},
		{name: "NUL inside a value", req: hostileGet("X-Note: a\x00b"), bodies: []string{""}},
		{name: "bare LF inside a value, then Content-Length", req: hostilePost("X-Note: a\nContent-Length: 5") + "hello", bodies: []string{"hello", ""}},
		{name: "CR inside a name", req: hostileGet("X-No\rte: b")},
		{name: "LF inside a name", req: hostileGet("X-No\nte: b")},
		{name: "NUL inside a name", req: hostileGet("X-No\x00te: b")},
		{name: "space inside a name", req: hostileGet("X Note: b"), bodies: []string{""}},
		{name: "space before the colon", req: hostileGet("X-Note : b")},
		{name: "empty name", req: hostileGet(": b")},
		{name: "line without a colon", req: hostileGet("X-Note")},
		// RFC 9112 §2.2: a recipient may take a bare LF as a line end.
		{name: "bare LF line ends", req: "GET /hostile HTTP/1.1\nHost: warden.test\n" + authField + "\n\n", bodies: []string{""}},
		// RFC 9112 §5.2: reject obs-fold, or replace it with SP.
		{name: "obs-fold continuation line", req: hostileGet("X-Note: a", " b"), bodies: []string{""}},
		{name: "obs-fold continuation with a tab", req: hostileGet("X-Note: a", "\tb"), bodies: []string{""}},
		// RFC 9112 §2.2: whitespace before the first field line: reject, or
		// drop such lines.
		{name: "whitespace before the first field line", req: rawRequest("GET /hostile HTTP/1.1", " X-Note: a", "Host: warden.test", authField), bodies: []string{""}},
		// RFC 9112 §3.2: no Host, or more than one, in HTTP/1.1 is a 400.
		{name: "no Host in HTTP/1.1", req: rawRequest("GET /hostile HTTP/1.1", authField), want: 400, code: "bad_request"},
		{name: "two Host fields", req: hostileGet("Host: other.test"), want: 400, code: "bad_request"},
		{name: "two Host fields in different case", req: hostileGet("host: other.test"), want: 400, code: "bad_request"},
	})
}

func TestMalformedRequestLinesGet4xx(t *testing.T) {
	t.Parallel()
	w, tap := hostileTarget(t, nil)
	line := func(start string) string { return rawRequest(start, "Host: warden.test", authField) }
	runHostile(t, w, tap, []hostileCase{
		{name: "invalid character in the method", req: line("G@T /hostile HTTP/1.1")},
		{name: "NUL in the method", req: line("GE\x00T /hostile HTTP/1.1")},
		{name: "no method", req: line(" /hostile HTTP/1.1")},
		{name: "target without a slash", req: line("GET foo HTTP/1.1")},
		{name: "NUL in the target", req: line("GET /\x00 HTTP/1.1")},
		{name: "CR in the target", req: line("GET /a\rb HTTP/1.1")},
		{name: "space in the target", req: line("GET /a b HTTP/1.1")},
		{name: "two spaces after the method", req: line("GET  /hostile HTTP/1.1")},
		{name: "asterisk target for GET", req: line("GET * HTTP/1.1")},
		{name: "HTTP/0.9 request", req: "GET /hostile\r\n"},
		{name: "HTTP/0.9 request with fields", req: line("GET /hostile")},
		{name: "lower-case protocol name", req: line("GET /hostile http/1.1")},
		{name: "version without a minor number", req: line("GET /hostile HTTP/1")},
		{name: "text after the version", req: line("GET /hostile HTTP/1.1 x")},
		// RFC 9110 §6.2, §15.6.6: this is HTTP/1.1 syntax; warden speaks
		// no HTTP/2 and can say so with a 505.
		{name: "HTTP/2.0 over cleartext", req: line("GET /hostile HTTP/2.0"), also: []int{505}},
		{name: "HTTP/2 connection preface", req: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", also: []int{505}},
		// RFC 9112 §2.3: a higher minor version is served as HTTP/1.1.
		{name: "HTTP/1.2", req: line("GET /hostile HTTP/1.2"), bodies: []string{""}},
	})
}

func TestOversizedHeadersGet431(t *testing.T) {
	t.Parallel()
	w, tap := hostileTarget(t, nil) // WARDEN_MAX_HEADER_BYTES defaults to 32768
	var many []string
	for i := range 40 {
		many = append(many, "X-Pad-"+strconv.Itoa(i)+": "+strings.Repeat("p", 1000))
	}
	runHostile(t, w, tap, []hostileCase{
		{name: "header block over 32 KiB", req: hostileGet(many...), want: 431, code: "header_too_large"},
		{name: "one 40 KiB field", req: hostileGet("X-Big: " + strings.Repeat("b", 40<<10)), want: 431, code: "header_too_large"},
		{name: "6000 tiny fields", req: hostileGet(slices.Repeat([]string{"X: y"}, 6000)...), want: 431, code: "header_too_large"},
		{name: "40 KiB field before the Host", req: rawRequest("GET /hostile HTTP/1.1", "X-Big: "+strings.Repeat("b", 40<<10), "Host: warden.test", authField), want: 431, code: "header_too_large"},
		{name: "40 KiB target", req: rawRequest("GET /"+strings.Repeat("t", 40<<10)+" HTTP/1.1", "Host: warden.test", authField), also: []int{414}},
		// The limit is not lower than it says.
		{name: "16 KiB field", req: hostileGet("X-Big: " + strings.Repeat("b", 16<<10)), want: 200, bodies: []string{""}},
	})
}

func TestConnectGets405WithCredentialsAnd401Without(t *testing.T) {
	t.Parallel()
	w, tap := hostileTarget(t, nil)
	runHostile(t, w, tap, []hostileCase{
		{name: "CONNECT with credentials", req: rawRequest("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443", authField), want: 405, code: "method_not_allowed"},
		{name: "CONNECT without credentials", req: rawRequest("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443"), want: 401, code: "unauthorized"},
		{name: "CONNECT to the upstream's own address", req: rawRequest("CONNECT "+tap.Addr().String()+" HTTP/1.1", "Host: "+tap.Addr().String(), authField), want: 405, code: "method_not_allowed"},
	})
}

func TestBodiesOverTheLimitGet413WithoutAFullRequestReachingTheUpstream(t *testing.T) {
	t.Parallel()
	w, tap := hostileTarget(t, map[string]string{"WARDEN_MAX_BODY_BYTES": "1000"})
	body := func(n int) string { return strings.Repeat("a", n) }
	chunks := func(sizes ...int) string {
		var b strings.Builder
		for _, n := range sizes {
			b.WriteString(strconv.FormatInt(int64(n), 16) + "\r\n" + body(n) + "\r\n")
		}
		return b.String() + lastChunk
	}
	runHostile(t, w, tap, []hostileCase{
		{name: "Content-Length over the limit", req: hostilePost("Content-Length: 5000") + body(5000) + smuggled, want: 413, code: "body_too_large"},
		// fasthttp reads the first body byte before warden sees the request,
		// so the answer comes once the client starts sending the body.
		{name: "Content-Length over the limit, body partly sent", req: hostilePost("Content-Length: 5000") + body(100), want: 413, code: "body_too_large"},
		{name: "Content-Length over the limit with Expect: 100-continue", req: hostilePost("Content-Length: 5000", "Expect: 100-continue"), want: 413, code: "body_too_large"},
		{name: "chunked body over the limit", req: hostilePost("Transfer-Encoding: chunked") + chunks(800, 800) + smuggled, want: 413, code: "body_too_large", orClose: true},
		{name: "one chunk over the limit", req: hostilePost("Transfer-Encoding: chunked") + chunks(1001) + smuggled, want: 413, code: "body_too_large", orClose: true},
		// The limit is exactly where it says.
		{name: "Content-Length at the limit", req: hostilePost("Content-Length: 1000") + body(1000), want: 200, bodies: []string{body(1000)}},
		{name: "chunked body at the limit", req: hostilePost("Transfer-Encoding: chunked") + chunks(500, 500), want: 200, bodies: []string{body(1000)}},
	})
}

// A client that sends its headers slowly, or nothing at all, is cut once
// the header read timeout has passed, long before it could finish.
func TestSlowClientsAreCutAfterTheHeaderReadTimeout(t *testing.T) {
	t.Parallel()
	w, tap := hostileTarget(t, map[string]string{"WARDEN_READ_HEADER_TIMEOUT": "1s"})
	req := rawRequest("GET /slow HTTP/1.1", "Host: warden.test", authField)
	const byteEvery = 200 * time.Millisecond // the whole request would take len(req)/5 s

	for _, tc := range []struct {
		name    string
		first   string // sent at once, answered, before the slow part
		trickle bool
	}{
		{name: "a client that trickles its headers a byte at a time", trickle: true},
		{name: "a client that trickles its second request on a kept-alive connection", first: req, trickle: true},
		{name: "a client that sends nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", w.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(answerTimeout))
			br := bufio.NewReader(c)
			if tc.first != "" {
				io.WriteString(c, tc.first)
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("first request: %v %v", resp, err)
				}
				io.Copy(io.Discard, resp.Body)
			}
			m := tap.mark()

			start := time.Now()
			sent := make(chan int, 1)
			if tc.trickle {
				go func() {
					n := 0
					defer func() { sent <- n }()
					for ; n < len(req); n++ {
						if _, err := c.Write([]byte{req[n]}); err != nil {
							return
						}
						time.Sleep(byteEvery)
					}
				}()
			}
			got, err := io.ReadAll(br)
			took := time.Since(start)
			t.Logf("closed after %s with %q (%v)", took.Round(time.Millisecond), got, err)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection still open after %s; got %q", took.Round(time.Millisecond), got)
			}
			if took < 900*time.Millisecond || took > 3*time.Second {
				t.Errorf("connection closed after %s; want about the 1s header read timeout", took.Round(time.Millisecond))
			}
			if len(got) > 0 {
				resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
				if err != nil || resp.StatusCode != 408 || resp.Header.Get("X-Warden-Error") != "request_timeout" {
					t.Errorf("answer %q; want a 408 request_timeout or none", got)
				}
			}
			if tc.trickle {
				c.Close()
				if n := <-sent; n >= len(req) {
					t.Errorf("all %d bytes of the request were sent before the cut", n)
				}
			}
			if sent := tap.since(m); len(sent) != 0 {
				t.Errorf("the upstream received %q from the slow client", sent[0].head)
			}
		})
	}
}
