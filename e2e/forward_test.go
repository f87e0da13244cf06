package e2e

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The request reaches the upstream as sent: method, target and query byte
// for byte, headers in order with repeats, body; minus hop-by-hop headers,
// those named in Connection, and credentials; plus X-Forwarded-*.
func TestRequestIsForwardedByteForByte(t *testing.T) {
	t.Parallel()
	up := startRawUpstream(t, nil)
	w := startWarden(t, protectedEnv(up.addr()))
	target := "/a//b/%2F/../c/./d%2e%2E?x=%2F&y=a+b&z&%zz"
	req := "POST " + target + " HTTP/1.1\r\n" +
		"Host: model.example:8443\r\n" +
		"X-Multi: 1\r\n" +
		"Accept: a\r\n" +
		"X-Multi: 2\r\n" +
		"Connection: close, X-Drop-Me\r\n" +
		"X-Drop-Me: hop\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"Proxy-Connection: keep-alive\r\n" +
		"TE: trailers\r\n" +
		"Upgrade: h2c\r\n" +
		"Trailer: X-T\r\n" +
		"Proxy-Authorization: Basic c2VjcmV0\r\n" +
		"Authorization: " + basicAuth(testUser, testPassword) + "\r\n" +
		"X-Forwarded-For: 203.0.113.7\r\n" +
		"X-Forwarded-For: 198.51.100.1\r\n" +
		"X-Forwarded-Host: spoofed.example\r\n" +
		"X-Forwarded-Proto: https\r\n" +
		"Cookie: a=1; b=\"q q\"\r\n" +
		"Content-Length: 5\r\n" +
		"\r\nhello"
	raw := rawExchange(t, w.addr, req+"", 3*time.Second)
	if statusOf(raw) != 200 {
		t.Fatalf("response: %q", raw)
	}
	heads := up.requests()
	if len(heads) != 1 {
		t.Fatalf("upstream got %d requests", len(heads))
	}
	line, headers := headerLines(heads[0])
	if want := "POST " + target + " HTTP/1.1"; line != want {
		t.Errorf("request line = %q, want %q", line, want)
	}
	want := []string{
		"Host: model.example:8443",
		"X-Multi: 1",
		"Accept: a",
		"X-Multi: 2",
		"Cookie: a=1; b=\"q q\"",
		"X-Forwarded-For: 203.0.113.7, 198.51.100.1, 127.0.0.1",
		"X-Forwarded-Host: model.example:8443",
		"X-Forwarded-Proto: http",
		"Content-Length: 5",
	}
	if !slices.Equal(headers, want) {
		t.Errorf("upstream headers:\n%s\nwant:\n%s", strings.Join(headers, "\n"), strings.Join(want, "\n"))
	}
	if got := string(up.lastBody()); got != "hello" {
		t.Errorf("body = %q", got)
	}
}

// Whatever the Host header or an absolute-form target says, the request goes
// to the configured upstream.
func TestAbsoluteFormAndForeignHostStillGoToTheUpstream(t *testing.T) {
	t.Parallel()
	up := startRawUpstream(t, nil)
	w := startWarden(t, protectedEnv(up.addr()))
	authz := "Connection: close\r\nAuthorization: " + basicAuth(testUser, testPassword) + "\r\n"
	for _, tc := range []struct{ req, line, host string }{
		{"GET http://evil.example:9999/x?y=1 HTTP/1.1\r\nHost: other.example\r\n" + authz + "\r\n", "GET /x?y=1 HTTP/1.1", "Host: evil.example:9999"},
		{"GET http://evil.example HTTP/1.1\r\nHost: evil.example\r\n" + authz + "\r\n", "GET / HTTP/1.1", "Host: evil.example"},
		{"GET /plain HTTP/1.1\r\nHost: 169.254.169.254\r\n" + authz + "\r\n", "GET /plain HTTP/1.1", "Host: 169.254.169.254"},
	} {
		before := len(up.requests())
		raw := rawExchange(t, w.addr, tc.req+"", 3*time.Second)
		if statusOf(raw) != 200 {
			t.Fatalf("%q: response %q", tc.req, raw)
		}
		heads := up.requests()
		if len(heads) != before+1 {
			t.Fatalf("%q did not reach the upstream", tc.req)
		}
		line, headers := headerLines(heads[len(heads)-1])
		if line != tc.line || !slices.Contains(headers, tc.host) {
			t.Errorf("%q arrived as %q with %v; want %q and %q", tc.req, line, headers, tc.line, tc.host)
		}
	}
}

