// Package proxy is warden's request path: it checks credentials, forwards
// requests to the one upstream model server, and streams responses back. It
// also serves the admin endpoints.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/paperspace/warden/auth"
	"github.com/paperspace/warden/throttle"
)

// Authenticator checks the value of a request's Authorization header at a
// given time. *auth.Checker implements it.
type Authenticator interface {
	Check(authorization []byte, now time.Time) auth.Result
}

var _ Authenticator = (*auth.Checker)(nil)

// Config is what the proxy needs to run. Zero durations and sizes are not
// defaults: main fills every field from the environment.
type Config struct {
	// Upstream is the model server's host:port.
	Upstream string
	// Auth checks credentials; nil serves without authentication.
	Auth Authenticator
	// Realm goes into the WWW-Authenticate challenge.
	Realm string
	// UpstreamTimeout bounds the wait for the upstream's response headers,
	// counted from the moment warden starts on the request.
	UpstreamTimeout time.Duration
	// UpstreamIdleTimeout closes pooled upstream connections idle this long.
	UpstreamIdleTimeout time.Duration
	// UpstreamMaxConns limits connections in use to the upstream; more
	// requests wait for one, up to UpstreamTimeout.
	UpstreamMaxConns int
	// MaxBodyBytes limits request bodies; 0 means no limit.
	MaxBodyBytes int64
	// MaxHeaderBytes limits the request line and headers of a request, and
	// the status line and headers of an upstream response.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the time a client may take to send the
	// request line and headers.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes client keep-alive connections idle this long.
	IdleTimeout time.Duration
	// AccessLog writes one info line per request.
	AccessLog bool
	// AuthFailureLimit failed logins from one client within
	// AuthFailureWindow get it 429 until the window passes; 0 turns
	// throttling off.
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// ServerTiming adds Server-Timing to proxied responses.
	ServerTiming bool
	// SSEHeartbeat sends an SSE comment on an event stream that has been
	// silent this long, between events; 0 turns it off.
	SSEHeartbeat time.Duration

	Log     zerolog.Logger
	Metrics *Metrics
}

// Proxy is the fasthttp handler that protects and forwards. Create it with
// New; its methods are safe for concurrent use.
type Proxy struct {
	cfg       Config
	auth      Authenticator
	challenge string
	up        *upstream
	log       zerolog.Logger
	m         *Metrics

	exchanges sync.Pool
	tunnels   tunnels
	throttle  *throttle.Table
	draining  atomic.Bool
	// drainReason says why, for /readyz.
	drainReason atomic.Pointer[string]
	// upstreamErr is the outcome of the last readiness probe: nil when the
	// upstream accepted a connection.
	upstreamErr atomic.Pointer[probeResult]
}

type probeResult struct{ err error }

// New validates cfg and returns a Proxy. It does not contact the upstream.
func New(cfg Config) (*Proxy, error) {
	return newProxy(cfg, nil)
}

// newProxy is New with a dial function for tests; nil dials TCP.
func newProxy(cfg Config, dial func(addr string, deadline time.Time) (net.Conn, error)) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(cfg.Upstream); err != nil {
		return nil, fmt.Errorf("upstream address: %w", err)
	}
	if cfg.Metrics == nil {
		return nil, errors.New("metrics are required")
	}
	p := &Proxy{
		cfg:       cfg,
		auth:      cfg.Auth,
		challenge: auth.Challenge(cfg.Realm),
		log:       cfg.Log,
		m:         cfg.Metrics,
		up: newUpstream(upstreamConfig{
			addr:        cfg.Upstream,
			maxConns:    cfg.UpstreamMaxConns,
			dialTimeout: cfg.UpstreamTimeout,
			idleTimeout: cfg.UpstreamIdleTimeout,
			readBuf:     cfg.MaxHeaderBytes,
			writeBuf:    4 << 10,
			dial:        dial,
		}),
	}
	p.exchanges.New = func() any { return &exchange{p: p} }
	if cfg.Auth != nil && cfg.AuthFailureLimit > 0 {
		if cfg.AuthFailureWindow <= 0 {
			return nil, errors.New("the auth failure window must be positive")
		}
		p.throttle = throttle.New(throttle.Config{Limit: cfg.AuthFailureLimit, Window: cfg.AuthFailureWindow})
	}
	p.upstreamErr.Store(&probeResult{err: errNotProbed})
	return p, nil
}

