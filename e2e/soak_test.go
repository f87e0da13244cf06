package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The soak: warden under a steady mixed load for WARDEN_SOAK (a duration;
// `make soak` sets 10m, CI 30s) or WARDEN_SOAK_REQUESTS exchanges (20
// million unless set), whichever comes first, sampling its goroutines, file descriptors
// and memory. It fails on any answer a client should not have got, and if
// anything grows without bound.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("WARDEN_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set WARDEN_SOAK to a duration (make soak) to run the soak")
	}
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_LOG_LEVEL": "warn", "WARDEN_AUTH_FAILURE_LIMIT": "0",
	}))
	w.waitReady(t)
	idle := mustSample(t, w)

	limit := int64(20_000_000)
	if v := os.Getenv("WARDEN_SOAK_REQUESTS"); v != "" {
		if limit, err = strconv.ParseInt(v, 10, 64); err != nil || limit <= 0 {
			t.Fatalf("WARDEN_SOAK_REQUESTS: want a positive count, got %q", v)
		}
	}
	l := startLoad(t, w, map[string]int{
		"get": 8, "unauth": 2, "sse": 2, "upload": 2, "download": 2, "ws": 2, "vanish": 1,
	})
	l.limit(limit)
	began := time.Now()
	var samples []sample
	tick := time.NewTicker(max(d/120, 250*time.Millisecond))
	defer tick.Stop()
	end := time.After(d)
loop:
	for {
		select {
		case <-end:
			break loop
		case <-l.exhausted:
			t.Logf("stopped after %d exchanges (WARDEN_SOAK_REQUESTS)", limit)
			break loop
		case <-tick.C:
			s, err := readSample(w)
			if err != nil {
				t.Fatalf("warden stopped answering its admin port: %v", err)
			}
			samples = append(samples, s)
			if w.exited() {
				t.Fatalf("warden exited under load:\n%s", w.out.String())
			}
		}
	}
	l.Stop()
	counts, nbad, bad := l.results()
	t.Logf("exchanges in %s: %v", time.Since(began).Round(time.Second), counts)
	if nbad > 0 {
		t.Errorf("%d unexpected answers, the first: %s", nbad, strings.Join(bad, "\n"))
	}
	for kind := range loadKinds {
		if counts[kind] == 0 {
			t.Errorf("no %s exchange succeeded", kind)
		}
	}

	// Growth: the second half of the run must not climb above the first.
	if len(samples) >= 8 {
		warm := samples[len(samples)/8:]
		first, second := warm[:len(warm)/2], warm[len(warm)/2:]
		for _, m := range []struct {
			name  string
			get   func(sample) float64
			slack float64
		}{
			{"goroutines", func(s sample) float64 { return s.goroutines }, 30},
			{"open fds", func(s sample) float64 { return s.fds }, 30},
			{"RSS MiB", func(s sample) float64 { return s.rssMiB }, 8},
		} {
			a, b := peak(first, m.get), peak(second, m.get)
			t.Logf("%s: peak %.1f in the first half, %.1f in the second (idle before: %.1f)", m.name, a, b, m.get(idle))
			if b > a*1.25+m.slack {
				t.Errorf("%s grew from %.1f to %.1f during the run", m.name, a, b)
			}
		}
	}

	// Every client that vanished mid-stream made warden close the upstream
	// side: the upstream saw each of those streams canceled, and warden
	// counted each disconnect.
	waitFor(t, 5*time.Second, "the vanished clients' upstream streams to end", func() bool {
		return up.stats(t).StreamsActive == 0
	})
	st, last := up.stats(t), mustSample(t, w)
	t.Logf("vanished clients: %d; upstream streams canceled: %d; warden_client_disconnects_total: %.0f",
		counts["vanish"], st.StreamsCanceled, last.disconnects)
	if st.StreamsCanceled < int64(counts["vanish"]) || last.disconnects < float64(counts["vanish"]) {
		t.Errorf("vanished clients %d, but streams canceled upstream %d and disconnects counted %.0f",
			counts["vanish"], st.StreamsCanceled, last.disconnects)
	}

	// After the load, everything returns to about where it was.
	if !waitIdle(t, w, idle) {
		w.signal(syscall.SIGQUIT) // the runtime prints every goroutine's stack
		w.wait(5 * time.Second)
		t.FailNow()
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after the soak", code)
	}
}

