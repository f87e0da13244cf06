package proxy

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/paperspace/warden/auth"
	"github.com/paperspace/warden/throttle"
)

// FuzzServe writes raw bytes, as one or more HTTP/1.1 requests or anything
// else, on a connection of warden's own fasthttp server, in protected mode,
// in front of a raw upstream on an in-memory listener that records every
// byte it receives and answers each request it can parse at once. The client
// half-closes after its bytes (warden reads EOF), and the whole answer is
// read back. Whatever the input:
//
//   - warden does not panic, and closes the connection within fuzzWait;
//   - everything warden sends back is a sequence of well-formed HTTP/1.1
//     responses (strict head syntax, one framing, net/http can read each),
//     and nothing follows one that says Connection: close;
//   - each final response is warden's own error (X-Warden-Error: a known
//     code with its status, 4xx, a JSON body saying the same, a challenge
//     on 401) or the upstream's answer to one request it received, with the
//     body the upstream sent; with an upstream that answers at once there
//     is no 5xx at all;
//   - what the upstream receives is a sequence of well-formed HTTP/1.1
//     requests in origin-form: one Host, one X-Forwarded-For ending in the
//     client's address, no credentials, no hop-by-hop fields, a single
//     "chunked" or a Content-Length but never both, strict chunk syntax,
//     bodies within the limit; net/http can read each head;
//   - the upstream sees no byte at all unless the input holds the right
//     credentials, and no more requests than the input holds copies of them
//     (each authorised request needs its own);
//   - a request whose chunked body leaves RFC 9112's grammar (as the
//     reference parser of chunked_test.go reads it) never reaches the
//     upstream whole, nor does any request after it;
//   - the upstream receives no more requests than warden answered, and every
//     answer it sent reaches the client once (nothing smuggled, nothing lost);
//   - afterwards no request is in flight, the metrics count each answer
//     once, and no upstream connection is left open.
func FuzzServe(f *testing.F) {
	for _, seed := range fuzzServeSeeds() {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 64<<10 {
			return // far past every limit; only slower
		}
		r := serveRaw(t, in)
		if p := r.problem(); p != "" {
			t.Fatalf("%s\n%s", p, r)
		}
	})
}

const (
	// fuzzWait bounds one input: warden must have answered and closed the
	// connection by then. Nothing in the exchange waits on a timer unless
	// something is wrong: the client's bytes are all there, then EOF, and
	// the upstream answers at once.
	fuzzWait      = 3 * time.Second
	fuzzMaxBody   = 256
	fuzzMaxHeader = 2048
	fuzzClientIP  = "192.0.2.1"
	// fuzzMarker names the upstream's answer to one request: the
	// connection and the request's number on it.
	fuzzMarker = "X-Fake-Upstream"
)

var (
	fuzzPair  = testUser + ":" + testPassword
	fuzzToken = base64.StdEncoding.EncodeToString([]byte(fuzzPair))
	// upstreamCodes are the only errors warden may answer with a 5xx.
	upstreamCodes = []string{"upstream_error", "upstream_unavailable", "upstream_timeout", "upstream_busy"}
)

// serveResult is what one input came to.
type serveResult struct {
	in       []byte
	out      []byte // every byte warden wrote to the client
	up       []*fuzzUpConn
	answers  map[string]string // marker → body the upstream sent
	inFlight int64
	counted  uint64 // answers counted in the metrics
	leaked   bool   // an upstream connection outlived the proxy
}

