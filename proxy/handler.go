package proxy

import (
	"errors"
	"time"

	"github.com/valyala/fasthttp"
)

// ServeHTTP handles one request on the proxy port.
func (p *Proxy) ServeHTTP(ctx *fasthttp.RequestCtx) {
	p.handle(p.begin(ctx, ctx.Time()))
	if p.draining.Load() {
		ctx.SetConnectionClose()
	}
}

// handle is the decision flow of a request, from its head to the answer.
// Every way out ends the exchange (finish, or fail), or hands it to what
// ends it later: a response body that streams, a hijacked connection.
func (p *Proxy) handle(x *exchange) {
	ctx := x.ctx
	if !supportedProtocol(ctx.Request.Header.Protocol()) {
		// fasthttp accepts any HTTP/d.d; "HTTP/2.0" in a text request line
		// is not a request warden can forward faithfully.
		x.failClosing(failBadRequest)
		return
	}
	if ctx.Request.Header.ContentLength() == -1 {
		// A chunked body: the guard follows it from here, before anything
		// (fasthttp's drain of a refused request's body included) reads it.
		if err := guardChunkedBody(ctx); err != nil {
			x.failClosing(failBadRequest)
			return
		}
	}
	if !p.admit(x) {
		return
	}
	if ctx.IsConnect() {
		x.fail(failMethod)
		return
	}
	if e := ctx.Request.Header.Peek(fasthttp.HeaderExpect); len(e) > 0 && !equalFold(e, "100-continue") {
		// RFC 9110 §10.1.1: warden meets no other expectation.
		x.failClosing(failExpectation)
		return
	}
	if cl := ctx.Request.Header.ContentLength(); cl > 0 || cl == -1 {
		// ReadTimeout was for the headers; a body streams for as long as
		// the client and the model need.
		_ = ctx.SetReadDeadline(time.Time{})
	}

	x.upgrade = isWebsocketUpgrade(&ctx.Request.Header)
	if !x.buildHead() {
		x.failClosing(failBadRequest)
		return
	}
	if err := x.roundTrip(); err != nil {
		x.failUpstream(err)
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

// failUpstream answers a request whose exchange with the upstream failed
// before a response head came back.
func (x *exchange) failUpstream(err error) {
	p := x.p
	if x.watch.left {
		x.departed()
		return
	}
	f, kind := upstreamFailure(err, x.dialing)
	if kind != "" {
		p.m.upstreamError(kind)
		if e := p.log.Warn(); e.Enabled() {
			e.Str("kind", kind).Err(err).Msg("upstream request failed")
		}
	}
	if x.bodyStarted {
		// Part of the body may be unread; do not parse it as a request.
		x.failClosing(f)
		return
	}
	x.fail(f)
}

// expectContinue decides on "Expect: 100-continue" from the headers alone,
// with the same gate as the handler: a request that would be refused is
// refused before the client sends its body. Returning anything but 100
// closes the connection. A request let through is admitted again, counted
// and recorded by ServeHTTP.
func (p *Proxy) expectContinue(ctx *fasthttp.RequestCtx) int {
	// fasthttp sets ctx.Time() only after this callback.
	x := p.begin(ctx, time.Now())
	if !p.admit(x) {
		return ctx.Response.StatusCode()
	}
	x.pass()
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
	// ctx.Time() is not set for a request that failed to parse.
	p.begin(ctx, time.Now()).fail(f)
	if e := p.log.Debug(); e.Enabled() {
		// fasthttp's parse errors quote no header values with
		// SecureErrorLogMessage set.
		e.Err(err).Str("error_code", f.code).Msg("malformed request")
	}
}
