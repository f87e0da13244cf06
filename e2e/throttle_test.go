package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// attempt sends one request with the given password and X-Forwarded-For
// (empty: none) and returns the response.
func attempt(t *testing.T, w *wardenProc, password, xff string) *http.Response {
	t.Helper()
	h := http.Header{"Authorization": {basicAuth(testUser, password)}}
	if xff != "" {
		h.Set("X-Forwarded-For", xff)
	}
	resp, body := do(t, http.MethodGet, w.url("/echo"), h, nil)
	if resp.StatusCode == http.StatusTooManyRequests {
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil || v["error"] != "too_many_failed_logins" {
			t.Errorf("429 body %q is not warden's JSON", body)
		}
	}
	return resp
}

func TestFailedLoginsGetAClientThrottledUntilTheWindowPasses(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_AUTH_FAILURE_LIMIT":  "5",
		"WARDEN_AUTH_FAILURE_WINDOW": "2s",
		"WARDEN_ACCESS_LOG":          "false",
		"WARDEN_LOG_LEVEL":           "info",
	}))
	start := time.Now()
	for i := range 5 {
		if code := attempt(t, w, "guess-"+strconv.Itoa(i), "").StatusCode; code != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, code)
		}
	}
	before := up.stats(t).Requests
	resp := attempt(t, w, testPassword, "") // right credentials, but throttled
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-Warden-Error") != "too_many_failed_logins" {
		t.Fatalf("after 5 failures: %d %q, want 429", resp.StatusCode, resp.Header.Get("X-Warden-Error"))
	}
	// A throttled client retrying only prolongs its lock-out.
	checkShouldRetry(t, resp.Header, "too_many_failed_logins")
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 2 {
		t.Errorf("Retry-After = %q, want 1 or 2 seconds", resp.Header.Get("Retry-After"))
	}
	if up.stats(t).Requests != before {
		t.Errorf("a throttled request reached the upstream")
	}
	if !strings.Contains(metrics(t, w), "warden_auth_throttled_total 1") {
		t.Errorf("the 429 was not counted")
	}

	time.Sleep(time.Until(start.Add(2100 * time.Millisecond)))
	if code := attempt(t, w, testPassword, "").StatusCode; code != 200 {
		t.Fatalf("after the window: %d, want 200", code)
	}
	waitFor(t, 3*time.Second, "the end of the block to be logged", func() bool {
		return strings.Contains(w.out.String(), "client no longer throttled")
	})
	var started, stopped, other int
	for _, l := range w.logLines(t) {
		switch {
		case l["message"] == "client throttled: too many failed logins":
			started++
			if l["client"] != "127.0.0.1" || l["failures"] != float64(5) || l["level"] != "warn" {
				t.Errorf("start line %v", l)
			}
		case l["message"] == "client no longer throttled":
			stopped++
		case l["level"] == "warn" || l["level"] == "error":
			other++
		}
	}
	if started != 1 || stopped != 1 || other != 0 {
		t.Errorf("%d start, %d stop and %d other warnings; want 1, 1, 0:\n%s", started, stopped, other, w.out.String())
	}
	if strings.Contains(w.out.String(), "guess-") {
		t.Errorf("the log shows an attempted password")
	}
}

// Behind a trusted proxy the client is the X-Forwarded-For entry the proxy
// added, so one guesser does not lock out everyone behind the same proxy.
func TestThrottlingKeysOnTheClientBehindATrustedProxy(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	env := merge(protectedEnv(up.addr), map[string]string{"WARDEN_AUTH_FAILURE_LIMIT": "3", "WARDEN_AUTH_FAILURE_WINDOW": "1m"})
	w := startWarden(t, env) // loopback, the test's address, is trusted by default
	for range 3 {
		attempt(t, w, "guess", "1.1.1.1, 198.51.100.7") // the left entry is forged
	}
	if code := attempt(t, w, testPassword, "198.51.100.7").StatusCode; code != 429 {
		t.Errorf("the guesser: %d, want 429", code)
	}
	if code := attempt(t, w, testPassword, "9.9.9.9, 198.51.100.7").StatusCode; code != 429 {
		t.Errorf("the guesser forging another address on the left: %d, want 429", code)
	}
	if code := attempt(t, w, testPassword, "198.51.100.8").StatusCode; code != 200 {
		t.Errorf("another client behind the same proxy: %d, want 200", code)
	}
	if code := attempt(t, w, testPassword, "").StatusCode; code != 200 {
		t.Errorf("the proxy itself: %d, want 200", code)
	}

	// Trusting no one: the socket peer is the client, whatever the header.
	w2 := startWarden(t, merge(env, map[string]string{"WARDEN_TRUSTED_PROXIES": ""}))
	for i := range 3 {
		attempt(t, w2, "guess", fmt.Sprintf("203.0.113.%d", i))
	}
	if code := attempt(t, w2, testPassword, "203.0.113.200").StatusCode; code != 429 {
		t.Errorf("an untrusted peer changing its X-Forwarded-For: %d, want 429", code)
	}
}

func TestThrottlingCanBeTurnedOffAndDoesNotFloodTheLog(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_AUTH_FAILURE_LIMIT": "0", "WARDEN_ACCESS_LOG": "false", "WARDEN_LOG_LEVEL": "info",
	}))
	for i := range 100 {
		if code := attempt(t, w, "guess", "").StatusCode; code != 401 {
			t.Fatalf("failure %d: %d, want 401 with throttling off", i+1, code)
		}
	}
	if n := len(w.logLines(t)); n > 3 {
		t.Errorf("100 refused requests wrote %d log lines at info level:\n%s", n, w.out.String())
	}
}

// However many clients try, warden's memory stays bounded.
func TestThrottlingMemoryStaysBoundedUnderManyClients(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 20000 requests")
	}
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_AUTH_FAILURE_LIMIT": "2", "WARDEN_ACCESS_LOG": "false", "WARDEN_LOG_LEVEL": "error",
	}))
	const clients = 20000
	deadline := time.Now().Add(60 * time.Second)
	for i := range clients {
		if time.Now().After(deadline) {
			t.Fatalf("only %d clients in 60 s", i)
		}
		attempt(t, w, "guess", fmt.Sprintf("10.%d.%d.%d, 100.%d.%d.%d", i>>16&255, i>>8&255, i&255, i>>16&255, i>>8&255, i&255))
	}
	if peak := vmHWM(t, w.pid()); !raceBuild && peak > 40<<20 {
		t.Fatalf("peak RSS %d MiB after %d guessing clients", peak>>20, clients)
	}
}
