package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Past WARDEN_MAX_CONNS open client connections (idle keep-alive ones
// count), a new connection gets an immediate 503 that clients retry, and a
// metric counts it; once a connection closes, a new one is served again.
func TestConnectionLimitRefusesWithRetryableServiceUnavailable(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	env := protectedEnv(up.addr)
	env["WARDEN_MAX_CONNS"] = "3"
	w := startWarden(t, env)
	request := "GET /v1/models HTTP/1.1\r\nHost: w\r\nAuthorization: " + authHeader().Get("Authorization") + "\r\n\r\n"

	// Three keep-alive clients, each served once and then idle.
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, request); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("connection %d: status %d, want 200", len(held), resp.StatusCode)
		}
	}

	// The fourth is refused, at once and retryably.
	start := time.Now()
	raw := rawExchange(t, w.addr, request, 5*time.Second)
	took := time.Since(start)
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("fourth connection: %v; got %q", err, raw)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Should-Retry") != "true" ||
		resp.Header.Get("X-Warden-Error") != "too_many_connections" || !resp.Close {
		t.Fatalf("fourth connection: want 503 with Retry-After, X-Should-Retry: true, X-Warden-Error: too_many_connections and Connection: close; got %q", raw)
	}
	var fields struct{ Error string }
	if err := json.Unmarshal(body, &fields); err != nil || fields.Error != "too_many_connections" {
		t.Fatalf("body %q: %v", body, err)
	}
	if took > 2*time.Second {
		t.Errorf("the refusal took %s", took)
	}
	if up.stats(t).Requests != 3 {
		t.Errorf("the upstream saw %d requests, want 3: a refused connection never reaches it", up.stats(t).Requests)
	}
	m := metrics(t, w)
	if v := metricValue(t, m, "warden_client_connections_refused_total"); v != 1 {
		t.Errorf("warden_client_connections_refused_total %v, want 1", v)
	}
	if v := metricValue(t, m, "warden_client_connections_open"); v != 3 {
		t.Errorf("warden_client_connections_open %v, want 3", v)
	}

	// One closes: a new client is served.
	held[0].Close()
	waitFor(t, 5*time.Second, "a connection slot to free", func() bool {
		return statusOf(rawExchange(t, w.addr, strings.Replace(request, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1), 5*time.Second)) == 200
	})
}