func serveRaw(t *testing.T, in []byte) *serveResult {
	t.Helper()
	checker, err := auth.New(testUser, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	up := newFuzzUpstream()
	cfg := Config{
		Upstream:            "upstream.test:80",
		Auth:                checker,
		Realm:               "warden",
		UpstreamTimeout:     time.Second,
		UpstreamIdleTimeout: time.Second,
		// One connection: a request that leaked its slot would make the
		// next one wait and get 503.
		UpstreamMaxConns:  1,
		MaxBodyBytes:      fuzzMaxBody,
		MaxHeaderBytes:    fuzzMaxHeader,
		ReadHeaderTimeout: time.Second,
		IdleTimeout:       time.Second,
		AccessLog:         true,
		// The client is a trusted proxy: its X-Forwarded-For is read.
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		ServerTiming:   true,
		SSEHeartbeat:   5 * time.Millisecond,
		Log:            zerolog.New(io.Discard).Level(zerolog.DebugLevel),
		Metrics:        NewMetrics("fuzz"),
	}
	p, err := newProxy(cfg, func(string, time.Time) (net.Conn, error) { return up.ln.Dial() })
	if err != nil {
		t.Fatal(err)
	}
	// Throttling after three failed logins, as newProxy sets it up, but
	// with a small table: the default one is 2 MB, allocated per input.
	p.cfg.AuthFailureLimit, p.cfg.AuthFailureWindow = 3, time.Minute
	p.throttle = throttle.New(throttle.Config{Limit: 3, Window: time.Minute, Size: 64})
	// The connection is served as Serve serves each one it accepts, but
	// without a listener and worker pool: the pool's cleaner would keep
	// every iteration's server alive for 10 s.
	srv := p.server()
	c := &fuzzClientConn{in: in, closed: make(chan struct{})}
	served := make(chan struct{})
	go func() {
		_ = srv.ServeConn(c)
		close(served)
	}()

	r := &serveResult{in: in}
	timer := time.NewTimer(fuzzWait)
	defer timer.Stop()
	select {
	case <-c.closed:
	case <-timer.C:
		r.out = c.written()
		r.up, r.answers = up.snapshot()
		t.Fatalf("HANG: warden neither finished nor closed the connection within %s\n%s", fuzzWait, r)
	}
	<-served // at once: ServeConn returns before closing, or hijacked
	p.Close()
	r.leaked = !up.close(fuzzWait)
	r.out = c.written()
	r.up, r.answers = up.snapshot()
	r.inFlight = p.m.inFlight.Load()
	for i := range p.m.requests {
		r.counted += p.m.requests[i].Load()
	}
	return r
}

// fuzzClientConn is the client's end as warden sees it: the input, then EOF
// (the client half-closed after sending), and everything warden writes kept.
// Reads never block, so no timer decides anything.
type fuzzClientConn struct {
	mu     sync.Mutex
	in     []byte
	out    bytes.Buffer
	closed chan struct{}
	once   sync.Once
}

func (c *fuzzClientConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(b, c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *fuzzClientConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	return c.out.Write(b)
}

func (c *fuzzClientConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

func (c *fuzzClientConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *fuzzClientConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
}

func (c *fuzzClientConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP(fuzzClientIP), Port: 40000}
}
func (c *fuzzClientConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzClientConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzClientConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzUpstream is a raw upstream on an in-memory listener. It keeps every
// byte warden sends, parses it strictly as a sequence of requests, and
// answers each complete one at once with a valid response chosen by its
// target; at the first thing it cannot parse it notes why and hangs up.
type fuzzUpstream struct {
	ln    *fasthttputil.InmemoryListener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []*fuzzUpConn
}

// fuzzUpConn is what one upstream connection received.
type fuzzUpConn struct {
	raw      []byte
	heads    int      // request heads begun, complete or not
	answered []string // markers of the answers sent
	bodies   []string // the body of each answer
	problem  string   // what was wrong with what warden sent
	end      string   // how the connection ended
}

func newFuzzUpstream() *fuzzUpstream {
	u := &fuzzUpstream{ln: fasthttputil.NewInmemoryListener()}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := u.ln.Accept()
			if err != nil {
				return
			}
			uc := &fuzzUpConn{}
			u.mu.Lock()
			id := len(u.conns)
			u.conns = append(u.conns, uc)
			u.mu.Unlock()
			u.wg.Add(1) // while the accept loop's own count holds
			go u.handle(id, uc, c)
		}
	}()
	return u
}

// close stops accepting and reports whether every connection was closed by
// warden within wait.
func (u *fuzzUpstream) close(wait time.Duration) bool {
	_ = u.ln.Close()
	done := make(chan struct{})
	go func() {
		u.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(wait):
		return false
	}
}

func (u *fuzzUpstream) snapshot() ([]*fuzzUpConn, map[string]string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	conns := make([]*fuzzUpConn, len(u.conns))
	answers := map[string]string{}
	for i, c := range u.conns {
		cc := *c
		cc.raw = bytes.Clone(c.raw)
		cc.answered = slices.Clone(c.answered)
		conns[i] = &cc
		for j, m := range c.answered {
			answers[m] = c.bodies[j]
		}
	}
	return conns, answers
}

type tapReader struct {
	c  net.Conn
	u  *fuzzUpstream
	uc *fuzzUpConn
}

func (r tapReader) Read(b []byte) (int, error) {
	n, err := r.c.Read(b)
	r.u.mu.Lock()
	r.uc.raw = append(r.uc.raw, b[:n]...)
	r.u.mu.Unlock()
	return n, err
}

func (u *fuzzUpstream) handle(id int, uc *fuzzUpConn, c net.Conn) {
	defer u.wg.Done()
	defer c.Close()
	br := bufio.NewReader(tapReader{c, u, uc})
	note := func(f func()) {
		u.mu.Lock()
		f()
		u.mu.Unlock()
	}
	for n := 0; ; n++ {
		req, end, problem := readForwarded(br, func() { note(func() { uc.heads++ }) })
		if problem != "" || end != "" {
			note(func() { uc.problem, uc.end = problem, end })
			return
		}
		marker := strconv.Itoa(id) + "." + strconv.Itoa(n)
		resp, body, closeAfter := upstreamAnswer(req.method, req.target, marker)
		note(func() {
			uc.answered = append(uc.answered, marker)
			uc.bodies = append(uc.bodies, body)
		})
		if _, err := io.WriteString(c, resp); err != nil || closeAfter {
			note(func() { uc.end = "closed by the upstream after its answer" })
			return
		}
	}
}

// upstreamAnswer is the upstream's response to a request, by its target:
// every framing warden has to relay. body is what the client must get.
func upstreamAnswer(method, target, marker string) (resp, body string, closeAfter bool) {
	withBody := method != "HEAD"
	head := "HTTP/1.1 200 OK\r\n" + fuzzMarker + ": " + marker + "\r\n"
	switch {
	case strings.Contains(target, "chunk"):
		resp = head + "Transfer-Encoding: chunked\r\n\r\n"
		if withBody {
			resp, body = resp+"2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n", "ok!!!"
		}
	case strings.Contains(target, "sse"):
		resp = head + "Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
		if withBody {
			resp, body = resp+"d\r\ndata: token\n\n\r\nd\r\ndata: [end]\n\n\r\n0\r\n\r\n", "data: token\n\ndata: [end]\n\n"
		}
	case strings.Contains(target, "close"):
		// A body delimited by closing the connection.
		resp = head + "Connection: close\r\n\r\n"
		if withBody {
			resp, body = resp+"ok", "ok"
		}
		closeAfter = true
	case strings.Contains(target, "empty"):
		resp = "HTTP/1.1 204 No Content\r\n" + fuzzMarker + ": " + marker + "\r\n\r\n"
	default:
		resp = head + "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n"
		if withBody {
			resp, body = resp+"ok", "ok"
		}
	}
	return resp, body, closeAfter
}

type forwardedRequest struct {
	method, target string
}

// readForwarded reads one request as warden sent it, strictly. end says
// why there is none: the connection ended between requests ("") or in one;
// problem says what was malformed. began is called once a head has begun.
func readForwarded(br *bufio.Reader, began func()) (req forwardedRequest, end, problem string) {
	var head strings.Builder
	for {
		line, err := br.ReadString('\n')
		if head.Len() == 0 && len(line) > 0 {
			began()
		}
		head.WriteString(line)
		if err != nil {
			if head.Len() == 0 {
				return req, "closed between requests", ""
			}
			if p := lineProblem(head.String()); p != "" {
				return req, "", p + " in a head cut short: " + strconv.Quote(head.String())
			}
			return req, "closed in a head", ""
		}
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	fr, problem := forwardedHeadProblem(head.String())
	if problem != "" {
		return req, "", problem + ": " + strconv.Quote(head.String())
	}
	req = forwardedRequest{method: fr.method, target: fr.target}
	switch {
	case fr.chunked:
		total := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return req, "closed in a chunked body", ""
			}
			size, perr := strconv.ParseUint(strings.TrimSuffix(line, "\r\n"), 16, 31)
			if !strings.HasSuffix(line, "\r\n") || perr != nil || line[0] == '+' {
				return req, "", "malformed chunk size line " + strconv.Quote(line)
			}
			if size == 0 {
				line, err := br.ReadString('\n')
				switch {
				case err != nil:
					return req, "closed in a chunked body", ""
				case line != "\r\n":
					return req, "", "trailer or garbage after the last chunk: " + strconv.Quote(line)
				}
				return req, "", ""
			}
			total += int(size)
			if total > fuzzMaxBody {
				return req, "", "a chunked body beyond MaxBodyBytes"
			}
			data := make([]byte, size+2)
			if _, err := io.ReadFull(br, data); err != nil {
				return req, "closed in a chunked body", ""
			}
			if !bytes.HasSuffix(data, []byte("\r\n")) {
				return req, "", "chunk data longer than its size"
			}
		}
	case fr.length > 0:
		if fr.length > fuzzMaxBody {
			return req, "", "a Content-Length beyond MaxBodyBytes"
		}
		if _, err := io.ReadFull(br, make([]byte, fr.length)); err != nil {
			return req, "closed in a body", ""
		}
	}
	return req, "", ""
}

