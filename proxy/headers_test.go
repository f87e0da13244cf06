package proxy

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestClassifyIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	tests := map[string]headerKind{
		"Connection": kindConnection, "connection": kindConnection,
		"Keep-Alive": kindHop, "KEEP-ALIVE": kindHop, "Te": kindHop, "TE": kindHop,
		"Upgrade": kindUpgrade, "Trailer": kindHop, "Proxy-Connection": kindHop,
		"Proxy-Authenticate": kindHop, "Expect": kindHop,
		"Transfer-Encoding": kindTransferEncoding, "Content-Length": kindFraming,
		"Authorization": kindCredentials, "proxy-authorization": kindCredentials,
		"Host": kindHost, "X-Forwarded-For": kindXForwardedFor,
		"X-Forwarded-Host": kindXForwardedHost, "x-forwarded-proto": kindXForwardedProto,
		"Content-Type": kindOther, "X-Connection": kindOther, "Trailers": kindOther, "": kindOther,
	}
	for name, want := range tests {
		if got := classify([]byte(name)); got != want {
			t.Errorf("classify(%q) = %d, want %d", name, got, want)
		}
	}
}

func TestConnectionTokensSplitAtCommas(t *testing.T) {
	t.Parallel()
	var ct connectionTokens
	ct.add([]byte("keep-alive, X-Foo ,\tx-bar,,"))
	ct.add([]byte("Upgrade"))
	for _, name := range []string{"Keep-Alive", "X-Foo", "X-Bar", "upgrade"} {
		if !ct.has([]byte(name)) {
			t.Errorf("%s not found", name)
		}
	}
	for _, name := range []string{"X-Fo", "X-Foo ", "", "Bar"} {
		if ct.has([]byte(name)) {
			t.Errorf("%q found", name)
		}
	}
}

func TestRequestTargetKeepsOriginFormAndRewritesAbsoluteForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw, target, authority string
		ok                     bool
	}{
		{"/a//b/%2F/../c?x=%2F", "/a//b/%2F/../c?x=%2F", "", true},
		{"*", "*", "", true},
		{"http://example.com/p?q", "/p?q", "example.com", true},
		{"HTTPS://example.com:8443/p", "/p", "example.com:8443", true},
		{"http://user:pw@example.com/p", "/p", "example.com", true},
		{"http://example.com", "", "example.com", true},
		{"http://example.com?q=1", "?q=1", "example.com", true},
		{"ftp://example.com/p", "", "", false},
		{"example.com:443", "", "", false},
		{"http:///p", "", "", false},
		{"", "", "", false},
		{"**", "", "", false},
	}
	for _, tt := range tests {
		target, authority, ok := requestTarget([]byte(tt.raw))
		if ok != tt.ok || string(target) != tt.target || string(authority) != tt.authority {
			t.Errorf("requestTarget(%q) = %q, %q, %v; want %q, %q, %v",
				tt.raw, target, authority, ok, tt.target, tt.authority, tt.ok)
		}
	}
}

// buildHeadFor parses raw as fasthttp's server would and builds the head
// warden would send upstream.
func buildHeadFor(tb testing.TB, raw string) (*fasthttp.Request, string, bool) {
	tb.Helper()
	var req fasthttp.Request
	if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		return nil, "", false
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1234}, nil)
	x := &exchange{p: &Proxy{cfg: Config{Upstream: "127.0.0.1:8000"}}, ctx: &ctx}
	ok := x.buildHead()
	return &ctx.Request, string(x.head), ok
}

