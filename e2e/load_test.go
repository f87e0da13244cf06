package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hundreds of concurrent clients never see an error from warden, even with
// few upstream connections allowed: requests wait for a free one.
func TestHundredsOfConcurrentClientsAllSucceed(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	for _, maxConns := range []string{"1024", "8"} {
		t.Run("max_conns="+maxConns, func(t *testing.T) {
			up := startUpstream(t)
			w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
				"WARDEN_UPSTREAM_MAX_CONNS": maxConns, "WARDEN_LOG_LEVEL": "warn",
			}))
			const clients, perClient = 300, 10
			tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			var wg sync.WaitGroup
			var mu sync.Mutex
			failures := map[string]int{}
			deadline := time.Now().Add(60 * time.Second)
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range perClient {
						if time.Now().After(deadline) {
							return
						}
						req, _ := http.NewRequest("POST", w.url(fmt.Sprintf("/echo?c=%d&r=%d", i, j)), strings.NewReader("payload"))
						req.Header.Set("Authorization", basicAuth(testUser, testPassword))
						resp, err := c.Do(req)
						if err != nil {
							mu.Lock()
							failures[err.Error()]++
							mu.Unlock()
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							mu.Lock()
							failures[fmt.Sprintf("status %d %s", resp.StatusCode, resp.Header.Get("X-Warden-Error"))]++
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			if len(failures) > 0 {
				t.Fatalf("failures among %d requests: %v", clients*perClient, failures)
			}
			if got := up.stats(t).Requests; got != clients*perClient {
				t.Fatalf("upstream saw %d requests, want %d", got, clients*perClient)
			}
		})
	}
}

// A pooled connection that the upstream closed while it was idle is never
// used: the request, whatever its method, goes on a new connection and
// reaches the upstream once.
func TestStaleUpstreamConnectionIsNeverUsed(t *testing.T) {
	t.Parallel()
	up := startRawUpstream(t, nil)
	up.closeAll = true // close after each response, without saying so
	w := startWarden(t, merge(protectedEnv(up.addr()), map[string]string{"WARDEN_UPSTREAM_IDLE_TIMEOUT": "1m"}))
	for i, method := range []string{"GET", "POST", "POST", "GET"} {
		time.Sleep(100 * time.Millisecond) // the upstream has closed the pooled connection
		before := len(up.requests())
		resp, body := do(t, method, w.url("/charge"), authHeader(), strings.NewReader("charge my card"))
		if resp.StatusCode != 200 {
			t.Fatalf("%s %d on a connection the upstream had closed: %d %s", method, i, resp.StatusCode, body)
		}
		if n := len(up.requests()) - before; n != 1 {
			t.Fatalf("%s %d reached the upstream %d times, want once", method, i, n)
		}
	}
}

// A reused connection that the upstream closes after reading a request,
// without answering, may or may not have run it: the request is sent again
// on a new connection only if that is safe. A GET is; a POST with a body is
// not (it gets 502 rather than running twice), unless it has an
// Idempotency-Key and no body.
func TestRequestLostOnAReusedConnectionIsRetriedOnlyWhenSafe(t *testing.T) {
	t.Parallel()
	// Each connection answers its first request and drops its second one
	// unanswered.
	up := startScriptedUpstream(t, func(_ string, nth int) script {
		if nth == 0 {
			return script{steps: []scriptStep{{write: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}}, end: endKeep}
		}
		return script{end: endClose}
	})
	w := startWarden(t, merge(protectedEnv(up.addr()), map[string]string{"WARDEN_UPSTREAM_IDLE_TIMEOUT": "1m"}))
	send := func(method, path string, h http.Header, body string) int {
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		resp, _ := do(t, method, w.url(path), h, r)
		return resp.StatusCode
	}
	// A fresh connection answers; then the pooled one drops the GET, which
	// is sent again on a new connection.
	if code := send("GET", "/warm", authHeader(), ""); code != 200 {
		t.Fatalf("first GET: %d", code)
	}
	if code := send("GET", "/idempotent", authHeader(), ""); code != 200 {
		t.Fatalf("GET on a connection that dropped it: %d, want 200 after a retry", code)
	}
	if n := up.received("/idempotent"); n != 2 {
		t.Fatalf("the GET reached the upstream %d times, want 2 (once dropped, once answered)", n)
	}

	// The pool now holds the connection that answered the retry: it drops
	// the POST, which warden does not send again.
	resp, body := do(t, "POST", w.url("/not-idempotent"), authHeader(), strings.NewReader("charge my card"))
	wardenError(t, resp, body, 502, "upstream_error")
	if n := up.received("/not-idempotent"); n != 1 {
		t.Fatalf("the POST reached the upstream %d times, want once", n)
	}

	// An Idempotency-Key makes a POST without a body safe to repeat.
	if code := send("GET", "/warm-again", authHeader(), ""); code != 200 {
		t.Fatalf("GET: %d", code)
	}
	h := authHeader()
	h.Set("Idempotency-Key", "k-1")
	if code := send("POST", "/keyed", h, ""); code != 200 {
		t.Fatalf("POST with Idempotency-Key and no body on a connection that dropped it: %d", code)
	}
	if n := up.received("/keyed"); n != 2 {
		t.Fatalf("the keyed POST reached the upstream %d times, want 2", n)
	}
}

// Idle upstream connections are reused while fresh and closed by warden
// after WARDEN_UPSTREAM_IDLE_TIMEOUT, before a model server's own keep-alive
// timeout (uvicorn: 5 s) could close them under a request.
func TestIdleUpstreamConnectionsAreReusedThenClosedByWarden(t *testing.T) {
	t.Parallel()
	up := startRawUpstream(t, nil)
	w := startWarden(t, merge(protectedEnv(up.addr()), map[string]string{"WARDEN_UPSTREAM_IDLE_TIMEOUT": "300ms"}))
	for range 5 {
		if resp, _ := do(t, "GET", w.url("/"), authHeader(), nil); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if accepted, _ := up.connCounts(); accepted != 1 {
		t.Fatalf("%d upstream connections for 5 sequential requests, want 1 reused", accepted)
	}
	waitFor(t, 2*time.Second, "warden to close the idle upstream connection", func() bool {
		_, closed := up.connCounts()
		return closed == 1
	})
	if resp, _ := do(t, "GET", w.url("/"), authHeader(), nil); resp.StatusCode != 200 {
		t.Fatalf("after the idle close: %d", resp.StatusCode)
	}
	if accepted, _ := up.connCounts(); accepted != 2 {
		t.Fatalf("want a new connection after the idle close, got %d in all", accepted)
	}
}
