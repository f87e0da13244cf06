package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/valyala/fasthttp"
)

// Readiness probing: how often, and how long one probe may take. Platform
// probes time out after 1 s, so /readyz answers from the last result and
// never probes inline. While the upstream is down it is probed often, so
// that warden is ready within a tenth of a second of a model server that
// has just started listening.
const (
	probeInterval     = time.Second
	probeIntervalDown = 100 * time.Millisecond
	probeTimeout      = 500 * time.Millisecond
)

// watchUpstream probes the upstream at once and then every second (every
// 100 ms while it is down) until ctx ends, keeping the result for /readyz
// and logging each change.
func (p *Proxy) watchUpstream(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.probeOnce(ctx)
		if p.upstreamErr.Load().err != nil {
			t.Reset(probeIntervalDown)
		} else {
			t.Reset(probeInterval)
		}
	}
}

func (p *Proxy) probeOnce(ctx context.Context) {
	err := p.up.probe(ctx, probeTimeout)
	if ctx.Err() != nil {
		return
	}
	prev := p.upstreamErr.Swap(&probeResult{err: err}).err
	if err != nil {
		// Down: whatever connections the pool holds were to a server that
		// is gone.
		p.up.closeIdle()
	}
	switch {
	case err == nil && prev != nil:
		p.m.upstreamUp.Set(1)
		p.log.Info().Str("upstream", p.cfg.Upstream).Msg("upstream is reachable")
	case err != nil && (prev == nil || errors.Is(prev, errNotProbed)):
		p.m.upstreamUp.Set(0)
		p.log.Warn().Str("upstream", p.cfg.Upstream).Err(err).Msg("upstream is not reachable")
	}
}

// Ready returns nil when warden should receive traffic, else why not.
func (p *Proxy) Ready() error {
	if p.draining.Load() {
		return drainingError{*p.drainReason.Load()}
	}
	if err := p.upstreamErr.Load().err; err != nil {
		return &notReadyError{err}
	}
	return nil
}

type notReadyError struct{ err error }

func (e *notReadyError) Error() string { return "upstream not reachable: " + e.err.Error() }
func (e *notReadyError) Unwrap() error { return e.err }

type drainingError struct{ reason string }

func (e drainingError) Error() string { return "draining: " + e.reason }

// adminHandler serves the admin port: GET /healthz, /readyz and /metrics.
func (p *Proxy) adminHandler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if !ctx.IsGet() && !ctx.IsHead() {
			ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD")
			ctx.Error("method not allowed\n", fasthttp.StatusMethodNotAllowed)
			return
		}
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
		switch string(ctx.Path()) {
		case "/healthz":
			ctx.SetContentType("text/plain; charset=utf-8")
			ctx.SetBodyString("ok\n")
		case "/readyz":
			ctx.SetContentType("text/plain; charset=utf-8")
			if err := p.Ready(); err != nil {
				ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
				ctx.SetBodyString(err.Error() + "\n")
				return
			}
			ctx.SetBodyString("ok\n")
		case "/metrics":
			ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
			ctx.Response.SetBodyRaw(p.m.AppendText(nil))
		default:
			ctx.Error("not found: the admin port serves /healthz, /readyz and /metrics\n", fasthttp.StatusNotFound)
		}
	}
}

// adminServer returns the fasthttp server for the admin port.
func (p *Proxy) adminServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               p.adminHandler(),
		ReadTimeout:           5 * time.Second,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           time.Minute,
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
		Logger:                fasthttpLogger{p.log},
	}
}
