package proxy

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"syscall"

	"github.com/valyala/fasthttp"
)

// HeaderError names the cause on every response that warden produces itself,
// so that clients and load testers can tell warden's answers from the model's.
const HeaderError = "X-Warden-Error"

// HeaderShouldRetry tells a client whether retrying is safe, in the header
// that the OpenAI and Anthropic SDKs obey (they retry 5xx and 429 unless it
// says false, and retry anything when it says true).
const HeaderShouldRetry = "X-Should-Retry"

// failure is an answer warden gives itself. The body is built once, at start.
type failure struct {
	status int
	code   string // value of X-Warden-Error and of the "error" field
	body   []byte
	// retry: the model provably never saw the request, so a retry is safe;
	// the answer says so and when (Retry-After: 1).
	retry bool
}

// retryable returns f saying that a retry is safe.
func (f failure) retryable() failure {
	f.retry = true
	return f
}

func newFailure(status int, code, message string) failure {
	body, err := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
		Status  int    `json:"status"`
	}{code, message, status})
	if err != nil {
		panic(err) // three plain fields: cannot fail
	}
	return failure{status: status, code: code, body: append(body, '\n')}
}

// The answers warden produces. Their codes are part of the interface: the
// README lists them and metrics count them.
var (
	failUnauthorized   = newFailure(fasthttp.StatusUnauthorized, "unauthorized", "valid credentials are required")
	failBadRequest     = newFailure(fasthttp.StatusBadRequest, "bad_request", "the request is malformed")
	failRequestTimeout = newFailure(fasthttp.StatusRequestTimeout, "request_timeout", "the request headers did not arrive in time")
	failHeaderTooLarge = newFailure(fasthttp.StatusRequestHeaderFieldsTooLarge, "header_too_large", "the request headers are too large")
	failBodyTooLarge   = newFailure(fasthttp.StatusRequestEntityTooLarge, "body_too_large", "the request body is too large")
	failMethod         = newFailure(fasthttp.StatusMethodNotAllowed, "method_not_allowed", "CONNECT is not supported")
	failExpectation    = newFailure(fasthttp.StatusExpectationFailed, "expectation_failed", "only the 100-continue expectation is supported")
	failUnavailable    = newFailure(fasthttp.StatusBadGateway, "upstream_unavailable", "the model server is not accepting connections").retryable()
	failUpstream       = newFailure(fasthttp.StatusBadGateway, "upstream_error", "the model server closed the connection or sent an invalid response")
	failTimeout        = newFailure(fasthttp.StatusGatewayTimeout, "upstream_timeout", "the model server did not send response headers in time")
	// failConnectTimeout is the same answer when even the connection did
	// not open in time: the model never saw the request.
	failConnectTimeout = newFailure(fasthttp.StatusGatewayTimeout, "upstream_timeout", "the model server did not accept a connection in time").retryable()
	failThrottled      = newFailure(fasthttp.StatusTooManyRequests, "too_many_failed_logins", "too many failed logins from this client; retry after the time in Retry-After")
	failBusy           = newFailure(fasthttp.StatusServiceUnavailable, "upstream_busy", "all connections to the model server are in use").retryable()
)

// Failures lists every answer warden can produce, for documentation tests.
func Failures() map[string]int {
	m := map[string]int{}
	for _, f := range []failure{
		failUnauthorized, failBadRequest, failRequestTimeout, failHeaderTooLarge, failBodyTooLarge,
		failMethod, failExpectation, failUnavailable, failUpstream, failTimeout, failBusy, failThrottled, failTooManyConns, failDenied,
	} {
		m[f.code] = f.status
	}
	return m
}

// writeFailure replaces whatever response ctx holds with f, saying whether
// a retry is safe.
func writeFailure(resp *fasthttp.Response, f failure) {
	resp.Reset()
	resp.SetStatusCode(f.status)
	resp.Header.SetContentType("application/json")
	resp.Header.Set(HeaderError, f.code)
	resp.Header.Set("Cache-Control", "no-store")
	if f.retry {
		resp.Header.Set(HeaderShouldRetry, "true")
		resp.Header.Set(fasthttp.HeaderRetryAfter, "1")
	} else {
		resp.Header.Set(HeaderShouldRetry, "false")
	}
	resp.SetBodyRaw(f.body)
}

// Errors of the upstream exchange, mapped to answers by upstreamFailure.
var (
	errBusy         = errors.New("all upstream connections are in use")
	errClientBody   = errors.New("reading the request body from the client")
	errBodyTooLarge = errors.New("request body exceeds the limit")
)

// upstreamFailure maps an error of the exchange with the upstream to the
// answer the client gets: the single place where that decision is made, like
// httputil.ReverseProxy's ErrorHandler. kind labels the upstream error
// metric; it is empty when the client, not the upstream, was at fault.
func upstreamFailure(err error, dialing bool) (f failure, kind string) {
	switch {
	case errors.Is(err, errBodyTooLarge):
		return failBodyTooLarge, ""
	case errors.Is(err, errClientBody):
		return failBadRequest, ""
	case errors.Is(err, errBusy):
		return failBusy, "busy"
	case isTimeout(err):
		if dialing {
			return failConnectTimeout, "connect_timeout"
		}
		return failTimeout, "timeout"
	case dialing:
		return failUnavailable, "connect"
	default:
		return failUpstream, "protocol"
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	// fasthttp.ErrTimeout has Timeout but not the rest of net.Error.
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// isConnLost reports whether err means that a pooled connection was closed
// by the upstream before it answered: the case where resending a safe
// request on a new connection is right.
func isConnLost(err error) bool {
	return errors.Is(err, errNoResponse) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}