var errNotProbed = errors.New("not probed yet")

// Server is the fasthttp server of the proxy port. Its Serve and ServeConn
// put every client connection behind the request guard (guard.go).
type Server struct {
	*fasthttp.Server
}

// Serve serves the connections ln accepts until the server shuts down.
func (s *Server) Serve(ln net.Listener) error { return s.Server.Serve(guardListener{ln}) }

// ServeConn serves one connection.
func (s *Server) ServeConn(c net.Conn) error { return s.Server.ServeConn(guard(c)) }

// Server returns the server for the proxy port, configured for a streaming
// reverse proxy (docs/fasthttp-notes.md lists each trap, with its thread).
func (p *Proxy) Server() *Server {
	return &Server{&fasthttp.Server{
		Handler:      p.ServeHTTP,
		ErrorHandler: p.serveError,
		// Decide on "Expect: 100-continue" from the headers, before the
		// client sends the body (fasthttp#783).
		ExpectHandler: p.expectContinue,
		// The header limit: fasthttp's read buffer holds the request line
		// and headers (fasthttp#173).
		ReadBufferSize:  p.cfg.MaxHeaderBytes,
		WriteBufferSize: 4 << 10,
		// ReadTimeout bounds the headers only: ServeHTTP lifts the deadline
		// before streaming a body, which may take as long as it takes.
		ReadTimeout: p.cfg.ReadHeaderTimeout,
		IdleTimeout: p.cfg.IdleTimeout,
		// No WriteTimeout: it would cut long token streams (fasthttp#839).
		//
		// Stream request bodies of any size; the 4 MiB default and anything
		// <= 0 would cap them (fasthttp#700, #622). warden applies its own
		// limit, MaxBodyBytes.
		StreamRequestBody: true,
		// With a streamed body this is how much fasthttp reads before the
		// handler runs (min with 8 KiB), under the header ReadTimeout. One
		// byte keeps a slow upload from timing out as if it were slow
		// headers; "too large" here only means "stream it".
		MaxRequestBodySize:           1,
		DisablePreParseMultipartForm: true,
		// Add nothing that neither side sent (fasthttp#214, #873), except
		// Date: fasthttp manages it and drops the upstream's, and RFC 9110
		// §6.6.1 wants one on every forwarded response, so fasthttp's
		// current date goes out.
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		SecureErrorLogMessage: true,
		CloseOnShutdown:       true,
		Logger:                fasthttpLogger{p.log},
	}}
}

// StartDraining turns /readyz to 503, with the reason in its body, and asks
// clients to close their keep-alive connections, ahead of shutdown.
func (p *Proxy) StartDraining(reason string) {
	p.drainReason.Store(&reason)
	p.draining.Store(true)
	p.m.draining.Set(1)
}

// Close releases idle upstream connections. Call it after the server has
// shut down.
func (p *Proxy) Close() { p.up.Close() }

// ServeHTTP handles one request on the proxy port.
func (p *Proxy) ServeHTTP(ctx *fasthttp.RequestCtx) {
	p.m.inFlight.Inc()
	p.serve(ctx)
	if p.draining.Load() {
		ctx.SetConnectionClose()
	}
}

