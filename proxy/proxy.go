// Package proxy is warden's request path: it checks credentials, forwards
// requests to the one upstream model server, and streams responses back. It
// also serves the admin endpoints.
//
// Where things are: proxy.go (configuration and lifecycle), handler.go (the
// decision flow of a request), gate.go (throttle, credentials, body limit),
// clientaddr.go (who the client is), exchange.go (a request's life: begin,
// finish, hijack), request.go (the upstream request), response.go (the
// response and its streaming), body.go and chunked.go (upstream body
// framing), heartbeat.go (SSE heartbeat), guard.go (the request guard on
// client connections), headers.go, tunnel.go (websockets), upstream.go (the
// connection pool), errors.go (warden's own answers), metrics.go, admin.go.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/paperspace/warden/auth"
	"github.com/paperspace/warden/throttle"
)

// Authenticator checks a request's credentials at a given time, and says
// which carriers it accepts (for the challenges, and for the credential
// headers to strip). *auth.Checker implements it.
type Authenticator interface {
	Verify(c auth.Credentials, now time.Time) (auth.Result, auth.Carrier)
	Schemes() auth.Schemes
}

var _ Authenticator = (*auth.Checker)(nil)

// Config is what the proxy needs to run. A zero duration, size or count
// takes the default named beside it (the same as warden's environment
// defaults); a negative one is an error.
type Config struct {
	// Upstream is the model server's host:port. Required.
	Upstream string
	// Auth checks credentials; nil serves without authentication.
	Auth Authenticator
	// Realm goes into the WWW-Authenticate challenge; default "warden".
	Realm string
	// UpstreamTimeout bounds the wait for a connection and, once the request
	// is sent, for the upstream's response headers; default 5m.
	UpstreamTimeout time.Duration
	// UpstreamIdleTimeout closes pooled upstream connections idle this long;
	// default 1s.
	UpstreamIdleTimeout time.Duration
	// UpstreamMaxConns limits connections in use to the upstream; more
	// requests wait for one, up to UpstreamTimeout. Default 1024.
	UpstreamMaxConns int
	// MaxBodyBytes limits request bodies; 0 means no limit.
	MaxBodyBytes int64
	// MaxHeaderBytes limits the request line and headers of a request, and
	// the status line and headers of an upstream response; default 32 KiB.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the time a client may take to send the
	// request line and headers; default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes client keep-alive connections idle this long;
	// default 90s.
	IdleTimeout time.Duration
	// MaxConns limits the client connections served at once, idle ones
	// included; past it a new connection gets 503 with Retry-After.
	// Default 4096.
	MaxConns int
	// AccessLog writes one info line per request.
	AccessLog bool
	// AuthFailureLimit failed logins from one client within
	// AuthFailureWindow (default 1m) get it 429 until the window passes; 0
	// turns throttling off.
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// ServerTiming adds Server-Timing to proxied responses.
	ServerTiming bool
	// DenyPaths are path prefixes answered 403 even with valid credentials
	// (the model server's control routes), matched on the path as the
	// server will route it. Each starts with "/".
	DenyPaths []string
	// SSEHeartbeat sends an SSE comment on an event stream that has been
	// silent this long, between events; 0 turns it off.
	SSEHeartbeat time.Duration

	// Log is where warden logs; the zero Logger logs nothing.
	Log zerolog.Logger
	// Metrics are counted here; nil makes a set of its own.
	Metrics *Metrics
}

// The defaults of Config's zero values.
const (
	DefaultRealm               = "warden"
	DefaultUpstreamTimeout     = 5 * time.Minute
	DefaultUpstreamIdleTimeout = time.Second
	DefaultUpstreamMaxConns    = 1024
	DefaultMaxHeaderBytes      = 32 << 10
	DefaultReadHeaderTimeout   = 10 * time.Second
	DefaultIdleTimeout         = 90 * time.Second
	DefaultMaxConns            = 4096
	DefaultAuthFailureWindow   = time.Minute
)

