package proxy

import (
	"bufio"
	"encoding/base64"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/paperspace/warden/auth"
)

// benchRig measures the whole path over loopback TCP: a fasthttp client,
// warden, and a fasthttp upstream, all in this process.
func benchRig(b testing.TB, failureLimit int) (*fasthttp.HostClient, func()) {
	b.Helper()
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	up := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok\n") }}
	go up.Serve(upLn)
	c, stop := benchRigTo(b, upLn.Addr().String(), failureLimit)
	return c, func() { stop(); up.Shutdown() }
}

// benchRigTo is benchRig's warden and client, in front of upstream.
func benchRigTo(b testing.TB, upstream string, failureLimit int) (*fasthttp.HostClient, func()) {
	b.Helper()
	checker, _ := auth.New(testUser, testPassword)
	checker, _ = checker.WithSchemes(auth.SchemeBasic | auth.SchemeBearer | auth.SchemeAPIKey)
	p, err := New(Config{
		Upstream: upstream, Auth: checker, Realm: "w", UpstreamTimeout: 5 * time.Second,
		UpstreamIdleTimeout: time.Second, UpstreamMaxConns: 1024, MaxHeaderBytes: 32 << 10,
		ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute, Log: zerolog.Nop(), Metrics: NewMetrics("bench"),
		AuthFailureLimit: failureLimit, AuthFailureWindow: time.Minute, ServerTiming: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := p.server()
	go srv.Serve(ln)
	c := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxConns: 1024}
	return c, func() { srv.Shutdown(); p.Close() }
}

func benchmarkProxy(b *testing.B, authz string, wantStatus, failureLimit int) {
	c, stop := benchRig(b, failureLimit)
	defer stop()
	run := func(req *fasthttp.Request, resp *fasthttp.Response) {
		if err := c.Do(req, resp); err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode() != wantStatus {
			b.Fatalf("status %d, want %d", resp.StatusCode(), wantStatus)
		}
	}
	// The client keeps its body buffer: otherwise fasthttp's buffer pool,
	// calibrated by the previous benchmark's 3-byte bodies, drops each
	// 81-byte one and the client allocates (the client, not warden).
	newResp := func() *fasthttp.Response {
		resp := fasthttp.AcquireResponse()
		resp.KeepBodyBuffer = true
		return resp
	}
	newReq := func() *fasthttp.Request {
		req := fasthttp.AcquireRequest()
		req.SetRequestURI("http://" + c.Addr + "/v1/completions")
		req.Header.Set("Authorization", authz)
		return req
	}
	// settle warms the path up and lets the previous benchmark's leftovers
	// (closing connections, exiting workers) finish, so that their
	// allocations are not counted here.
	settle := func(req *fasthttp.Request, resp *fasthttp.Response) {
		for range 200 {
			run(req, resp)
		}
		runtime.GC()
	}
	b.Run("sequential", func(b *testing.B) {
		req, resp := newReq(), newResp()
		settle(req, resp)
		b.ReportAllocs()
		for b.Loop() {
			run(req, resp)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		settle(newReq(), newResp())
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			req, resp := newReq(), newResp()
			for pb.Next() {
				run(req, resp)
			}
		})
	})
}

// BenchmarkProxy is a proxied request with good credentials, end to end in
// one process (client, warden and upstream share the CPU), with the
// defaults: throttling and Server-Timing on.
func BenchmarkProxy(b *testing.B) { benchmarkProxy(b, goodAuth, 200, 20) }

// BenchmarkRefuse is a request with a wrong password, throttling off (else
// the 21st would get 429).
func BenchmarkRefuse(b *testing.B) {
	benchmarkProxy(b, "Basic "+base64.StdEncoding.EncodeToString([]byte(testUser+":wrong")), 401, 0)
}

// BenchmarkServeHTTPRefusal is warden's own work for a refused request,
// without sockets: the handler alone.
func BenchmarkServeHTTPRefusal(b *testing.B) {
	r := newRig(b, nil)
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader("GET /v1 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eDp5\r\n\r\n"))); err != nil {
		b.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		r.p.ServeHTTP(&ctx)
	}
}