func TestBuildHead(t *testing.T) {
	t.Parallel()
	_, head, ok := buildHeadFor(t, "GET /x?y HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nConnection: X-A, close\r\n"+
		"Authorization: Basic eDp5\r\nX-Forwarded-For: 10.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
	want := "GET /x?y HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1, 192.0.2.1\r\nX-Forwarded-Host: h\r\n" +
		"X-Forwarded-Proto: http\r\nTransfer-Encoding: chunked\r\n\r\n"
	if !ok || head != want {
		t.Fatalf("head:\n%q\nwant:\n%q", head, want)
	}

	for _, bad := range []string{
		"GET / HTTP/1.1\r\nX: y\r\n\r\n",               // no Host in HTTP/1.1
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // two Hosts
		"GET ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n",     // foreign scheme
	} {
		if _, head, ok := buildHeadFor(t, bad); ok {
			t.Errorf("%q accepted as %q", bad, head)
		}
	}
	// HTTP/1.0 may omit Host: the upstream's address stands in.
	if _, head, ok := buildHeadFor(t, "GET / HTTP/1.0\r\n\r\n"); !ok || !strings.Contains(head, "Host: 127.0.0.1:8000\r\n") {
		t.Errorf("HTTP/1.0 without Host: %v %q", ok, head)
	}
}

// withoutAuthorization is raw without its Authorization field lines.
func withoutAuthorization(raw string) string {
	var b strings.Builder
	for line := range strings.Lines(raw) {
		name, _, _ := strings.Cut(line, ":")
		if !strings.EqualFold(strings.TrimSpace(name), "Authorization") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// hopByHop lists what must never reach the upstream.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Upgrade", "Trailer",
	"Proxy-Authorization", "Authorization", "Expect", "Proxy-Authenticate",
}

func FuzzBuildHead(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /p?q HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: X-Y, keep-alive\r\nX-Y: 1\r\n\r\n",
		"GET http://evil/x HTTP/1.1\r\nHost: good\r\nAuthorization: Basic eDp5\r\n\r\n",
		"PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\nUpgrade: h2c\r\n\r\n",
		"GET / HTTP/1.0\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: Host, Content-Length, Authorization\r\nContent-Length: 0\r\n\r\n",
		"GET /%2e%2e//x HTTP/1.1\r\nHost: a\r\nProxy-Authorization: x\r\nExpect: 100-continue\r\n\r\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		req, head, ok := buildHeadFor(t, raw)
		if !ok {
			return
		}
		if !strings.HasSuffix(head, "\r\n\r\n") {
			t.Fatalf("head does not end the header section: %q", head)
		}
		// The request line carries the target byte for byte: no space or
		// control byte may be in it, whatever else it holds (warden does
		// not judge percent-encoding, "/%" passes as sent).
		line, rest, _ := strings.Cut(head, "\r\n")
		parts := strings.Split(line, " ")
		if len(parts) != 3 || parts[2] != "HTTP/1.1" || strings.ContainsFunc(parts[1], func(r rune) bool { return r < 0x21 || r == 0x7f }) {
			t.Fatalf("bad request line %q (from %q)", line, raw)
		}
		// The rest must be a well-formed HTTP/1.1 request for any server.
		out, err := http.ReadRequest(bufio.NewReader(strings.NewReader(parts[0] + " / HTTP/1.1\r\n" + rest)))
		if err != nil {
			t.Fatalf("warden would send an invalid request %q: %v (from %q)", head, err, raw)
		}
		if out.Proto != "HTTP/1.1" || out.Method != string(req.Header.Method()) {
			t.Fatalf("request line changed: %q from %q", head, raw)
		}
		if got := strings.Count(head, "\r\nHost: "); got != 1 {
			t.Fatalf("%d Host headers in %q", got, head)
		}
		for _, name := range hopByHop {
			if _, found := out.Header[name]; found {
				t.Fatalf("%s forwarded: %q (from %q)", name, head, raw)
			}
		}
		// Headers named in Connection are dropped, except framing and Host.
		for _, v := range req.Header.PeekAll("Connection") {
			for _, tok := range strings.Split(string(v), ",") {
				name := http.CanonicalHeaderKey(strings.TrimSpace(tok))
				switch name {
				case "Host", "Content-Length", "Transfer-Encoding", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "":
					continue
				}
				if _, found := out.Header[name]; found {
					t.Fatalf("%s is named in Connection but was forwarded: %q (from %q)", name, head, raw)
				}
			}
		}
		// The credentials must not turn up anywhere else either. A short
		// value ("0") is found by chance in any head, and a value the
		// input also holds outside Authorization may be forwarded there.
		if v := req.Header.Peek("Authorization"); len(v) >= 8 && bytes.Contains([]byte(head), v) &&
			!strings.Contains(withoutAuthorization(raw), string(v)) {
			t.Fatalf("credentials reached the head: %q", head)
		}
		xff := out.Header.Values("X-Forwarded-For")
		if len(xff) != 1 || !strings.HasSuffix(xff[0], "192.0.2.1") {
			t.Fatalf("X-Forwarded-For = %q", xff)
		}
		if cl := req.Header.ContentLength(); cl > 0 && out.ContentLength != int64(cl) {
			t.Fatalf("Content-Length %d became %d", cl, out.ContentLength)
		}
		if out.Header.Get("Content-Length") != "" && len(out.TransferEncoding) > 0 {
			t.Fatalf("both Content-Length and Transfer-Encoding: %q", head)
		}
	})
}

func TestAppendMillis(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "0.000", 84 * time.Microsecond: "0.084", 412337 * time.Microsecond: "412.337",
		time.Second: "1000.000", 1500 * time.Nanosecond: "0.001",
	} {
		if got := string(appendMillis(nil, d)); got != want {
			t.Errorf("appendMillis(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestTokenListsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	var tokens connectionTokens
	tokens.add([]byte("keep-alive, X-Secret ,Upgrade")) // warm the buffers
	value := []byte("keep-alive, X-Secret ,Upgrade")
	if n := testing.AllocsPerRun(100, func() {
		tokens.reset()
		tokens.add(value)
		if !tokens.has([]byte("x-secret")) || !hasToken(value, "upgrade") || hasToken(value, "close") {
			t.Fatal("wrong answer")
		}
	}); n != 0 {
		t.Fatalf("token lists allocate %.0f times", n)
	}
}