func (p *Proxy) serve(ctx *fasthttp.RequestCtx) {
	start := ctx.Time()
	if !supportedProtocol(ctx.Request.Header.Protocol()) {
		// fasthttp accepts any HTTP/d.d; "HTTP/2.0" in a text request line
		// is not a request warden can forward faithfully.
		p.fail(ctx, start, failBadRequest)
		ctx.SetConnectionClose()
		return
	}
	if ctx.Request.Header.ContentLength() == -1 {
		// A chunked body: the guard follows it from here, before anything
		// (fasthttp's drain of a refused request's body included) reads it.
		if err := guardChunkedBody(ctx); err != nil {
			p.fail(ctx, start, failBadRequest)
			ctx.SetConnectionClose()
			return
		}
	}
	if p.auth != nil {
		if p.throttled(ctx, start) || !p.authorized(ctx, start) {
			return
		}
	}
	if ctx.IsConnect() {
		p.fail(ctx, start, failMethod)
		return
	}
	if e := ctx.Request.Header.Peek(fasthttp.HeaderExpect); len(e) > 0 && !equalFold(e, "100-continue") {
		// RFC 9110 §10.1.1: warden meets no other expectation.
		p.fail(ctx, start, failExpectation)
		ctx.SetConnectionClose()
		return
	}
	cl := ctx.Request.Header.ContentLength()
	if p.cfg.MaxBodyBytes > 0 && int64(cl) > p.cfg.MaxBodyBytes {
		// The client may be sending the body already; the connection
		// cannot be reused.
		p.fail(ctx, start, failBodyTooLarge)
		ctx.SetConnectionClose()
		return
	}
	if cl > 0 || cl == -1 {
		// ReadTimeout was for the headers; a body streams for as long as
		// the client and the model need.
		_ = ctx.SetReadDeadline(time.Time{})
	}

	x := p.exchanges.Get().(*exchange) //nolint:forcetypeassert // the pool holds only *exchange
	x.ctx = ctx
	x.upgrade = isWebsocketUpgrade(&ctx.Request.Header)
	if !x.buildHead() {
		p.putExchange(x)
		p.fail(ctx, start, failBadRequest)
		ctx.SetConnectionClose()
		return
	}
	if err := x.roundTrip(); err != nil {
		f, kind := upstreamFailure(err, x.dialing)
		if kind != "" {
			p.m.upstreamError(kind)
			if e := p.log.Warn(); e.Enabled() {
				e.Str("kind", kind).Err(err).Msg("upstream request failed")
			}
		}
		bodyStarted := x.bodyStarted
		p.putExchange(x)
		p.fail(ctx, start, f)
		if bodyStarted {
			// Part of the body may be unread; do not parse it as a request.
			ctx.SetConnectionClose()
		}
		return
	}
	if x.upgrade {
		x.upgradeWebsocket()
		return
	}
	x.respond()
}

func supportedProtocol(proto []byte) bool {
	return string(proto) == "HTTP/1.1" || string(proto) == "HTTP/1.0"
}

// authorized checks the credentials, counts a request that used the previous
// secret, and answers 401 to a refused one.
func (p *Proxy) authorized(ctx *fasthttp.RequestCtx, start time.Time) bool {
	r := p.auth.Check(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization), start)
	switch r {
	case auth.OK:
		return true
	case auth.Previous:
		p.m.previousSecret.Inc()
		return true
	}
	p.refuse(ctx, start, r)
	p.countFailure(ctx, start)
	return false
}

// throttled answers 429 to a client that failed to log in too often, without
// checking its credentials. While no client is throttled it costs one atomic
// load.
func (p *Proxy) throttled(ctx *fasthttp.RequestCtx, start time.Time) bool {
	if p.throttle == nil || p.throttle.Blocking() == 0 {
		return false
	}
	retry, blocked := p.throttle.Blocked(throttleKey(p.clientAddr(ctx)), start)
	if !blocked {
		return false
	}
	p.m.throttled.Inc()
	p.fail(ctx, start, failThrottled)
	var b [20]byte
	secs := int64((retry + time.Second - 1) / time.Second)
	ctx.Response.Header.SetBytesV(fasthttp.HeaderRetryAfter, strconv.AppendInt(b[:0], max(secs, 1), 10))
	return true
}

// countFailure records a failed login, and logs a warning when it makes the
// client throttled.
func (p *Proxy) countFailure(ctx *fasthttp.RequestCtx, start time.Time) {
	if p.throttle == nil {
		return
	}
	key := throttleKey(p.clientAddr(ctx))
	failures, started := p.throttle.Fail(key, start)
	if started {
		p.m.throttledNow.Set(int64(p.throttle.Blocking()))
		p.log.Warn().Stringer("client", key).Int("failures", failures).
			Stringer("window", p.cfg.AuthFailureWindow).Msg("client throttled: too many failed logins")
	}
}

// throttleKey is the unit a client is counted in: its IPv4 address, or the
// /64 of its IPv6 address, since one subscriber commonly holds a whole /64
// and could otherwise rotate addresses to dodge the limit.
func throttleKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// WatchThrottle ends throttling for clients whose window has passed, once a
// second until ctx ends, and logs each.
func (p *Proxy) WatchThrottle(ctx context.Context) {
	if p.throttle == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	ended := func(key netip.Addr, failures int) {
		p.log.Warn().Stringer("client", key).Int("failures", failures).Msg("client no longer throttled")
	}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.throttle.Sweep(now, ended)
			p.m.throttledNow.Set(int64(p.throttle.Blocking()))
		}
	}
}