type forwardedHead struct {
	method, target string
	length         int64
	chunked        bool
}

// forwardedHeadProblem checks a request head warden sent, through its blank
// line, and says what is wrong with it, or "".
func forwardedHeadProblem(head string) (forwardedHead, string) {
	var fh forwardedHead
	if p := lineProblem(head); p != "" {
		return fh, p
	}
	if !strings.HasSuffix(head, "\r\n\r\n") {
		return fh, "head not ended by CRLF CRLF"
	}
	lines := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")
	parts := strings.Split(lines[0], " ")
	if len(parts) != 3 || !isToken(parts[0]) || parts[2] != "HTTP/1.1" {
		return fh, "request line"
	}
	fh.method, fh.target = parts[0], parts[1]
	if fh.target == "" || hasControl(fh.target, false) || fh.target[0] != '/' && fh.target != "*" {
		return fh, "request target not in origin-form"
	}
	fields, p := parseFields(lines[1:])
	if p != "" {
		return fh, p
	}
	if p := framingProblem(fields); p != "" {
		return fh, p
	}
	for _, name := range []string{
		"authorization", "proxy-authorization", "keep-alive", "proxy-connection", "te", "trailer",
		"expect", "proxy-authenticate",
	} {
		if len(fields[name]) > 0 {
			return fh, "forwarded " + name
		}
	}
	upgrade := fields["upgrade"]
	if len(upgrade) > 1 || len(upgrade) == 1 && upgrade[0] != "websocket" {
		return fh, "forwarded Upgrade " + strconv.Quote(strings.Join(upgrade, ", "))
	}
	if conn := fields["connection"]; len(conn) > 1 || len(conn) == 1 && (conn[0] != "Upgrade" || len(upgrade) == 0) {
		return fh, "forwarded Connection " + strconv.Quote(strings.Join(conn, ", "))
	}
	if n := len(fields["host"]); n != 1 {
		return fh, strconv.Itoa(n) + " Host fields"
	}
	if xff := fields["x-forwarded-for"]; len(xff) != 1 || !strings.HasSuffix(xff[0], fuzzClientIP) {
		return fh, "X-Forwarded-For " + strconv.Quote(strings.Join(xff, " | "))
	}
	if xfp := fields["x-forwarded-proto"]; len(xfp) != 1 || xfp[0] != "http" {
		return fh, "X-Forwarded-Proto " + strconv.Quote(strings.Join(xfp, " | "))
	}
	if xfh := fields["x-forwarded-host"]; len(xfh) > 1 || len(xfh) == 1 && xfh[0] != fields["host"][0] {
		return fh, "X-Forwarded-Host " + strconv.Quote(strings.Join(xfh, " | "))
	}
	if cl := fields["content-length"]; len(cl) == 1 {
		fh.length, _ = strconv.ParseInt(cl[0], 10, 64)
	}
	fh.chunked = len(fields["transfer-encoding"]) == 1
	// Any server must read it. net/http judges the target's
	// percent-encoding, which warden passes as sent; it gets "/" instead.
	_, rest, _ := strings.Cut(head, "\r\n")
	if _, err := http.ReadRequest(bufio.NewReader(strings.NewReader(fh.method + " / HTTP/1.1\r\n" + rest))); err != nil {
		return fh, "net/http cannot read it: " + err.Error()
	}
	return fh, ""
}

// lineProblem finds a NUL, a bare CR or a bare LF.
func lineProblem(s string) string {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 0:
			return "NUL"
		case '\r':
			// A CR at the very end may be a line cut short.
			if i+1 < len(s) && s[i+1] != '\n' {
				return "bare CR"
			}
		case '\n':
			if i == 0 || s[i-1] != '\r' {
				return "bare LF"
			}
		}
	}
	return ""
}

