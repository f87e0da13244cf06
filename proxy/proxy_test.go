package proxy

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/paperspace/warden/auth"
)

const (
	testUser     = "paperspace"
	testPassword = "pa:ss wörd"
)

var goodAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPassword))

// rig is a proxy served on an in-memory listener, in front of an upstream
// fasthttp server on another one: the whole request path without sockets.
type rig struct {
	p        *Proxy
	client   *fasthttp.HostClient
	upstream *fasthttp.Server
	mu       sync.Mutex
	handler  fasthttp.RequestHandler
	writes   []int // sizes of warden's writes to upstream connections
}

func newRig(tb testing.TB, mutate func(*Config)) *rig {
	tb.Helper()
	checker, err := auth.New(testUser, testPassword)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := Config{
		Upstream:            "upstream.test:80",
		Auth:                checker,
		Realm:               "warden",
		UpstreamTimeout:     5 * time.Second,
		UpstreamIdleTimeout: time.Second,
		UpstreamMaxConns:    64,
		MaxHeaderBytes:      32 << 10,
		ReadHeaderTimeout:   5 * time.Second,
		IdleTimeout:         time.Minute,
		Log:                 zerolog.Nop(),
		Metrics:             NewMetrics("test"),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	r := &rig{}
	upLn := fasthttputil.NewInmemoryListener()
	r.upstream = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			r.mu.Lock()
			h := r.handler
			r.mu.Unlock()
			h(ctx)
		},
		StreamRequestBody:     true,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		NoDefaultContentType:  true,
	}
	r.handler = func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }
	go r.upstream.Serve(upLn)
	p, err := newProxy(cfg, func(string, time.Time) (net.Conn, error) {
		c, err := upLn.Dial()
		return &countedConn{Conn: c, r: r}, err
	})
	if err != nil {
		tb.Fatal(err)
	}
	r.p = p
	ln := fasthttputil.NewInmemoryListener()
	srv := p.server()
	go srv.Serve(ln)
	r.client = &fasthttp.HostClient{
		Addr:                     "warden.test",
		Dial:                     func(string) (net.Conn, error) { return ln.Dial() },
		NoDefaultUserAgentHeader: true,
		StreamResponseBody:       true,
		MaxConns:                 1024,
	}
	tb.Cleanup(func() {
		_ = srv.Shutdown()
		_ = r.upstream.Shutdown()
		p.Close()
	})
	return r
}

// countedConn records the size of every write warden makes upstream.
type countedConn struct {
	net.Conn
	r *rig
}

func (c *countedConn) Write(b []byte) (int, error) {
	c.r.mu.Lock()
	c.r.writes = append(c.r.writes, len(b))
	c.r.mu.Unlock()
	return c.Conn.Write(b)
}

func (r *rig) upstreamWrites() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.writes...)
}

func (r *rig) setUpstream(h fasthttp.RequestHandler) {
	r.mu.Lock()
	r.handler = h
	r.mu.Unlock()
}

// get sends a request and returns the status, headers and body.
func (r *rig) do(tb testing.TB, method, uri, authz string, body string) (int, *fasthttp.ResponseHeader, string) {
	tb.Helper()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://warden.test" + uri)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if body != "" {
		req.SetBodyString(body)
	}
	if err := r.client.DoTimeout(req, resp, 5*time.Second); err != nil {
		tb.Fatalf("%s %s: %v", method, uri, err)
	}
	var h fasthttp.ResponseHeader
	resp.Header.CopyTo(&h)
	b, err := io.ReadAll(resp.BodyStream())
	if err != nil && resp.BodyStream() != nil {
		tb.Fatalf("reading body: %v", err)
	}
	if resp.BodyStream() == nil {
		b = resp.Body()
	}
	return resp.StatusCode(), &h, string(b)
}

func TestServeHTTPRefusesWithoutTouchingTheUpstream(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	var hits int
	r.setUpstream(func(ctx *fasthttp.RequestCtx) { hits++ })
	for _, authz := range []string{"", "Basic eDp5", "Bearer x", goodAuth + "x"} {
		status, h, body := r.do(t, "GET", "/", authz, "")
		if status != 401 {
			t.Errorf("%q: status %d", authz, status)
		}
		if got := string(h.Peek("WWW-Authenticate")); got != `Basic realm="warden", charset="UTF-8"` {
			t.Errorf("challenge %q", got)
		}
		if string(h.Peek(HeaderError)) != "unauthorized" || !strings.Contains(body, `"unauthorized"`) {
			t.Errorf("%q: not warden's 401: %s", authz, body)
		}
	}
	if hits != 0 {
		t.Fatalf("upstream saw %d refused requests", hits)
	}
}

func TestServeHTTPForwardsAndStripsCredentials(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	r.setUpstream(func(ctx *fasthttp.RequestCtx) {
		fmt.Fprintf(ctx, "auth=%q xff=%q body=%q", ctx.Request.Header.Peek("Authorization"),
			ctx.Request.Header.Peek("X-Forwarded-For"), ctx.Request.Body())
	})
	status, _, body := r.do(t, "POST", "/v1/x?y=1", goodAuth, "hello")
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	if want := `auth="" xff="pipe" body="hello"`; body != want {
		t.Fatalf("upstream saw %s, want %s", body, want)
	}
}

