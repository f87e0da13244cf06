package e2e

import (
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGTERM: /readyz turns 503 at once, requests are still served during the
// drain delay, then the listener closes, in-flight requests finish, and the
// process exits 0.
func TestSIGTERMDrainsThenExitsZero(t *testing.T) {
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		t.Run(sig.String(), func(t *testing.T) {
			up := startUpstream(t)
			w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
				"WARDEN_DRAIN_DELAY":      "1s",
				"WARDEN_SHUTDOWN_TIMEOUT": "10s",
			}))
			w.waitReady(t)

			// A request already in flight when the signal comes.
			inflight := make(chan int, 1)
			go func() {
				req, _ := http.NewRequest("GET", w.url("/slow?delay=2s"), nil)
				req.Header.Set("Authorization", basicAuth(testUser, testPassword))
				resp, err := client.Do(req)
				if err != nil {
					inflight <- 0
					return
				}
				resp.Body.Close()
				inflight <- resp.StatusCode
			}()
			time.Sleep(200 * time.Millisecond)

			signalled := time.Now()
			w.signal(sig)
			waitFor(t, 500*time.Millisecond, "/readyz to turn 503", func() bool {
				resp, err := http.Get(w.adminURL("/readyz"))
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				return resp.StatusCode == http.StatusServiceUnavailable
			})
			_, body := do(t, "GET", w.adminURL("/readyz"), nil, nil)
			if !strings.Contains(string(body), "draining") {
				t.Errorf("/readyz body %q does not say draining", body)
			}

			// Still served during the drain delay, with a hint to reconnect.
			resp, _ := do(t, "GET", w.url("/echo"), authHeader(), nil)
			if resp.StatusCode != 200 {
				t.Errorf("request during the drain delay: %d, want 200", resp.StatusCode)
			}
			if !resp.Close {
				t.Errorf("response during the drain lacks Connection: close")
			}

			if code := <-inflight; code != 200 {
				t.Errorf("in-flight request ended with %d, want 200", code)
			}
			if code := w.wait(10 * time.Second); code != 0 {
				t.Fatalf("exit code %d, want 0", code)
			}
			if took := time.Since(signalled); took < time.Second {
				t.Errorf("exited %s after the signal, before the 1s drain delay", took)
			}
			if c, err := net.DialTimeout("tcp", w.addr, 200*time.Millisecond); err == nil {
				c.Close()
				t.Errorf("the proxy port still accepts connections after exit")
			}
		})
	}
}

// In-flight work that outlasts WARDEN_SHUTDOWN_TIMEOUT is cut, and warden
// still exits 0.
func TestShutdownTimeoutCutsLongStreams(t *testing.T) {
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_DRAIN_DELAY":      "0s",
		"WARDEN_SHUTDOWN_TIMEOUT": "1s",
	}))
	req, _ := http.NewRequest("GET", w.url("/forever"), nil)
	req.Header.Set("Authorization", basicAuth(testUser, testPassword))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	w.signal(syscall.SIGTERM)
	if code := w.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if took := time.Since(start); took < 900*time.Millisecond || took > 3*time.Second {
		t.Errorf("exited after %s, want about the 1s shutdown timeout", took)
	}
	if !strings.Contains(w.out.String(), "shutdown timeout reached") {
		t.Errorf("no log line about the cut connections")
	}
}

func TestStartupIsReadyInMilliseconds(t *testing.T) {
	up := startUpstream(t)
	start := time.Now()
	w := startWardenNoWait(t, protectedEnv(up.addr))
	w.waitReady(t)
	if took := time.Since(start); took > time.Second {
		t.Errorf("ready after %s", took)
	} else {
		t.Logf("ready after %s", took)
	}
}

