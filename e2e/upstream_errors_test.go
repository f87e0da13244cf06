package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wardenError checks that a response is one of warden's own: the status,
// the X-Warden-Error header and the JSON body.
func wardenError(t testing.TB, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d (body %q)", resp.StatusCode, status, body)
	}
	if got := resp.Header.Get("X-Warden-Error"); got != code {
		t.Errorf("X-Warden-Error = %q, want %q", got, code)
	}
	var v struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Error != code || v.Status != status {
		t.Errorf("body %q is not warden's JSON for %s", body, code)
	}
	checkShouldRetry(t, resp.Header, code)
}

// retrySafe lists warden's answers given when the model provably never saw
// the request; every other answer of warden's says a retry is not safe.
var retrySafe = map[string]bool{"upstream_unavailable": true, "upstream_busy": true, "too_many_connections": true}

// checkShouldRetry checks the X-Should-Retry header (and Retry-After) that
// the OpenAI and Anthropic SDKs obey.
func checkShouldRetry(t testing.TB, h http.Header, code string) {
	t.Helper()
	want := strconv.FormatBool(retrySafe[code])
	if got := h.Values("X-Should-Retry"); len(got) != 1 || got[0] != want {
		t.Errorf("%s: X-Should-Retry = %q, want %s", code, got, want)
	}
	if retrySafe[code] && h.Get("Retry-After") == "" {
		t.Errorf("%s: no Retry-After", code)
	}
}

func TestUpstreamRefusingConnectionsGets502AtOnce(t *testing.T) {
	t.Parallel()
	w := startWarden(t, protectedEnv(freeAddr(t))) // nothing listens there
	start := time.Now()
	resp, body := do(t, "GET", w.url("/"), authHeader(), nil)
	if took := time.Since(start); took > time.Second {
		t.Errorf("502 took %s, want at once", took)
	}
	wardenError(t, resp, body, 502, "upstream_unavailable")

	resp, body = do(t, "GET", w.adminURL("/readyz"), nil, nil)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "upstream") {
		t.Errorf("/readyz = %d %q, want 503 naming the upstream", resp.StatusCode, body)
	}
}

func TestNoResponseHeadersInTimeGets504(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{"WARDEN_UPSTREAM_TIMEOUT": "500ms"}))
	start := time.Now()
	resp, body := do(t, "GET", w.url("/slow?delay=5s"), authHeader(), nil)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("504 took %s with a 500ms timeout", took)
	}
	wardenError(t, resp, body, 504, "upstream_timeout")
}

// The timeout is on the response headers only: a stream that started in
// time runs as long as it runs.
func TestLongStreamWithTimelyHeadersIsNeverCut(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{"WARDEN_UPSTREAM_TIMEOUT": "300ms"}))
	resp, body := do(t, "GET", w.url("/sse?n=6&interval=250ms"), authHeader(), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if n := strings.Count(string(body), `"token"`); n != 6 || !strings.Contains(string(body), "[DONE]") {
		t.Fatalf("got %d of 6 events and no end marker: the stream was cut\n%s", n, body)
	}
}

// An upstream that breaks the connection mid-body makes warden close the
// client's connection: never a clean-looking, truncated response.
func TestUpstreamBreakingMidBodyClosesTheClientConnection(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, protectedEnv(up.addr))
	for _, path := range []string{"/drop?when=body", "/drop?when=body&chunked=1"} {
		req, _ := http.NewRequest("GET", w.url(path), nil)
		req.Header.Set("Authorization", basicAuth(testUser, testPassword))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("%s: read %d bytes and a clean end; want an error", path, n)
		} else if !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "EOF") {
			t.Logf("%s: error %v", path, err)
		}
	}
	// Before any response byte, it is a 502.
	resp, body := do(t, "GET", w.url("/drop?when=headers"), authHeader(), nil)
	wardenError(t, resp, body, 502, "upstream_error")
}

// With every upstream connection busy past the timeout, the request never
// reached the model: 503 upstream_busy says a retry is safe.
func TestAllUpstreamConnectionsBusyGets503ThatMayBeRetried(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_UPSTREAM_MAX_CONNS": "1", "WARDEN_UPSTREAM_TIMEOUT": "700ms",
	}))
	held := make(chan struct{})
	go func() {
		defer close(held)
		// Headers come at once, the body 3 s later: the one connection
		// stays in use, and no timeout applies to it.
		req, _ := http.NewRequest("GET", w.url("/prefill?delay=3s"), nil)
		req.Header = authHeader()
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	resp, body := do(t, "GET", w.url("/echo"), authHeader(), nil)
	wardenError(t, resp, body, 503, "upstream_busy")
	<-held
}