// A small request goes upstream in one write, head and body together,
// however fasthttp hands the body over; a body that is still arriving goes
// piece by piece (e2e TestRequestBodyBytesAreNeverHeldBack).
func TestSmallRequestGoesUpstreamInOneWrite(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	for _, body := range []string{"", "x", `{"prompt":"hello","max_tokens":16}`, strings.Repeat("b", 3000)} {
		before := len(r.upstreamWrites())
		method := "POST"
		if body == "" {
			method = "GET"
		}
		if status, _, got := r.do(t, method, "/", goodAuth, body); status != 200 {
			t.Fatalf("%d %s", status, got)
		}
		if w := r.upstreamWrites()[before:]; len(w) != 1 {
			t.Errorf("a %s with a %d-byte body went upstream in %d writes %v, want 1", method, len(body), len(w), w)
		}
	}
}

func TestServeHTTPPublicModeForwardsWithoutCredentials(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *Config) { c.Auth = nil })
	if status, _, body := r.do(t, "GET", "/", "", ""); status != 200 || body != "ok" {
		t.Fatalf("got %d %q", status, body)
	}
}

func TestServeHTTPStreamsChunkedResponses(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	release := make(chan struct{})
	r.setUpstream(func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			w.WriteString("data: first\n\n")
			w.Flush()
			<-release
			w.WriteString("data: second\n\n")
			w.Flush()
		})
	})
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://warden.test/sse")
	req.Header.Set("Authorization", goodAuth)
	if err := r.client.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.BodyStream())
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event %q, %v: it must arrive before the second is produced", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: second\n\n" {
		t.Fatalf("rest %q", rest)
	}
}

func TestServeHTTPMapsUpstreamFailures(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *Config) { c.UpstreamTimeout = 200 * time.Millisecond })
	r.setUpstream(func(ctx *fasthttp.RequestCtx) { time.Sleep(time.Second) })
	status, h, _ := r.do(t, "GET", "/", goodAuth, "")
	if status != 504 || string(h.Peek(HeaderError)) != "upstream_timeout" {
		t.Fatalf("slow upstream: %d %s", status, h.Peek(HeaderError))
	}

	refused, err := newProxy(Config{
		Upstream: "upstream.test:80", Realm: "w", UpstreamTimeout: time.Second, UpstreamIdleTimeout: time.Second,
		UpstreamMaxConns: 1, MaxHeaderBytes: 4096, Log: zerolog.Nop(), Metrics: NewMetrics("test"),
	}, func(string, time.Time) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	ctx.Init(&req, nil, nil)
	refused.ServeHTTP(&ctx)
	if got := ctx.Response.StatusCode(); got != 502 || string(ctx.Response.Header.Peek(HeaderError)) != "upstream_unavailable" {
		t.Fatalf("refused connection: %d %s", got, ctx.Response.Header.Peek(HeaderError))
	}
}

func TestHandlerRefusalAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r := newRig(t, func(c *Config) {
		checker, _ := auth.New(testUser, testPassword)
		c.Auth, _ = checker.WithSchemes(auth.SchemeBasic | auth.SchemeBearer | auth.SchemeAPIKey)
	})
	for _, h := range []string{
		"Authorization: Basic eDp5",
		"Authorization: Bearer wrong",
		"X-Api-Key: wrong",
		"X-Api-Key: a\r\nX-Api-Key: b",
		"Authorization:",
		"X-Other: nothing",
	} {
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader("GET /v1 HTTP/1.1\r\nHost: x\r\n" + h + "\r\n\r\n"))); err != nil {
			t.Fatal(err)
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, nil, nil)
		r.p.ServeHTTP(&ctx) // warm up the per-code counter
		if got := ctx.Response.StatusCode(); got != 401 {
			t.Fatalf("%q: status %d", h, got)
		}
		if n := testing.AllocsPerRun(200, func() {
			ctx.Response.Reset()
			r.p.ServeHTTP(&ctx)
		}); n != 0 {
			t.Fatalf("a refused request (%q) allocates %.1f times, want 0", h, n)
		}
	}
}

// The whole path of a proxied request, client and upstream included,
// allocates nothing once warm.
func TestProxiedRequestAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	c, stop := benchRig(t, 20)
	defer stop()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI("http://" + c.Addr + "/v1/completions")
	run := func() {
		if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("%v %d", err, resp.StatusCode())
		}
	}
	for _, carrier := range []struct{ name, value string }{
		{"Authorization", goodAuth},
		{"X-Api-Key", testPassword},
	} {
		req.Header.Del("Authorization")
		req.Header.Set(carrier.name, carrier.value)
		for range 100 {
			run()
		}
		// AllocsPerRun rounds down: a stray allocation in a runtime timer or GC
		// does not count, one per request does.
		if n := testing.AllocsPerRun(500, run); n != 0 {
			t.Fatalf("a proxied request (%s) allocates %.0f times, want 0", carrier.name, n)
		}
	}
}