// Response headers come back end to end: hop-by-hop ones and those named
// in Connection removed, repeats kept, nothing added.
func TestResponseHeadersPassEndToEnd(t *testing.T) {
	t.Parallel()
	up := startRawUpstream(t, func(string) string {
		return "HTTP/1.1 201 Made It\r\n" +
			"Connection: X-Internal\r\n" +
			"X-Internal: hop\r\n" +
			"Keep-Alive: timeout=5\r\n" +
			"Proxy-Authenticate: Basic\r\n" +
			"Set-Cookie: a=1; Path=/; Expires=Wed, 09 Jun 2021 10:18:14 GMT\r\n" +
			"Set-Cookie: b=\"x y\"; HttpOnly\r\n" +
			"X-A: 1\r\n" +
			"X-A: 2\r\n" +
			"Content-Length: 2\r\n" +
			"\r\nok"
	})
	w := startWarden(t, protectedEnv(up.addr()))
	resp, body := do(t, "GET", w.url("/"), authHeader(), nil)
	if resp.StatusCode != 201 || string(body) != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if resp.Status != "201 Made It" {
		t.Errorf("status line %q lost the upstream's reason phrase", resp.Status)
	}
	for _, h := range []string{"X-Internal", "Keep-Alive", "Proxy-Authenticate", "Server", "Content-Type"} {
		if v, ok := resp.Header[h]; ok {
			t.Errorf("response has %s: %q", h, v)
		}
	}
	// RFC 9110 §6.6.1: a forwarded response carries a Date.
	if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
		t.Errorf("Date %q: %v", resp.Header.Get("Date"), err)
	}
	if got, want := resp.Header.Values("Set-Cookie"), []string{"a=1; Path=/; Expires=Wed, 09 Jun 2021 10:18:14 GMT", "b=\"x y\"; HttpOnly"}; !slices.Equal(got, want) {
		t.Errorf("Set-Cookie = %q, want %q", got, want)
	}
	if got := resp.Header.Values("X-A"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("X-A = %q", got)
	}
}

func TestHeadNoContentAndNotModifiedKeepTheirFraming(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, protectedEnv(up.addr))
	resp, body := do(t, "HEAD", w.url("/status/200"), authHeader(), nil)
	if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len("status 200\n")) {
		t.Errorf("HEAD: %d, Content-Length %d, body %q", resp.StatusCode, resp.ContentLength, body)
	}
	for _, code := range []int{204, 304} {
		resp, body := do(t, "GET", w.url("/status/"+strconv.Itoa(code)), authHeader(), nil)
		if resp.StatusCode != code || len(body) != 0 {
			t.Errorf("%d: got %d with body %q", code, resp.StatusCode, body)
		}
		if code == 304 && resp.Header.Get("ETag") != `"v1"` {
			t.Errorf("304 lost its ETag")
		}
	}
	// The connection stays usable after each of them.
	resp, _ = do(t, "GET", w.url("/status/200"), authHeader(), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("follow-up request: %d", resp.StatusCode)
	}
}

// Paths that exist on the admin port are ordinary requests on the proxy
// port.
func TestAdminPathsOnTheProxyPortGoUpstream(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, protectedEnv(up.addr))
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, _ := do(t, "GET", w.url(path), nil, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", path, resp.StatusCode)
		}
		resp, body := do(t, "GET", w.url(path), authHeader(), nil)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"request_uri":"`+path+`"`) {
			t.Errorf("%s with credentials did not reach the upstream: %d %s", path, resp.StatusCode, body)
		}
	}
}

// An HTTP/1.0 client cannot read chunked encoding: a body of unknown length
// reaches it delimited by the end of the connection, and a sized one keeps
// its Content-Length.
func TestHTTP10ClientsNeverGetChunkedEncoding(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, protectedEnv(up.addr))
	authz := "Authorization: " + basicAuth(testUser, testPassword) + "\r\n"

	raw := rawExchange(t, w.addr, "GET /sse?n=3&interval=50ms HTTP/1.0\r\n"+authz+"\r\n", 5*time.Second)
	head, body, _ := strings.Cut(raw, "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.0 200") && !strings.HasPrefix(head, "HTTP/1.1 200") {
		t.Fatalf("status line: %q", head)
	}
	if strings.Contains(strings.ToLower(head), "transfer-encoding") {
		t.Fatalf("chunked response to an HTTP/1.0 client:\n%s", head)
	}
	if n := strings.Count(body, "data: {"); n != 3 || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Fatalf("body is not the raw event stream:\n%q", body)
	}

	raw = rawExchange(t, w.addr, "GET /status/200 HTTP/1.0\r\n"+authz+"\r\n", 5*time.Second)
	head, body, _ = strings.Cut(raw, "\r\n\r\n")
	if !strings.Contains(head, "Content-Length: 11") || body != "status 200\n" {
		t.Fatalf("sized response to HTTP/1.0: %q", raw)
	}
}

// An upstream that sends more than its Content-Length leaves bytes that
// must not be read as the next response: warden does not reuse that
// connection.
func TestBytesBeyondTheResponseAreNotMistakenForTheNextOne(t *testing.T) {
	t.Parallel()
	up := startRawUpstream(t, func(string) string {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ninjected"
	})
	w := startWarden(t, protectedEnv(up.addr()))
	for i := range 3 {
		resp, body := do(t, "GET", w.url("/"), authHeader(), nil)
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if accepted, _ := up.connCounts(); accepted != 3 {
		t.Fatalf("%d upstream connections for 3 requests: a polluted connection was reused", accepted)
	}
}
