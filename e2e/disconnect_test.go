package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A client that leaves stops the model's work, in every phase: while warden
// waits for the response head, and while a response body is silent, it
// watches the client's connection and closes the upstream's when the client
// has gone.

// workingModel is an upstream that, for each request, answers as told by
// its path and then keeps the connection open, recording when warden closed
// it: "/wait" sends nothing (a non-streaming completion still being worked
// on), "/stream" sends the head of an SSE stream and one event, then nothing
// (a stream in prefill, or stalled), "/quick?n" answers at once.
type workingModel struct {
	ln   net.Listener
	mu   sync.Mutex
	ends []modelEnd
	seen chan string // each request's path, when it arrives
}

type modelEnd struct {
	path string
	at   time.Time // when warden closed the connection
}

func startWorkingModel(t *testing.T) *workingModel {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &workingModel{ln: ln, seen: make(chan string, 64)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go m.serve(c)
		}
	}()
	return m
}

func (m *workingModel) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return // a readiness probe, or warden closed an idle connection
		}
		io.Copy(io.Discard, req.Body)
		path := req.URL.Path
		m.seen <- path
		switch path {
		case "/quick":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
			continue
		case "/slow-quick":
			time.Sleep(700 * time.Millisecond)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
			continue
		case "/stream":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+
				"f\r\ndata: {\"n\":0}\n\n\r\n")
		}
		// Working: nothing more until warden closes the connection, or
		// 10 s pass.
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = br.ReadByte()
		if errors.Is(err, io.EOF) {
			m.mu.Lock()
			m.ends = append(m.ends, modelEnd{path, time.Now()})
			m.mu.Unlock()
		}
		return
	}
}

// endOf waits up to 3 s for warden to close the connection that carried
// path, and returns when it did.
func (m *workingModel) endOf(t *testing.T, path string) time.Time {
	t.Helper()
	var at time.Time
	waitFor(t, 3*time.Second, "warden to close the model's connection for "+path, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, e := range m.ends {
			if e.path == path {
				at = e.at
				return true
			}
		}
		return false
	})
	return at
}

