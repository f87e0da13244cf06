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

// A pooled connection that the upstream closed while idle is retried only
// when that is safe: a GET is sent again on a new connection, a POST with a
// body is not (it gets 502 rather than running twice).
func TestStaleUpstreamConnectionIsRetriedOnlyWhenSafe(t *testing.T) {
	up := startRawUpstream(t, nil)
	up.closeAll = true // close after each response, without saying so
	w := startWarden(t, merge(protectedEnv(up.addr()), map[string]string{"WARDEN_UPSTREAM_IDLE_TIMEOUT": "1m"}))

	get := func() int {
		resp, _ := do(t, "GET", w.url("/idempotent"), authHeader(), nil)
		return resp.StatusCode
	}
	if code := get(); code != 200 {
		t.Fatalf("first GET: %d", code)
	}
	time.Sleep(100 * time.Millisecond) // the upstream has closed the pooled connection
	if code := get(); code != 200 {
		t.Fatalf("GET on a stale connection: %d, want 200 after a retry", code)
	}

	time.Sleep(100 * time.Millisecond)
	before := len(up.requests())
	resp, body := do(t, "POST", w.url("/not-idempotent"), authHeader(), strings.NewReader("charge my card"))
	wardenError(t, resp, body, 502, "upstream_error")
	if after := len(up.requests()); after != before {
		t.Fatalf("the POST reached the upstream %d times after a stale connection; want 0", after-before)
	}

	// An Idempotency-Key makes a POST safe to repeat.
	time.Sleep(100 * time.Millisecond)
	h := authHeader()
	h.Set("Idempotency-Key", "k-1")
	if resp, _ := do(t, "POST", w.url("/keyed"), h, nil); resp.StatusCode != 200 {
		t.Fatalf("POST with Idempotency-Key and no body on a stale connection: %d", resp.StatusCode)
	}
}

// Idle upstream connections are reused while fresh and closed by warden
// after WARDEN_UPSTREAM_IDLE_TIMEOUT, before a model server's own keep-alive
// timeout (uvicorn: 5 s) could close them under a request.
func TestIdleUpstreamConnectionsAreReusedThenClosedByWarden(t *testing.T) {
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