func mustSample(t *testing.T, w *wardenProc) sample {
	t.Helper()
	s, err := readSample(w)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitIdle waits for w to return to about its idle state: nothing in
// flight, and goroutines and descriptors near where they were before the
// load. fasthttp's idle server workers exit 10 to 20 s after their last
// request (the pool sweeps every 10 s for workers idle 10 s).
func waitIdle(t *testing.T, w *wardenProc, idle sample) bool {
	t.Helper()
	var last sample
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s, err := readSample(w)
		if err == nil {
			last = s
			if s.inFly == 0 && s.goroutines <= idle.goroutines+10 && s.fds <= idle.fds+10 {
				return true
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("warden did not return to idle: now %.0f goroutines, %.0f fds, %.0f in flight; before the load %.0f, %.0f (its goroutines follow)",
		last.goroutines, last.fds, last.inFly, idle.goroutines, idle.fds)
	return false
}

func peak(samples []sample, get func(sample) float64) float64 {
	m := 0.0
	for _, s := range samples {
		m = max(m, get(s))
	}
	return m
}

// SIGTERM while a load generator runs: through the drain delay no request
// fails, streams in flight finish, and warden exits 0.
func TestDrainUnderLoadLosesNothing(t *testing.T) {
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_LOG_LEVEL": "warn", "WARDEN_DRAIN_DELAY": "2s", "WARDEN_SHUTDOWN_TIMEOUT": "10s",
	}))
	w.waitReady(t)
	l := startLoad(t, w, map[string]int{"get": 6, "sse": 2, "upload": 1, "ws": 1})

	// A long stream in flight when the signal comes, to finish after the
	// listener has closed.
	type result struct {
		events int
		err    error
	}
	long := make(chan result, 1)
	go func() {
		resp, err := client.Do(mustRequest(t, w, "/sse?n=30&interval=100ms"))
		if err != nil {
			long <- result{0, err}
			return
		}
		defer resp.Body.Close()
		b, err := readAllString(resp)
		long <- result{strings.Count(b, `"token"`), err}
	}()

	time.Sleep(500 * time.Millisecond)
	w.signal(syscall.SIGTERM)
	time.Sleep(1800 * time.Millisecond) // inside the 2 s drain delay
	l.Stop()                            // before the listener closes
	counts, nbad, bad := l.results()
	t.Logf("exchanges around the signal: %v", counts)
	if nbad > 0 {
		t.Errorf("%d requests failed during the drain delay, the first: %s", nbad, strings.Join(bad, "\n"))
	}
	r := <-long
	if r.err != nil || r.events != 30 {
		t.Errorf("the stream in flight got %d of 30 events: %v", r.events, r.err)
	}
	if code := w.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// Faults at the upstream during load: warden answers 502 or 504 as
// specified, never crashes, leaks nothing, and serves again as soon as the
// upstream is back.
func TestUpstreamFaultsUnderLoad(t *testing.T) {
	upAddr := freeAddr(t)
	up := startUpstreamAt(t, upAddr)
	w := startWarden(t, merge(protectedEnv(upAddr), map[string]string{
		"WARDEN_LOG_LEVEL": "error", "WARDEN_UPSTREAM_TIMEOUT": "1s",
	}))
	w.waitReady(t)
	idle := mustSample(t, w)

	// phase runs a load of authorised GETs against w for at least d,
	// runs during (if any) in the meantime, and checks that every answer
	// was a success or one of allowed.
	phase := func(w *wardenProc, name string, allowed map[string]bool, d time.Duration, during func()) map[string]int {
		t.Helper()
		l := startLoad(t, w, map[string]int{"get": 6})
		l.allow = func(kind string, status int, code string, err error) bool {
			return allowed[fmt.Sprintf("%d %s", status, code)]
		}
		end := time.Now().Add(d)
		if during != nil {
			during()
		}
		time.Sleep(time.Until(end))
		l.Stop()
		counts, nbad, bad := l.results()
		t.Logf("%s: %v", name, counts)
		if nbad > 0 {
			t.Errorf("%s: %d unexpected answers, the first: %s", name, nbad, strings.Join(bad, "\n"))
		}
		if w.exited() {
			t.Fatalf("%s: warden exited:\n%s", name, w.out.String())
		}
		return counts
	}

	phase(w, "healthy", nil, time.Second, nil)

	// The upstream dies: 502 upstream_unavailable at once.
	up.kill()
	if c := phase(w, "upstream down", map[string]bool{
		"502 upstream_unavailable": true,
		"502 upstream_error":       true, // in flight when it died
	}, 2*time.Second, nil); c["get"] > 0 {
		t.Errorf("successes while the upstream was down: %v", c)
	}

	// It comes back: warden serves again (and is ready) within a second.
	startUpstreamAt(t, upAddr)
	w.waitReady(t)
	if c := phase(w, "upstream back", nil, time.Second, nil); c["get"] == 0 {
		t.Errorf("no success after the upstream came back")
	}

	// It hangs on some requests: no response headers within the timeout,
	// 504, while the load beside them is served.
	phase(w, "upstream hangs on some requests", nil, time.Second, func() {
		for range 3 {
			resp, body := do(t, "GET", w.url("/slow?delay=1h"), authHeader(), nil)
			wardenError(t, resp, body, 504, "upstream_timeout")
		}
	})

	// It resets connections mid-body: the client's connection is closed,
	// the load beside it is served.
	phase(w, "upstream resets some connections mid-body", nil, time.Second, func() {
		for range 10 {
			req := mustRequest(t, w, "/drop?when=body")
			if resp, err := client.Do(req); err == nil {
				_, rerr := readAllString(resp)
				resp.Body.Close()
				if rerr == nil {
					t.Errorf("a body cut by the upstream arrived as complete")
				}
			}
		}
	})
	phase(w, "after the faults", nil, time.Second, nil)

	// An upstream whose accept backlog is full (it never accepts): dials
	// hang, the client gets 504 (or 502 if the kernel refuses), warden's
	// goroutines do not pile up.
	stuck, fill := stuckListener(t)
	w2 := startWarden(t, merge(protectedEnv(stuck), map[string]string{
		"WARDEN_LOG_LEVEL": "error", "WARDEN_UPSTREAM_TIMEOUT": "500ms",
	}))
	idle2 := mustSample(t, w2)
	fill()
	phase(w2, "full accept backlog", map[string]bool{
		"504 upstream_timeout":     true,
		"502 upstream_unavailable": true,
		"502 upstream_error":       true,
	}, 2*time.Second, func() {
		for range 5 {
			resp, body := do(t, "GET", w2.url("/"), authHeader(), nil)
			if resp.StatusCode != 504 && resp.StatusCode != 502 {
				t.Errorf("full backlog: %d %s", resp.StatusCode, body)
			}
		}
	})

	// Nothing leaked: back to idle.
	for _, w := range []struct {
		w    *wardenProc
		idle sample
	}{{w, idle}, {w2, idle2}} {
		if !waitIdle(t, w.w, w.idle) {
			w.w.signal(syscall.SIGQUIT) // the runtime prints every goroutine's stack
			w.w.wait(5 * time.Second)
			t.FailNow()
		}
	}
	if m := metrics(t, w); !strings.Contains(m, `warden_upstream_errors_total{kind="connect"}`) ||
		strings.Contains(m, `warden_upstream_errors_total{kind="connect"} 0`) ||
		strings.Contains(m, `warden_upstream_errors_total{kind="timeout"} 0`) {
		t.Errorf("the faults are not in the metrics")
	}
}

// mustRequest is an authorized GET of path on w.
func mustRequest(t testing.TB, w *wardenProc, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, w.url(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", basicAuth(testUser, testPassword))
	return req
}

func readAllString(resp *http.Response) (string, error) {
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// stuckListener returns the address of a socket that listens with the
// smallest accept queue and never accepts, and fill, which queues
// connections until the kernel drops further SYNs: a dial to it then hangs,
// as to an upstream that is alive but overwhelmed.
func stuckListener(t testing.TB) (addr string, fill func()) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr = fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	fill = func() {
		for range 8 {
			c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
			if err != nil {
				return // the queue is full: SYNs are dropped now
			}
			t.Cleanup(func() { c.Close() })
		}
		t.Fatalf("%s accepted 8 connections without an accept: the queue did not fill", addr)
	}
	return addr, fill
}