func (m *workingModel) await(t *testing.T, path string) {
	t.Helper()
	select {
	case got := <-m.seen:
		if got != path {
			t.Fatalf("the model got %s, want %s", got, path)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s never reached the model", path)
	}
}

func disconnects(t *testing.T, w *wardenProc, phase string) float64 {
	t.Helper()
	return metricValue(t, scrapeMetrics(t, w), `warden_client_disconnects_total{phase="`+phase+`"}`)
}

func dialWarden(t *testing.T, w *wardenProc, request string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}

func post(path, body string) string {
	return "POST " + path + " HTTP/1.1\r\nHost: m\r\nAuthorization: " + basicAuth(testUser, testPassword) +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func get(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: m\r\nAuthorization: " + basicAuth(testUser, testPassword) + "\r\n\r\n"
}

// The most a departure may take to reach the model here: the watch sees it
// within 200 ms; the rest is slack for a loaded CI machine.
const departureSeenWithin = time.Second

func TestClientLeavingWhileTheModelWorksClosesTheUpstream(t *testing.T) {
	t.Parallel()
	m := startWorkingModel(t)
	w := startWarden(t, merge(protectedEnv(m.ln.Addr().String()), map[string]string{"WARDEN_LOG_LEVEL": "debug"}))

	// A non-streaming completion is a POST whose body the model has read:
	// the same wait as a GET's.
	requests := map[string]string{"GET": get("/wait"), "POST": post("/wait", `{"prompt":"hello","stream":false}`)}
	departures := 0
	for _, how := range []string{"close", "reset", "half-close"} {
		for _, method := range []string{"GET", "POST"} {
			departures++
			leaveWhileWaiting(t, m, w, requests[method], method+" "+how, how)
		}
	}
	// The model sees its connection close before warden's exchange counts
	// the departure: wait for the count.
	waitFor(t, 2*time.Second, "every departure while waiting to be counted", func() bool {
		return disconnects(t, w, "waiting") == float64(departures)
	})
	if got := disconnects(t, w, "streaming"); got != 0 {
		t.Errorf("disconnects while streaming = %v, want 0", got)
	}
	waitFor(t, 2*time.Second, "the access log's 499s", func() bool {
		return strings.Count(w.out.String(), `"status":499`) == departures
	})
}

// leaveWhileWaiting sends request for /wait, lets the model work, leaves
// (how: close, reset or half-close) and checks that warden closed the
// model's connection in time.
func leaveWhileWaiting(t *testing.T, m *workingModel, w *wardenProc, request, name, how string) {
	t.Helper()
	path := "/wait"
	c := dialWarden(t, w, request)
	m.await(t, path)
	time.Sleep(300 * time.Millisecond) // the model is at work
	left := time.Now()
	switch how {
	case "close":
		c.Close()
	case "reset":
		c.SetLinger(0)
		c.Close()
	case "half-close":
		// Cannot be told from a departure until a byte is written:
		// treated as gone, as nginx does.
		c.CloseWrite()
	}
	took := m.endOf(t, path).Sub(left)
	t.Logf("%s: the model's connection closed %v after the client left", name, took.Round(time.Millisecond))
	if took > departureSeenWithin {
		t.Errorf("%s: the model's connection closed %v after the client left, want within %v", name, took, departureSeenWithin)
	}
	m.mu.Lock()
	m.ends = nil
	m.mu.Unlock()
}

func TestClientLeavingASilentStreamClosesTheUpstream(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"close", "reset"} {
		t.Run(how, func(t *testing.T) {
			leaveSilentStream(t, how == "reset")
		})
	}
}

func leaveSilentStream(t *testing.T, reset bool) {
	t.Helper()
	m := startWorkingModel(t)
	w := startWarden(t, protectedEnv(m.ln.Addr().String()))
	c := dialWarden(t, w, get("/stream"))
	m.await(t, "/stream")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data:") {
		t.Fatalf("first event: %q, %v", line, err)
	}
	time.Sleep(300 * time.Millisecond) // the stream is silent
	left := time.Now()
	if reset {
		c.SetLinger(0)
	}
	c.Close()
	took := m.endOf(t, "/stream").Sub(left)
	t.Logf("the model's connection closed %v after the client left", took.Round(time.Millisecond))
	if took > departureSeenWithin {
		t.Errorf("the model's connection closed %v after the client left, want within %v", took, departureSeenWithin)
	}
	waitFor(t, 2*time.Second, "the disconnect to be counted", func() bool { return disconnects(t, w, "streaming") == 1 })
	if got := disconnects(t, w, "waiting"); got != 0 {
		t.Errorf("disconnects while waiting = %v, want 0", got)
	}
}

// Pipelined requests behind a slow one are bytes waiting to be read, not a
// departure: the slow request is answered, and so is the next.
func TestPipelinedRequestsAreNotADeparture(t *testing.T) {
	t.Parallel()
	m := startWorkingModel(t)
	w := startWarden(t, protectedEnv(m.ln.Addr().String()))
	c := dialWarden(t, w, get("/slow-quick")+get("/quick"))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i, path := range []string{"/slow-quick", "/quick"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d (%s): %v", i+1, path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "ok\n" {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
		}
	}
	if got := disconnects(t, w, "waiting"); got != 0 {
		t.Errorf("pipelining counted as %v departures", got)
	}
}

// A client that stays while the model works a long time is never cut.
func TestClientThatWaitsIsNeverTakenForGone(t *testing.T) {
	t.Parallel()
	m := startWorkingModel(t)
	w := startWarden(t, protectedEnv(m.ln.Addr().String()))
	for range 3 {
		c := dialWarden(t, w, get("/slow-quick"))
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
	}
	if got := disconnects(t, w, "waiting"); got != 0 {
		t.Errorf("%v departures counted for clients that stayed", got)
	}
}