// parseFields reads field lines strictly: token names, no space before the
// colon, no obs-fold, no control bytes in values. Names are lower-cased,
// values trimmed.
func parseFields(lines []string) (map[string][]string, string) {
	fields := map[string][]string{}
	for _, l := range lines {
		if l == "" || l[0] == ' ' || l[0] == '\t' {
			return nil, "empty or folded field line " + strconv.Quote(l)
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || !isToken(name) {
			return nil, "field name in " + strconv.Quote(l)
		}
		if hasControl(value, true) {
			return nil, "control byte in the value of " + name
		}
		k := strings.ToLower(name)
		fields[k] = append(fields[k], strings.Trim(value, " \t"))
	}
	return fields, ""
}

// framingProblem checks Content-Length and Transfer-Encoding: at most one
// of each, never both, digits and "chunked" only.
func framingProblem(fields map[string][]string) string {
	cl, te := fields["content-length"], fields["transfer-encoding"]
	switch {
	case len(cl) > 1 || len(te) > 1:
		return "repeated framing field"
	case len(cl) == 1 && len(te) == 1:
		return "both Content-Length and Transfer-Encoding"
	case len(cl) == 1 && (cl[0] == "" || strings.Trim(cl[0], "0123456789") != "" || len(cl[0]) > 18):
		return "Content-Length " + strconv.Quote(cl[0])
	case len(te) == 1 && te[0] != "chunked":
		return "Transfer-Encoding " + strconv.Quote(te[0])
	}
	return ""
}

func isToken(s string) bool { return s != "" && validName([]byte(s)) }

// hasControl reports control bytes (and DEL); with valueOK, SP and HTAB
// pass, as in a field value; otherwise SP is refused too.
func hasControl(s string, valueOK bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if valueOK && (c == ' ' || c == '\t') {
			continue
		}
		if c <= ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// credentialSlots counts the places in the input where the right
// credentials could be: each authorised request needs its own. The count is
// generous: CR and LF are dropped first (standard base64 decoding skips
// them), and any encoding that decodes to the pair counts (the last group's
// spare bits may be set).
func credentialSlots(in []byte) int {
	s := make([]byte, 0, len(in))
	for _, c := range in {
		if c != '\r' && c != '\n' {
			s = append(s, c)
		}
	}
	n := len(fuzzToken)
	prefix := []byte(fuzzToken[:n-4])
	count := 0
	for i := 0; i+n <= len(s); {
		j := bytes.Index(s[i:], prefix)
		if j < 0 {
			break
		}
		k := i + j
		if k+n <= len(s) {
			if d, err := base64.StdEncoding.DecodeString(string(s[k : k+n])); err == nil && string(d) == fuzzPair {
				count++
				i = k + n
				continue
			}
		}
		i = k + 1
	}
	return count
}

// fuzzResponse is one response warden sent.
type fuzzResponse struct {
	status int
	header http.Header
	body   []byte
	toHead bool // read as the answer to a HEAD request
}

// parseResponses splits what warden sent into responses. Whether one
// answers a HEAD request (and so has no body whatever its framing says) is
// not known here, so when the input holds "HEAD" both readings are tried.
func parseResponses(out []byte, mayHead bool) ([]fuzzResponse, error) {
	var resps []fuzzResponse
	failed := map[int]bool{}
	deepest, deepestErr := -1, error(nil)
	var parse func(pos int) bool
	parse = func(pos int) bool {
		if pos == len(out) {
			return true
		}
		if failed[pos] {
			return false
		}
		for _, toHead := range []bool{false, true} {
			if toHead && !mayHead {
				break
			}
			r, n, err := parseResponse(out[pos:], toHead)
			if err != nil {
				if pos > deepest {
					deepest, deepestErr = pos, err
				}
				continue
			}
			resps = append(resps, r)
			if parse(pos + n) {
				return true
			}
			resps = resps[:len(resps)-1]
		}
		failed[pos] = true
		return false
	}
	if !parse(0) {
		return nil, fmt.Errorf("at byte %d of the answer: %w", deepest, deepestErr)
	}
	return resps, nil
}

func parseResponse(b []byte, toHead bool) (fuzzResponse, int, error) {
	var r fuzzResponse
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return r, 0, fmt.Errorf("no whole response head in %q", abbreviate(b))
	}
	if p := responseHeadProblem(string(b[:end+4])); p != "" {
		return r, 0, fmt.Errorf("%s in %q", p, b[:end+4])
	}
	method := http.MethodGet
	if toHead {
		method = http.MethodHead
	}
	rd := bytes.NewReader(b)
	br := bufio.NewReader(rd)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return r, 0, fmt.Errorf("net/http cannot read %q: %w", abbreviate(b), err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return r, 0, fmt.Errorf("body of %q: %w", abbreviate(b), err)
	}
	r = fuzzResponse{status: resp.StatusCode, header: resp.Header, body: body, toHead: toHead}
	return r, len(b) - rd.Len() - br.Buffered(), nil
}

// responseHeadProblem checks a response head warden sent, through its
// blank line.
func responseHeadProblem(head string) string {
	if p := lineProblem(head); p != "" {
		return p
	}
	lines := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")
	line := lines[0]
	if !strings.HasPrefix(line, "HTTP/1.1 ") && !strings.HasPrefix(line, "HTTP/1.0 ") ||
		len(line) < 12 || strings.Trim(line[9:12], "0123456789") != "" ||
		len(line) > 12 && (line[12] != ' ' || hasControl(line[12:], true)) {
		return "status line"
	}
	fields, p := parseFields(lines[1:])
	if p != "" {
		return p
	}
	return framingProblem(fields)
}

// problem checks the invariants and says which one broke, or "".
func (r *serveResult) problem() string {
	// What reached the upstream.
	heads, upBytes := 0, 0
	for i, c := range r.up {
		if c.problem != "" {
			return fmt.Sprintf("the upstream received a malformed request on connection %d: %s", i, c.problem)
		}
		heads += c.heads
		upBytes += len(c.raw)
	}
	slots := credentialSlots(r.in)
	if slots == 0 && upBytes > 0 {
		return fmt.Sprintf("the input holds no credentials, yet the upstream received %d bytes", upBytes)
	}
	if heads > slots {
		return fmt.Sprintf("the upstream received %d requests, but the input holds credentials for at most %d", heads, slots)
	}
	if r.leaked {
		return "an upstream connection was still open after the client's connection and the proxy were closed"
	}
	if k := firstBadChunkedBody(r.in); k >= 0 {
		whole := 0
		for _, c := range r.up {
			whole += len(c.answered)
		}
		if whole > k {
			return fmt.Sprintf("request %d of the input has a chunked body outside RFC 9112's grammar, yet the upstream received %d whole requests", k, whole)
		}
	}

	// What came back to the client.
	resps, err := parseResponses(r.out, bytes.Contains(r.in, []byte("HEAD")))
	if err != nil {
		return fmt.Sprintf("warden sent something other than HTTP/1.1 responses: %v", err)
	}
	finals := 0
	seen := map[string]bool{}
	for i, resp := range resps {
		if resp.status < 200 {
			if resp.status != 100 {
				return fmt.Sprintf("response %d: interim status %d", i, resp.status)
			}
			continue
		}
		finals++
		codes, markers := resp.header.Values(HeaderError), resp.header.Values(fuzzMarker)
		switch {
		case len(codes) > 0 && len(markers) > 0:
			return fmt.Sprintf("response %d is both warden's error %q and the upstream's answer %q", i, codes, markers)
		case len(codes) > 0:
			if p := wardenErrorProblem(resp, codes); p != "" {
				return fmt.Sprintf("response %d: %s", i, p)
			}
		case len(markers) == 1:
			m := markers[0]
			want, sent := r.answers[m]
			switch {
			case !sent:
				return fmt.Sprintf("response %d carries the upstream marker %q, which the upstream never sent", i, m)
			case seen[m]:
				return fmt.Sprintf("response %d repeats the upstream's answer %q", i, m)
			}
			seen[m] = true
			body := string(resp.body)
			if strings.HasPrefix(resp.header.Get("Content-Type"), "text/event-stream") {
				body = strings.ReplaceAll(body, string(heartbeatComment), "")
			}
			if resp.toHead || resp.status == http.StatusNoContent {
				want = ""
			}
			if body != want {
				return fmt.Sprintf("response %d: the upstream sent the body %q, the client got %q", i, want, resp.body)
			}
		default:
			return fmt.Sprintf("response %d (%d) is neither warden's error nor the upstream's answer", i, resp.status)
		}
		if resp.status >= 500 {
			return fmt.Sprintf("response %d: %d %q, from an upstream that answers every request at once", i, resp.status, codes)
		}
		if hasToken([]byte(strings.Join(resp.header.Values("Connection"), ",")), "close") && i != len(resps)-1 {
			return fmt.Sprintf("response %d says Connection: close, yet %d more followed", i, len(resps)-1-i)
		}
	}
	if heads > finals {
		return fmt.Sprintf("the upstream received %d requests, warden answered %d: a request was smuggled", heads, finals)
	}
	for m := range r.answers {
		if !seen[m] {
			return fmt.Sprintf("the upstream's answer %q never reached the client", m)
		}
	}
	if r.inFlight != 0 {
		return fmt.Sprintf("%d requests still in flight after the connection closed", r.inFlight)
	}
	if r.counted != uint64(finals) {
		return fmt.Sprintf("the metrics counted %d answers, the client got %d", r.counted, finals)
	}
	return ""
}

// firstBadChunkedBody reads the input's requests as a strict parser would,
// and returns the index of the first whose chunked body is framed outside
// RFC 9112's grammar (by refChunked, the reference of chunked_test.go), or
// -1. Its heads are read by net/http, so it walks only as far as the heads
// are plain (CRLF line ends, no folds, no bare CR or LF), where net/http and
// fasthttp cannot disagree on where a head ends; anything else stops it.
func firstBadChunkedBody(in []byte) int {
	for k := 0; ; k++ {
		end := bytes.Index(in, []byte("\r\n\r\n"))
		if end < 0 {
			return -1
		}
		head := in[:end+4]
		if bytes.Count(head, []byte("\n")) != bytes.Count(head, []byte("\r\n")) ||
			bytes.Count(head, []byte("\r")) != bytes.Count(head, []byte("\r\n")) ||
			bytes.Contains(head, []byte("\n ")) || bytes.Contains(head, []byte("\n\t")) {
			return -1
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil || req.ProtoMinor != 1 {
			return -1
		}
		rest := in[end+4:]
		switch {
		case slices.Equal(req.TransferEncoding, []string{"chunked"}):
			_, n, verdict := refChunked(rest)
			switch verdict {
			case "":
				rest = rest[n:]
			case "incomplete":
				return -1
			default:
				return k
			}
		case len(req.TransferEncoding) > 0:
			return -1
		case req.ContentLength > 0:
			if int64(len(rest)) < req.ContentLength {
				return -1
			}
			rest = rest[req.ContentLength:]
		}
		in = rest
	}
}

// wardenErrorProblem checks one of warden's own answers.
func wardenErrorProblem(resp fuzzResponse, codes []string) string {
	if len(codes) != 1 {
		return fmt.Sprintf("%d X-Warden-Error fields", len(codes))
	}
	code := codes[0]
	status, known := Failures()[code]
	switch {
	case !known:
		return "unknown error code " + strconv.Quote(code)
	case status != resp.status:
		return fmt.Sprintf("%s with status %d, want %d", code, resp.status, status)
	case resp.status < 400:
		return fmt.Sprintf("warden's error %s with status %d", code, resp.status)
	case resp.status >= 500 && !slices.Contains(upstreamCodes, code):
		return fmt.Sprintf("a %d for %s, which is no upstream failure", resp.status, code)
	case resp.header.Get("Content-Type") != "application/json":
		return "Content-Type " + strconv.Quote(resp.header.Get("Content-Type"))
	case code == "unauthorized" && !strings.HasPrefix(resp.header.Get("WWW-Authenticate"), "Basic realm="):
		return "401 without a challenge"
	case resp.toHead:
		if len(resp.body) > 0 {
			return "a body in the answer to HEAD"
		}
		return ""
	}
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
		Status  int    `json:"status"`
	}
	if err := json.Unmarshal(resp.body, &e); err != nil {
		return fmt.Sprintf("body %q is not JSON: %v", resp.body, err)
	}
	if e.Error != code || e.Status != resp.status || e.Message == "" {
		return fmt.Sprintf("body %q does not match %d %s", resp.body, resp.status, code)
	}
	return ""
}

func (r *serveResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "input (%d bytes): %q\n", len(r.in), abbreviate(r.in))
	fmt.Fprintf(&b, "warden sent (%d bytes): %q\n", len(r.out), abbreviate(r.out))
	for i, c := range r.up {
		fmt.Fprintf(&b, "upstream connection %d: %d heads, answered %q, end %q, problem %q\n  received: %q\n",
			i, c.heads, c.answered, c.end, c.problem, abbreviate(c.raw))
	}
	return b.String()
}