// complete checks cfg and fills in the defaults of its zero values. It
// reports every problem at once.
func (cfg *Config) complete() error {
	var problems []error
	if _, _, err := net.SplitHostPort(cfg.Upstream); err != nil {
		problems = append(problems, fmt.Errorf("upstream address: %w", err))
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"upstream timeout", &cfg.UpstreamTimeout, DefaultUpstreamTimeout},
		{"upstream idle timeout", &cfg.UpstreamIdleTimeout, DefaultUpstreamIdleTimeout},
		{"read header timeout", &cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout},
		{"idle timeout", &cfg.IdleTimeout, DefaultIdleTimeout},
		{"auth failure window", &cfg.AuthFailureWindow, DefaultAuthFailureWindow},
	} {
		switch {
		case *d.v < 0:
			problems = append(problems, fmt.Errorf("%s %s: must not be negative", d.name, *d.v))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	for _, n := range []struct {
		name string
		v    *int
		def  int
	}{
		{"upstream max conns", &cfg.UpstreamMaxConns, DefaultUpstreamMaxConns},
		{"max header bytes", &cfg.MaxHeaderBytes, DefaultMaxHeaderBytes},
		{"max conns", &cfg.MaxConns, DefaultMaxConns},
	} {
		switch {
		case *n.v < 0:
			problems = append(problems, fmt.Errorf("%s %d: must not be negative", n.name, *n.v))
		case *n.v == 0:
			*n.v = n.def
		}
	}
	if cfg.MaxBodyBytes < 0 {
		problems = append(problems, fmt.Errorf("max body bytes %d: must not be negative", cfg.MaxBodyBytes))
	}
	if cfg.AuthFailureLimit < 0 {
		problems = append(problems, fmt.Errorf("auth failure limit %d: must not be negative", cfg.AuthFailureLimit))
	}
	if cfg.SSEHeartbeat < 0 {
		problems = append(problems, fmt.Errorf("SSE heartbeat %s: must not be negative", cfg.SSEHeartbeat))
	}
	if err := CheckDenyPaths(cfg.DenyPaths); err != nil {
		problems = append(problems, err)
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if reflect.ValueOf(cfg.Log).IsZero() {
		// The zero Logger would build every event and write it nowhere.
		cfg.Log = zerolog.Nop()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics("")
	}
	return errors.Join(problems...)
}

// Proxy is the fasthttp handler that protects and forwards. Create it with
// New; its methods are safe for concurrent use. Its life: Start, then Drain
// when told to stop, Shutdown once the drain delay is over, Close last.
type Proxy struct {
	cfg        Config
	adm        *admission
	auth       Authenticator
	challenges [][]byte // WWW-Authenticate values, one per scheme
	// stripAPIKey: x-api-key is a carrier of the secret here, so it stops
	// at warden like Authorization.
	stripAPIKey bool
	deny        *denyList // nil: no path is denied
	up          *upstream
	watch       *watcher // departed clients (watch.go)
	log         zerolog.Logger
	m           *Metrics

	exchanges sync.Pool
	tunnels   tunnels
	throttle  *throttle.Table
	draining  atomic.Bool
	// drainReason says why, for /readyz.
	drainReason atomic.Pointer[string]
	// upstreamErr is the outcome of the last readiness probe: nil when the
	// upstream accepted a connection.
	upstreamErr atomic.Pointer[probeResult]

	// Set by Start.
	srv, admin *fasthttp.Server
	stopWatch  context.CancelFunc
	watching   sync.WaitGroup
	closeOnce  sync.Once
}

type probeResult struct{ err error }

// New checks cfg, completes it with defaults, and returns a Proxy. It does
// not contact the upstream.
func New(cfg Config) (*Proxy, error) {
	return newProxy(cfg, nil)
}

// newProxy is New with a dial function for tests; nil dials TCP.
func newProxy(cfg Config, dial func(addr string, deadline time.Time) (net.Conn, error)) (*Proxy, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:   cfg,
		auth:  cfg.Auth,
		log:   cfg.Log,
		m:     cfg.Metrics,
		watch: newWatcher(),
	}
	p.up = newUpstream(upstreamConfig{
		addr:        cfg.Upstream,
		maxConns:    cfg.UpstreamMaxConns,
		dialTimeout: cfg.UpstreamTimeout,
		idleTimeout: cfg.UpstreamIdleTimeout,
		readBuf:     cfg.MaxHeaderBytes,
		writeBuf:    4 << 10,
		dial:        dial,
		watch:       p.watch,
	})
	if p.auth != nil {
		schemes := p.auth.Schemes()
		for _, c := range auth.Challenges(cfg.Realm, schemes) {
			p.challenges = append(p.challenges, []byte(c))
		}
		p.stripAPIKey = schemes.Has(auth.CarrierAPIKey)
	}
	p.deny, _ = parseDenyPaths(cfg.DenyPaths) // checked by complete
	p.adm = newAdmission(cfg.MaxConns, cfg.Metrics)
	cfg.Metrics.connsOpen = p.adm.open.Load
	p.exchanges.New = func() any { return &exchange{p: p} }
	if cfg.Auth != nil && cfg.AuthFailureLimit > 0 {
		p.throttle = throttle.New(throttle.Config{Limit: cfg.AuthFailureLimit, Window: cfg.AuthFailureWindow})
	}
	p.upstreamErr.Store(&probeResult{err: errNotProbed})
	return p, nil
}

var errNotProbed = errors.New("not probed yet")

// Start serves the proxy on ln and the admin endpoints on admin, and starts
// watching the upstream (for /readyz) and the failed-login throttle. A
// listener that fails is reported on the channel returned.
func (p *Proxy) Start(ln, admin net.Listener) <-chan error {
	errs := make(chan error, 2)
	srv := p.server()
	p.srv, p.admin = srv.Server, p.adminServer()
	ctx, cancel := context.WithCancel(context.Background())
	p.stopWatch = cancel
	p.watching.Add(3)
	go func() { defer p.watching.Done(); p.watchUpstream(ctx) }()
	go func() { defer p.watching.Done(); p.watchThrottle(ctx) }()
	go func() { defer p.watching.Done(); p.watch.run(ctx.Done()) }()
	go func() { errs <- srv.Serve(ln) }()
	go func() { errs <- p.admin.Serve(admin) }()
	return errs
}

// Drain turns /readyz to 503, with the reason in its body, and asks clients
// to close their keep-alive connections, ahead of Shutdown. Requests are
// still served.
func (p *Proxy) Drain(reason string) {
	p.drainReason.Store(&reason)
	p.draining.Store(true)
	p.m.draining.Set(1)
}

// ShutdownResult says what Shutdown had to cut.
type ShutdownResult struct {
	// TimedOut is true when requests were still in flight at the deadline,
	// and their connections were closed.
	TimedOut bool
	// Tunnels is how many websocket tunnels were still open at the
	// deadline, and closed.
	Tunnels int
}

// Shutdown stops accepting on the proxy port and gives requests in flight,
// streams and websocket tunnels until ctx ends; then it closes what is left,
// and the idle upstream connections. The admin port stays up until Close.
func (p *Proxy) Shutdown(ctx context.Context) (ShutdownResult, error) {
	var res ShutdownResult
	var err error
	if p.srv != nil {
		if err = p.srv.ShutdownWithContext(ctx); errors.Is(err, context.DeadlineExceeded) {
			res.TimedOut, err = true, nil
		}
	}
	// Websocket tunnels are hijacked connections that fasthttp no longer
	// tracks: they get what is left of the time.
	res.Tunnels = p.closeTunnels(ctx)
	p.up.Close()
	return res, err
}

// Close stops the admin port (waiting up to a second for its requests) and
// the watchers, and closes idle upstream connections. Call it last; calls
// after the first do nothing.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() {
		if p.admin != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = p.admin.ShutdownWithContext(ctx)
			cancel()
		}
		if p.stopWatch != nil {
			p.stopWatch()
			p.watching.Wait()
		}
		p.up.Close()
	})
}

