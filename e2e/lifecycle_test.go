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
		`warden_auth_failures_total{reason="wrong_password"} 1`,
		`warden_auth_failures_total{reason="missing"} 1`,
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