func abbreviate(b []byte) string {
	if len(b) > 4000 {
		return string(b[:4000]) + "…(" + strconv.Itoa(len(b)) + " bytes)"
	}
	return string(b)
}

// fuzzServeSeeds are the RFC 9112 examples and the hostile cases of
// ../e2e/hostile_test.go, each with the right credentials and without.
// "{A}" in a template is where the Authorization field goes.
func fuzzServeSeeds() []string {
	const a = "{A}"
	req := func(start string, lines ...string) string {
		var b strings.Builder
		b.WriteString(start + "\r\n")
		for _, l := range lines {
			if l == a {
				b.WriteString(a)
				continue
			}
			b.WriteString(l + "\r\n")
		}
		b.WriteString("\r\n")
		return b.String()
	}
	post := func(lines ...string) string {
		return req("POST /hostile HTTP/1.1", append([]string{"Host: warden.test", a}, lines...)...)
	}
	get := func(lines ...string) string {
		return req("GET /hostile HTTP/1.1", append([]string{"Host: warden.test", a}, lines...)...)
	}
	const last = "0\r\n\r\n"
	// smuggled always has the credentials: if warden ever read it as a
	// request of its own, the upstream would receive it.
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: warden.test\r\nAuthorization: " + goodAuth + "\r\n\r\n"
	pad := strings.Repeat("p", 1000)

	templates := []string{
		// RFC 9112 §3, §3.2, §3.2.1-4, §6, §7, §9.3 and RFC 9110 examples.
		req("GET /hello.txt HTTP/1.1", "User-Agent: curl/7.64.1", "Host: www.example.com", "Accept-Language: en, mi", a),
		req("GET /where?q=now HTTP/1.1", "Host: www.example.org", a),
		req("GET http://www.example.org/pub/WWW/TheProject.html HTTP/1.1", "Host: www.example.org", a),
		req("GET http://user:pw@www.example.org HTTP/1.1", "Host: other.example", a),
		req("CONNECT www.example.com:80 HTTP/1.1", "Host: www.example.com:80", a),
		req("OPTIONS * HTTP/1.1", "Host: www.example.org:8001", a),
		req("HEAD /chunked HTTP/1.1", "Host: a", a),
		req("HEAD / HTTP/1.1", "Host: a", a) + req("GET / HTTP/1.1", "Host: a", a),
		req("POST /v1/completions HTTP/1.1", "Host: a", a, "Content-Type: application/json", "Content-Length: 13") + `{"prompt":""}`,
		req("POST /chunked HTTP/1.1", "Host: a", a, "Transfer-Encoding: chunked", "Trailer: Expires") +
			"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n",
		req("GET /sse HTTP/1.1", "Host: a", a, "Accept: text/event-stream"),
		req("GET /close HTTP/1.1", "Host: a", a) + req("GET / HTTP/1.1", "Host: a", a),
		req("DELETE /empty HTTP/1.1", "Host: a", a),
		req("GET / HTTP/1.0", a),
		req("GET /close HTTP/1.0", a),
		req("GET /sse HTTP/1.0", "Connection: keep-alive", a) + req("GET / HTTP/1.0", a),
		req("HEAD /close HTTP/1.0", a),
		req("GET / HTTP/1.0", "Connection: keep-alive", a) + req("GET /chunked HTTP/1.0", a),
		req("POST /x HTTP/1.1", "Host: a", a, "Expect: 100-continue", "Content-Length: 5") + "hello",
		req("POST /x HTTP/1.1", "Host: a", a, "Expect: 100-continue", "Transfer-Encoding: chunked") + "5\r\nhello\r\n" + last,
		req("POST /x HTTP/1.1", "Host: a", a, "Expect: 100-continue", "Content-Length: 5000"),
		req("POST /x HTTP/1.1", "Host: a", a, "Expect: 200-ok"),
		req("GET /chat HTTP/1.1", "Host: a", a, "Upgrade: websocket", "Connection: Upgrade",
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"),
		req("GET / HTTP/1.1", "Host: a", a, "Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings", "HTTP2-Settings: AAMAAABkAAQAAP__"),
		req("GET / HTTP/1.1", "Host: a", a, "Connection: X-Secret, keep-alive", "X-Secret: 1", "Keep-Alive: timeout=5", "TE: trailers",
			"Proxy-Authorization: Basic eDp5", "X-Forwarded-For: 203.0.113.7, 192.0.2.9", "X-Forwarded-Host: evil", "X-Forwarded-Proto: https"),
		req("GET / HTTP/1.1", "Host: a", a, "Connection: close") + req("GET / HTTP/1.1", "Host: a", a),
		req("GET /a HTTP/1.1", "Host: a", a) + req("GET /b HTTP/1.1", "Host: a", "Authorization: Basic eDp5") +
			req("POST /c HTTP/1.1", "Host: a", a, "Content-Length: 3") + "abc",
		// Throttling: three failed logins, then the right credentials.
		strings.Repeat(req("GET / HTTP/1.1", "Host: a", "Authorization: Basic eDp5"), 3) + req("GET / HTTP/1.1", "Host: a", a),
		strings.Repeat(req("GET / HTTP/1.1", "Host: a", "X-Forwarded-For: 198.51.100.1", "Authorization: Basic eDp5"), 3) +
			req("POST / HTTP/1.1", "Host: a", "X-Forwarded-For: 198.51.100.1", a, "Expect: 100-continue", "Content-Length: 1") + "x",

		// CL/TE conflicts (e2e TestConflictingOrInvalidContentLengthAndTransferEncodingNeverSmuggle).
		post("Content-Length: 5", "Transfer-Encoding: chunked") + last + smuggled,
		post("Transfer-Encoding: chunked", "Content-Length: "+strconv.Itoa(len(last+smuggled))) + last + smuggled,
		post("Content-Length: 0", "Transfer-Encoding: chunked") + "5\r\nhello\r\n" + last + smuggled,
		post("Content-Length: 5", "Content-Length: "+strconv.Itoa(5+len(smuggled))) + "hello" + smuggled,
		post("Content-Length: 5, "+strconv.Itoa(5+len(smuggled))) + "hello" + smuggled,
		post("Content-Length: 5", "Content-Length: 5") + "hello",
		post("Content-Length: 5, 5") + "hello",
		req("POST /hostile HTTP/1.0", "Host: warden.test", a, "Connection: keep-alive", "Transfer-Encoding: chunked") + smuggled,
	}
	for _, v := range []string{"+5", "-5", "-1", "5 5", "0x5", "5a", "5.0", "", "18446744073709551621"} {
		templates = append(templates, post("Content-Length: "+v)+"hello"+smuggled)
	}
	for _, te := range [][]string{
		{"Transfer-Encoding: xchunked"},
		{"Transfer-Encoding: chunked, identity"},
		{"Transfer-Encoding: identity, chunked"},
		{"Transfer-Encoding: identity"},
		{"Transfer-Encoding: chunked, chunked"},
		{`Transfer-Encoding: "chunked"`},
		{"Transfer-Encoding: chunked", "Transfer-Encoding: chunked"},
		{"Transfer-Encoding: identity", "Transfer-Encoding: chunked"},
		{"Transfer-Encoding : chunked"},
		{"Transfer-Encoding:\x0bchunked"},
		{"Transfer-Encoding: chunked\x0c"},
		{"transfer-encoding: chunked"},
		{"Transfer-encoding: cHuNkEd"},
		{"Transfer-Encoding:    chunked   "},
		{"Transfer-Encoding:\tchunked"},
		{"Transfer-Encoding:", " chunked"},
	} {
		templates = append(templates,
			post(append([]string{"Content-Length: 5"}, te...)...)+last+smuggled,
			post(te...)+smuggled)
	}
	// Bad chunks (TestBadChunksAreRefusedAndNeverSmuggle).
	chunked := post("Transfer-Encoding: chunked")
	for _, body := range []string{
		"zz\r\nhello\r\n" + last, "-1\r\nhello\r\n" + last, "ffffffffffffffffffff\r\nhello\r\n" + last,
		"10000000000000005\r\nhello\r\n" + last, "0x5\r\nhello\r\n" + last, " 5\r\nhello\r\n" + last,
		"3\r\nhello\r\n" + last, "5\r\nhelloXX" + last, "5;ext\nhello\r\n" + last, "5;ext=\"a\r\nb\"\r\nhello\r\n" + last,
		"5\r\nhello\r\n0\r\n", "5;" + strings.Repeat("x", 4<<10) + "\r\nhello\r\n" + last,
	} {
		templates = append(templates, chunked+body+smuggled)
	}
	// Chunk lines outside RFC 9112's grammar, alone and after a good chunk,
	// and well-formed ones (TestChunkLinesOutsideTheGrammarGet400,
	// TestWellFormedChunkLinesAreAccepted).
	for _, tc := range chunkedCases {
		templates = append(templates, chunked+tc.body+smuggled, chunked+"2\r\nok\r\n"+tc.body+smuggled)
	}
	// Control bytes and malformed field lines
	// (TestControlCharactersAndMalformedFieldLinesNeverReachTheUpstream).
	templates = append(templates,
		get("X-Note: a\rb"), get("X-Note: a\x00b"), post("X-Note: a\nContent-Length: 5")+"hello",
		get("X-No\rte: b"), get("X-No\nte: b"), get("X-No\x00te: b"), get("X Note: b"), get("X-Note : b"),
		get(": b"), get("X-Note"),
		"GET /hostile HTTP/1.1\nHost: warden.test\n{A}\n",
		get("X-Note: a", " b"), get("X-Note: a", "\tb"),
		req("GET /hostile HTTP/1.1", " X-Note: a", "Host: warden.test", a),
		req("GET /hostile HTTP/1.1", a), get("Host: other.test"), get("host: other.test"),
	)
	// Malformed request lines (TestMalformedRequestLinesGet4xx).
	for _, start := range []string{
		"G@T /hostile HTTP/1.1", "GE\x00T /hostile HTTP/1.1", " /hostile HTTP/1.1", "GET foo HTTP/1.1",
		"GET /\x00 HTTP/1.1", "GET /a\rb HTTP/1.1", "GET /a b HTTP/1.1", "GET  /hostile HTTP/1.1",
		"GET * HTTP/1.1", "GET /hostile", "GET /hostile http/1.1", "GET /hostile HTTP/1",
		"GET /hostile HTTP/1.1 x", "GET /hostile HTTP/2.0", "GET /hostile HTTP/1.2", "GET ftp://x/ HTTP/1.1",
	} {
		templates = append(templates, req(start, "Host: warden.test", a))
	}
	templates = append(templates, "GET /hostile\r\n", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	// Oversized headers (TestOversizedHeadersGet431), against the 2 KiB
	// limit here.
	var many []string
	for i := range 4 {
		many = append(many, "X-Pad-"+strconv.Itoa(i)+": "+pad)
	}
	templates = append(templates,
		get(many...), get("X-Big: "+strings.Repeat("b", 4<<10)), get(slices.Repeat([]string{"X: y"}, 600)...),
		req("GET /hostile HTTP/1.1", "X-Big: "+strings.Repeat("b", 4<<10), "Host: warden.test", a),
		req("GET /"+strings.Repeat("t", 4<<10)+" HTTP/1.1", "Host: warden.test", a),
		get("X-Big: "+strings.Repeat("b", 1<<10)),
	)
	// CONNECT (TestConnectGets405WithCredentialsAnd401Without).
	templates = append(templates, req("CONNECT upstream.test:80 HTTP/1.1", "Host: upstream.test:80", a))
	// Bodies over the limit (TestBodiesOverTheLimitGet413…), 256 here.
	body := func(n int) string { return strings.Repeat("a", n) }
	chunks := func(sizes ...int) string {
		var b strings.Builder
		for _, n := range sizes {
			b.WriteString(strconv.FormatInt(int64(n), 16) + "\r\n" + body(n) + "\r\n")
		}
		return b.String() + last
	}
	templates = append(templates,
		post("Content-Length: 1000")+body(1000)+smuggled, post("Content-Length: 1000")+body(100),
		post("Content-Length: 1000", "Expect: 100-continue"),
		post("Transfer-Encoding: chunked")+chunks(200, 200)+smuggled, post("Transfer-Encoding: chunked")+chunks(257)+smuggled,
		post("Content-Length: 256")+body(256), post("Transfer-Encoding: chunked")+chunks(128, 128),
		// A body cut short by the client's EOF.
		post("Content-Length: 100")+body(10), post("Transfer-Encoding: chunked")+"64\r\n"+body(10),
	)

	var seeds []string
	for _, tpl := range templates {
		seeds = append(seeds,
			strings.ReplaceAll(tpl, a, "Authorization: "+goodAuth+"\r\n"),
			strings.ReplaceAll(tpl, a, ""))
	}
	return seeds
}

// TestFuzzServeCheckersCatchWhatTheyAreFor shows that FuzzServe's checks
// can fail: each is given what a broken warden would send.
func TestFuzzServeCheckersCatchWhatTheyAreFor(t *testing.T) {
	t.Parallel()
	good := "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: " + fuzzClientIP + "\r\nX-Forwarded-Host: a\r\nX-Forwarded-Proto: http\r\n"
	if _, p := forwardedHeadProblem(good + "\r\n"); p != "" {
		t.Fatalf("a good head refused: %s", p)
	}
	for _, bad := range []string{
		good + "Authorization: " + goodAuth + "\r\n\r\n",
		good + "Proxy-Authorization: x\r\n\r\n",
		good + "Host: b\r\n\r\n",
		good + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		good + "Transfer-Encoding: identity\r\n\r\n",
		good + "Connection: keep-alive\r\n\r\n",
		good + "X-A: 1\nX-B: 2\r\n\r\n",
		good + "X-A: 1\r\n b\r\n\r\n",
		strings.Replace(good, "GET /", "GET http://a/", 1) + "\r\n",
		strings.Replace(good, "HTTP/1.1", "HTTP/1.0", 1) + "\r\n",
	} {
		if _, p := forwardedHeadProblem(bad); p == "" {
			t.Errorf("forwardedHeadProblem accepted %q", bad)
		}
	}
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	if _, err := parseResponses([]byte(ok+ok), false); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		ok + "x",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
		"HTTP/2 200 OK\r\n\r\n",
	} {
		if _, err := parseResponses([]byte(bad), true); err == nil {
			t.Errorf("parseResponses accepted %q", bad)
		}
	}
	// HEAD: the same bytes are two responses, one without a body.
	headThenGet := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + ok
	if _, err := parseResponses([]byte(headThenGet), false); err == nil {
		t.Error("a bodiless response read without HEAD")
	}
	if rs, err := parseResponses([]byte(headThenGet), true); err != nil || len(rs) != 2 || !rs[0].toHead {
		t.Errorf("with HEAD: %v %v", rs, err)
	}
	for in, want := range map[string]int{
		"": 0, fuzzToken: 1, fuzzToken + fuzzToken: 2, fuzzToken[:10] + "\r\n" + fuzzToken[10:]: 1,
		fuzzToken[:len(fuzzToken)-3] + "B==": 1, // spare bits set: decodes the same
		fuzzToken[:len(fuzzToken)-1]:         0,
	} {
		if got := credentialSlots([]byte(in)); got != want {
			t.Errorf("credentialSlots(%q) = %d, want %d", in, got, want)
		}
	}
	// The check itself: a result that breaks each rule fails.
	for name, r := range map[string]*serveResult{
		"upstream traffic without credentials": {in: []byte("GET / HTTP/1.1\r\n\r\n"), up: []*fuzzUpConn{{raw: []byte("G"), heads: 1}}},
		"an answer that is neither":            {in: []byte("x"), out: []byte(ok)},
		"a 5xx":                                {in: []byte("x"), out: []byte("HTTP/1.1 502 Bad Gateway\r\nX-Warden-Error: upstream_error\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")},
		"warden's error with a wrong body":     {in: []byte("x"), out: []byte("HTTP/1.1 400 Bad Request\r\nX-Warden-Error: bad_request\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"), counted: 1},
		"a lost answer":                        {in: []byte(goodAuth), answers: map[string]string{"0.0": "ok"}, up: []*fuzzUpConn{{raw: []byte("GET"), heads: 1}}},
		"more upstream requests than answers":  {in: []byte(goodAuth + goodAuth), up: []*fuzzUpConn{{raw: []byte("GET"), heads: 2}}},
		"still in flight":                      {in: []byte("x"), inFlight: 1},
		"a bad chunk line forwarded": {
			in:      []byte("POST / HTTP/1.1\r\nHost: a\r\nAuthorization: " + goodAuth + "\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"),
			up:      []*fuzzUpConn{{raw: []byte("POST"), heads: 1, answered: []string{"0.0"}}},
			answers: map[string]string{"0.0": "ok"},
			out:     []byte("HTTP/1.1 200 OK\r\n" + fuzzMarker + ": 0.0\r\nContent-Length: 2\r\n\r\nok"),
			counted: 1,
		},
	} {
		if r.problem() == "" {
			t.Errorf("check passed %s", name)
		}
	}
}