// Server is the fasthttp server of the proxy port. Its Serve and ServeConn
// put every client connection behind the request guard (guard.go).
type Server struct {
	*fasthttp.Server
	adm *admission
}

// Serve serves the connections ln accepts until the server shuts down.
func (s *Server) Serve(ln net.Listener) error {
	return s.Server.Serve(guardListener{ln, s.adm})
}

// ServeConn serves one connection.
func (s *Server) ServeConn(c net.Conn) error { return s.Server.ServeConn(guard(c)) }

// server returns the server for the proxy port, configured for a streaming
// reverse proxy (docs/fasthttp-notes.md lists each trap, with its thread).
func (p *Proxy) server() *Server {
	return &Server{adm: p.adm, Server: &fasthttp.Server{
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
		// Give the write buffer back between requests, and a connection's
		// request state while it waits idle where fasthttp can (README,
		// Performance: memory sizing). With streamed request bodies fasthttp
		// keeps the read buffer for the connection's life.
		ReduceMemoryUsage: true,
		CloseOnShutdown:   true,
		Logger:            fasthttpLogger{p.log},
	}}
}

// fasthttpLogger sends fasthttp's own messages to the debug level.
type fasthttpLogger struct{ l zerolog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	if e := f.l.Debug(); e.Enabled() {
		e.Str("component", "fasthttp").Msgf(format, args...)
	}
}
