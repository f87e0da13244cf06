package proxy

import (
	"context"
	"net/netip"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/paperspace/warden/auth"
)

// admit is the gate every request passes, from its head alone, in the
// handler and ahead of it for "Expect: 100-continue": the failed-login
// throttle, then the credentials, then the body limit. A request refused
// here is answered and its exchange finished; admit reports whether it may
// go on.
func (p *Proxy) admit(x *exchange) bool {
	ctx := x.ctx
	if p.auth != nil {
		if p.throttled(x) {
			return false
		}
		r, carrier := p.auth.Verify(credentials(&ctx.Request.Header), x.start)
		switch r {
		case auth.OK:
		case auth.Previous:
			x.previous = true
		default:
			p.refuse(x, r, carrier)
			return false
		}
		p.m.authAccepted[carrier].Inc()
	}
	if p.denied(x) {
		return false
	}
	if p.cfg.MaxBodyBytes > 0 && int64(ctx.Request.Header.ContentLength()) > p.cfg.MaxBodyBytes {
		// The client may be sending the body already; the connection
		// cannot be reused.
		x.failClosing(failBodyTooLarge)
		return false
	}
	return true
}

// credentials gathers what a request offers as proof of the secret. Only a
// request without a non-empty Authorization header pays for looking further:
// whether it has an empty one (which still decides), and its x-api-key
// headers.
func credentials(h *fasthttp.RequestHeader) auth.Credentials {
	cr := auth.Credentials{Authorization: h.Peek(fasthttp.HeaderAuthorization)}
	if len(cr.Authorization) > 0 {
		cr.HasAuthorization = true
		return cr
	}
	cr.HasAuthorization = len(h.PeekAll(fasthttp.HeaderAuthorization)) > 0
	if cr.HasAuthorization {
		return cr
	}
	keys := h.PeekAll(headerAPIKey)
	cr.APIKeys = len(keys)
	if cr.APIKeys > 0 {
		cr.APIKey = keys[0]
	}
	return cr
}

// headerAPIKey names the x-api-key carrier (a header name, not a secret).
const headerAPIKey = "X-Api-Key" //nolint:gosec // G101: a header name

// throttled answers 429 to a client that failed to log in too often,
// without checking its credentials. While no client is throttled it costs
// one atomic load.
func (p *Proxy) throttled(x *exchange) bool {
	if p.throttle == nil || p.throttle.Blocking() == 0 {
		return false
	}
	retry, blocked := p.throttle.Blocked(throttleKey(p.clientAddr(x.ctx)), x.start)
	if !blocked {
		return false
	}
	p.m.throttled.Inc()
	resp := &x.ctx.Response
	writeFailure(resp, failThrottled)
	var b [20]byte
	secs := int64((retry + time.Second - 1) / time.Second)
	resp.Header.SetBytesV(fasthttp.HeaderRetryAfter, strconv.AppendInt(b[:0], max(secs, 1), 10))
	x.finish(failThrottled.status, int64(len(failThrottled.body)), failThrottled.code, false)
	return true
}

// refuse answers 401 with the challenge and counts the failed login. The
// reason is counted and logged at debug level, never the credential.
func (p *Proxy) refuse(x *exchange, r auth.Result, carrier auth.Carrier) {
	ctx, start := x.ctx, x.start
	p.m.authFailures[r][carrier].Inc()
	writeFailure(&ctx.Response, failUnauthorized)
	for _, c := range p.challenges {
		ctx.Response.Header.AddBytesV(fasthttp.HeaderWWWAuthenticate, c)
	}
	x.finish(failUnauthorized.status, int64(len(failUnauthorized.body)), failUnauthorized.code, false)
	if e := p.log.Debug(); e.Enabled() {
		var ip [64]byte
		e.Str("reason", r.String()).Str("scheme", carrier.String()).Bytes("client", appendClientIP(ip[:0], ctx.RemoteAddr())).
			Bytes("path", rawPath(ctx.Request.Header.RequestURI())).Msg("request refused")
	}
	p.countFailure(ctx, start)
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

// watchThrottle ends throttling for clients whose window has passed, once a
// second until ctx ends, and logs each.
func (p *Proxy) watchThrottle(ctx context.Context) {
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