// refuse answers 401 with the challenge. The reason is counted and logged
// at debug level, never the credential.
func (p *Proxy) refuse(ctx *fasthttp.RequestCtx, start time.Time, r auth.Result) {
	p.m.authFailures[r].Inc()
	p.fail(ctx, start, failUnauthorized)
	ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, p.challenge)
	if e := p.log.Debug(); e.Enabled() {
		var ip [64]byte
		e.Str("reason", r.String()).Bytes("client", appendClientIP(ip[:0], ctx.RemoteAddr())).
			Bytes("path", rawPath(ctx.Request.Header.RequestURI())).Msg("request refused")
	}
}

// fail answers with one of warden's own errors.
func (p *Proxy) fail(ctx *fasthttp.RequestCtx, start time.Time, f failure) {
	writeFailure(&ctx.Response, f)
	p.done(ctx, start, f.status, int64(len(f.body)), f.code)
}

// expectContinue decides on "Expect: 100-continue" from the headers alone:
// a request that would be refused is refused before the client sends its
// body. Returning anything but 100 closes the connection.
//
// A request let through here is checked again, and counted, by ServeHTTP.
func (p *Proxy) expectContinue(ctx *fasthttp.RequestCtx) int {
	// fasthttp sets ctx.Time() only after this callback.
	start := time.Now()
	if p.auth != nil {
		if p.throttle != nil && p.throttle.Blocking() > 0 {
			p.m.inFlight.Inc() // done, called by throttled, counts it out
			if p.throttled(ctx, start) {
				return fasthttp.StatusTooManyRequests
			}
			p.m.inFlight.Dec()
		}
		if r := p.auth.Check(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization), start); !r.Accepted() {
			p.m.inFlight.Inc() // done, called by refuse, counts it out
			p.refuse(ctx, start, r)
			p.countFailure(ctx, start)
			return fasthttp.StatusUnauthorized
		}
	}
	if p.cfg.MaxBodyBytes > 0 && int64(ctx.Request.Header.ContentLength()) > p.cfg.MaxBodyBytes {
		p.m.inFlight.Inc()
		p.fail(ctx, start, failBodyTooLarge)
		return fasthttp.StatusRequestEntityTooLarge
	}
	return fasthttp.StatusContinue
}

// serveError answers requests that fasthttp could not parse. fasthttp closes
// the connection afterwards.
func (p *Proxy) serveError(ctx *fasthttp.RequestCtx, err error) {
	f := failBadRequest
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		f = failHeaderTooLarge
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		f = failBodyTooLarge
	case isTimeout(err):
		f = failRequestTimeout
	}
	p.m.inFlight.Inc()
	writeFailure(&ctx.Response, f)
	// ctx.Time() is not set for a request that failed to parse.
	p.done(ctx, time.Now(), f.status, int64(len(f.body)), f.code)
	if e := p.log.Debug(); e.Enabled() {
		// fasthttp's parse errors quote no header values with
		// SecureErrorLogMessage set.
		e.Err(err).Str("error_code", f.code).Msg("malformed request")
	}
}

// done records a finished request: metrics and the access log line. For a
// streamed response it runs when the last byte has been written.
func (p *Proxy) done(ctx *fasthttp.RequestCtx, start time.Time, status int, sent int64, cause string) {
	elapsed := time.Since(start)
	p.m.inFlight.Dec()
	p.m.code(status).Inc()
	p.m.duration.Observe(elapsed)
	if !p.cfg.AccessLog {
		return
	}
	if e := p.log.Info(); e.Enabled() {
		var ip [64]byte
		e.Bytes("method", ctx.Method()).
			Bytes("path", rawPath(ctx.Request.Header.RequestURI())).
			Int("status", status).
			Float64("duration_ms", float64(elapsed.Microseconds())/1000).
			Int64("bytes", sent).
			Bytes("client", appendClientIP(ip[:0], ctx.RemoteAddr()))
		if cause != "" {
			e.Str("error_code", cause)
		}
		e.Msg("request")
	}
}

// rawPath is the request target without its query, which may carry tokens.
func rawPath(target []byte) []byte {
	for i, c := range target {
		if c == '?' {
			return target[:i]
		}
	}
	return target
}

// fasthttpLogger sends fasthttp's own messages to the debug level.
type fasthttpLogger struct{ l zerolog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	if e := f.l.Debug(); e.Enabled() {
		e.Str("component", "fasthttp").Msgf(format, args...)
	}
}