// Health, readiness and metrics on the admin port.
func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, protectedEnv(up.addr))
	w.waitReady(t)
	if resp, body := do(t, "GET", w.adminURL("/healthz"), nil, nil); resp.StatusCode != 200 {
		t.Errorf("/healthz: %d %q", resp.StatusCode, body)
	}
	do(t, "GET", w.url("/echo"), authHeader(), nil)
	do(t, "GET", w.url("/echo"), http.Header{"Authorization": {basicAuth(testUser, "nope")}}, nil)
	do(t, "GET", w.url("/echo"), nil, nil)
	m := metrics(t, w)
	for _, want := range []string{
		`warden_requests_total{code="200"} 1`,
		`warden_requests_total{code="401"} 2`,
		`warden_auth_failures_total{reason="wrong_password",scheme="basic"} 1`,
		`warden_auth_failures_total{reason="missing",scheme="none"} 1`,
		`warden_auth_accepted_total{scheme="basic"} 1`,
		`warden_client_disconnects_total{phase="waiting"} 0`,
		`warden_client_disconnects_total{phase="streaming"} 0`,
		`warden_upstream_errors_total{kind="connect"} 0`,
		`warden_request_duration_seconds_count 3`,
		`warden_requests_in_flight 0`,
		`warden_upstream_up 1`,
		`warden_build_info{version=`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if resp, _ := do(t, "GET", w.adminURL("/nope"), nil, nil); resp.StatusCode != 404 {
		t.Errorf("unknown admin path: %d", resp.StatusCode)
	}

	// The upstream goes away: /readyz follows within a couple of seconds.
	up.kill()
	waitFor(t, 3*time.Second, "/readyz to report the upstream down", func() bool {
		resp, err := http.Get(w.adminURL("/readyz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
}

// fasthttp skips a hijack handler when flushing the response before the
// hijack fails. A client that sends a websocket upgrade (or an HTTP/1.0
// stream, also served on a hijacked connection), alone or pipelined after
// another request, and resets the connection at once, makes that happen. Whatever warden set
// aside for the tunnel or the stream must come back: the one upstream
// connection allowed is free again, no tunnel and no request is left open,
// and SIGTERM still exits within the drain delay and the shutdown timeout.
func TestHijacksFasthttpSkipsLeakNothing(t *testing.T) {
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_UPSTREAM_MAX_CONNS": "1",
		"WARDEN_UPSTREAM_TIMEOUT":   "1s",
		"WARDEN_DRAIN_DELAY":        "200ms",
		"WARDEN_SHUTDOWN_TIMEOUT":   "1s",
	}))
	w.waitReady(t)
	authz := "Authorization: " + basicAuth(testUser, testPassword) + "\r\n"
	first := "GET /echo HTTP/1.1\r\nHost: warden.test\r\n" + authz + "\r\n"
	hijacked := map[string]string{
		"websocket": "GET /ws HTTP/1.1\r\nHost: warden.test\r\n" + authz +
			"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		"HTTP/1.0 stream": "GET /sse?n=50&interval=10ms HTTP/1.0\r\nHost: warden.test\r\n" + authz + "Connection: keep-alive\r\n\r\n",
	}
	idle := func() bool {
		m := metrics(t, w)
		return strings.Contains(m, "\nwarden_requests_in_flight 0\n") && strings.Contains(m, "\nwarden_websocket_tunnels_open 0\n")
	}
	for name, second := range hijacked {
		for i := range 10 {
			before := up.stats(t).Requests
			c, err := net.Dial("tcp", w.addr)
			if err != nil {
				t.Fatal(err)
			}
			sent := second
			if i%2 == 1 {
				sent = first + second
			}
			_, _ = c.Write([]byte(sent))
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
			// The first request reaches the upstream (a pipelined second one
			// only if the first's response went out before the reset); then
			// nothing may stay open.
			waitFor(t, 3*time.Second, name+": the request to reach the upstream", func() bool {
				return up.stats(t).Requests >= before+1
			})
			time.Sleep(50 * time.Millisecond)
			deadline := time.Now().Add(3 * time.Second)
			for !idle() {
				if time.Now().After(deadline) {
					t.Fatalf("%s, reset %d: warden did not come back to idle:\n%s", name, i, metrics(t, w))
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		// The one upstream connection is free: a request gets through at once.
		start := time.Now()
		resp, _ := do(t, "GET", w.url("/echo"), authHeader(), nil)
		if resp.StatusCode != 200 || time.Since(start) > 500*time.Millisecond {
			t.Fatalf("%s: after the resets a request got %d in %s (%s): the upstream connection leaked",
				name, resp.StatusCode, time.Since(start), resp.Header.Get("X-Warden-Error"))
		}
	}
	signalled := time.Now()
	w.signal(syscall.SIGTERM)
	if code := w.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if took := time.Since(signalled); took > 2*time.Second {
		t.Errorf("SIGTERM took %s to exit, want within the 200ms drain delay and 1s shutdown timeout", took)
	}
}
