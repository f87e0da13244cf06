package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A model server that restarts (a crash, an OOM kill, a redeploy of the
// model container alone) leaves warden's idle connections to it dead. A
// request the new model server never received must not fail because of
// them: once the new one accepts connections, every request succeeds,
// POSTs included.

func TestModelRestartCostsNoRequestOnceTheNewServerListens(t *testing.T) {
	type server struct {
		name, post, get string
		start           func(t *testing.T, addr string) *proc
	}
	for _, srv := range []server{
		{"Go upstream", "/echo", "/echo", func(t *testing.T, addr string) *proc { return startUpstreamAt(t, addr).proc }},
		{"uvicorn", "/v1/echo", "/health", func(t *testing.T, addr string) *proc { return startModelServerAt(t, addr).proc }},
	} {
		for _, tc := range []struct {
			name string
			env  map[string]string
		}{
			// Idle connections kept for a minute: nothing but their death
			// can retire them.
			{"idle connections kept", map[string]string{"WARDEN_UPSTREAM_IDLE_TIMEOUT": "1m"}},
			{"default idle timeout", nil},
		} {
			t.Run(srv.name+", "+tc.name, func(t *testing.T) {
				addr := freeAddr(t)
				up := srv.start(t, addr)
				w := startWarden(t, merge(protectedEnv(addr), tc.env))
				post := func() (int, string) {
					resp, body := do(t, "POST", w.url(srv.post), authHeader(), strings.NewReader(`{"prompt":"hi"}`))
					return resp.StatusCode, resp.Header.Get("X-Warden-Error") + " " + string(body)
				}
				for i := range 4 {
					if code, why := post(); code != 200 {
						t.Fatalf("POST %d before the restart: %d %s", i, code, why)
					}
				}
				// Several idle connections in the pool: concurrent requests.
				var wg sync.WaitGroup
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						do(t, "POST", w.url(srv.post), authHeader(), strings.NewReader(strings.Repeat("x", 64<<10)))
					}()
				}
				wg.Wait()

				up.kill()
				srv.start(t, addr) // returns once it accepts connections
				time.Sleep(400 * time.Millisecond)
				for i := range 10 {
					if code, why := post(); code != 200 {
						t.Fatalf("POST %d after the model server restarted: %d %s", i, code, why)
					}
					if resp, body := do(t, "GET", w.url(srv.get), authHeader(), nil); resp.StatusCode != 200 {
						t.Fatalf("GET %d after the model server restarted: %d %s", i, resp.StatusCode, body)
					}
				}
			})
		}
	}
}

// Under a steady load of POSTs and GETs, a model server is killed and
// started again on the same address: requests that start once it accepts
// connections all succeed.
func TestModelRestartUnderLoadCostsNothingOnceItListens(t *testing.T) {
	t.Run("Go upstream", func(t *testing.T) {
		addr := freeAddr(t)
		up := startUpstreamAt(t, addr)
		restartUnderLoad(t, addr, "/echo", "/echo", up.proc, func() { startUpstreamAt(t, addr) })
	})
	t.Run("uvicorn", func(t *testing.T) {
		addr := freeAddr(t)
		m := startModelServerAt(t, addr)
		restartUnderLoad(t, addr, "/v1/echo", "/health", m.proc, func() { startModelServerAt(t, addr) })
	})
}

type outcome struct {
	start  time.Time
	method string
	status int
	code   string
	err    error
}

func restartUnderLoad(t *testing.T, addr, postPath, getPath string, model *proc, start func()) {
	t.Helper()
	w := startWarden(t, merge(protectedEnv(addr), map[string]string{"WARDEN_UPSTREAM_IDLE_TIMEOUT": "1m"}))
	w.waitReady(t)

	var (
		mu       sync.Mutex
		outcomes []outcome
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer cl.CloseIdleConnections()
	const perWorker = 20000 // bound: the loop also stops on a flag
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < perWorker && !stop.Load(); n++ {
				method, path, body := "POST", postPath, io.Reader(strings.NewReader(`{"prompt":"hello"}`))
				if (i+n)%2 == 0 {
					method, path, body = "GET", getPath, nil
				}
				req, _ := http.NewRequest(method, w.url(path), body)
				req.Header.Set("Authorization", basicAuth(testUser, testPassword))
				o := outcome{start: time.Now(), method: method}
				resp, err := cl.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					o.status, o.code = resp.StatusCode, resp.Header.Get("X-Warden-Error")
				}
				o.err = err
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}

	time.Sleep(500 * time.Millisecond)
	// A burst opens more connections than the steady load needs, so that
	// the pool holds idle ones that the load does not use up while the
	// model server is down.
	var burst sync.WaitGroup
	for range 32 {
		burst.Add(1)
		go func() {
			defer burst.Done()
			req, _ := http.NewRequest("POST", w.url(postPath), strings.NewReader(`{"prompt":"burst"}`))
			req.Header.Set("Authorization", basicAuth(testUser, testPassword))
			if resp, err := cl.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	burst.Wait()
	time.Sleep(200 * time.Millisecond)
	model.kill()
	killed := time.Now()
	// Poll the address directly; the first accepted connection marks the
	// moment from which nothing may fail.
	listened := make(chan time.Time, 1)
	go func() {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
				listened <- time.Now()
				c.Close()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		close(listened)
	}()
	start() // returns once the new model server answers
	listening, ok := <-listened
	if !ok {
		stop.Store(true)
		wg.Wait()
		t.Fatal("the model server did not listen again within 30s")
	}
	time.Sleep(1500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	var before, after, failedAfter int
	var failures []string
	for _, o := range outcomes {
		if o.start.Before(listening) {
			before++
			continue
		}
		after++
		if o.err != nil || o.status != 200 {
			failedAfter++
			if len(failures) < 10 {
				failures = append(failures, fmt.Sprintf("%s %d %s %v at +%s", o.method, o.status, o.code, o.err, o.start.Sub(listening)))
			}
		}
	}
	t.Logf("down for %s; %d requests before it listened again, %d after, %d of them failed",
		listening.Sub(killed).Round(time.Millisecond), before, after, failedAfter)
	if after < 100 {
		t.Fatalf("only %d requests after the restart: the load did not run", after)
	}
	if failedAfter > 0 {
		t.Errorf("%d requests failed after the new model server accepted connections: %s", failedAfter, strings.Join(failures, "; "))
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
