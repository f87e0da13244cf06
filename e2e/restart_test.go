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
