package e2e

// Websocket tunnels through warden, with a real websocket server and client:
// testdata/ws_server.py and testdata/ws_client.py, on Debian's
// python3-websockets (10.4), which only /usr/bin/python3 can import. Without
// it these tests skip, unless WARDEN_E2E_REQUIRE_PYTHON=1 makes that a
// failure (see interop_test.go).
//
// The server prints one JSON line per event (a TCP connection accepted, its
// first bytes, a handshake request, a refusal, an accepted handshake, a
// message with its frame count, a close), which the tests read from its
// output to see what reached it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireWebsockets skips the test when /usr/bin/python3 cannot import
// websockets' asyncio API; with WARDEN_E2E_REQUIRE_PYTHON=1 it fails
// instead.
func requireWebsockets(t testing.TB) {
	t.Helper()
	requirePythonImports(t, "import websockets, websockets.legacy.server, websockets.legacy.client", "python3-websockets")
}

// --- the server ---

// wsServer is testdata/ws_server.py.
type wsServer struct {
	*proc
	addr string
}

// wsEvent is one line of ws_server.py's output.
type wsEvent struct {
	Event       string      `json:"event"`
	T           float64     `json:"t"`
	Port        int         `json:"port"`
	Conn        int         `json:"conn"`
	Path        string      `json:"path"`
	Headers     [][2]string `json:"headers"`
	Status      int         `json:"status"`
	Extensions  []string    `json:"extensions"`
	Type        string      `json:"type"`
	Bytes       int64       `json:"bytes"`
	Frames      int         `json:"frames"`
	PingsDuring int         `json:"pings_during"`
	Code        *int        `json:"code"`
	Reason      string      `json:"reason"`
}

func startWSServer(t *testing.T) *wsServer {
	t.Helper()
	requireWebsockets(t)
	// Port 0: the server reports the port it got, so no other process can
	// take it in between.
	p := startProc(t, "ws_server", pythonEnv, pythonBin,
		filepath.Join(testdataDir(t), "ws_server.py"), "--host", "127.0.0.1", "--port", "0", "--compression", "none")
	s := &wsServer{proc: p}
	var port int
	waitFor(t, 20*time.Second, "ws_server to listen", func() bool {
		if p.exited() {
			t.Fatalf("ws_server exited: %s", p.out.String())
		}
		for _, e := range s.events(t) {
			if e.Event == "listening" {
				port = e.Port
				return true
			}
		}
		return false
	})
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return s
}

// events parses the server's event lines so far; other lines (warnings on
// stderr) are skipped.
func (s *wsServer) events(t testing.TB) []wsEvent {
	t.Helper()
	var evs []wsEvent
	for _, line := range strings.Split(s.out.String(), "\n") {
		if !strings.HasPrefix(line, `{"event"`) {
			continue
		}
		var e wsEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			// The last line may be half written.
			continue
		}
		evs = append(evs, e)
	}
	return evs
}

// count returns how many events of each kind the server reported.
func (s *wsServer) count(t testing.TB) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, e := range s.events(t) {
		n[e.Event]++
	}
	return n
}

// waitEvent waits for an event that match accepts and returns it.
func (s *wsServer) waitEvent(t testing.TB, timeout time.Duration, what string, match func(wsEvent) bool) wsEvent {
	t.Helper()
	var found wsEvent
	waitFor(t, timeout, what, func() bool {
		for _, e := range s.events(t) {
			if match(e) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

func wsURL(w *wardenProc, path string) string { return "ws://" + w.addr + path }

// --- the client ---

type wsScenario struct {
	OK             bool    `json:"ok"`
	Sent           string  `json:"sent"`
	Received       string  `json:"received"`
	SentBytes      int64   `json:"sent_bytes"`
	SentSHA256     string  `json:"sent_sha256"`
	ReceivedBytes  int64   `json:"received_bytes"`
	ReceivedSHA256 string  `json:"received_sha256"`
	ReceivedType   string  `json:"received_type"`
	Fragments      int     `json:"fragments"`
	Pings          int     `json:"pings"`
	Pongs          int     `json:"pongs"`
	Seconds        float64 `json:"seconds"`
}

type wsClose struct {
	Seconds float64 `json:"seconds"`
	Code    *int    `json:"code"`
	Reason  string  `json:"reason"`
}

// wsClientResult is what ws_client.py prints outside hold mode.
type wsClientResult struct {
	Connected  bool                  `json:"connected"`
	Status     int                   `json:"status"`
	Headers    map[string]string     `json:"headers"`
	Extensions []string              `json:"extensions"`
	Results    map[string]wsScenario `json:"results"`
	Close      *wsClose              `json:"close"`
	Error      string                `json:"error"`
}

// wsCreds are the credentials ws_client.py sends as Basic (UTF-8); nil
// sends none.
type wsCreds struct{ user, password string }

var rightCreds = &wsCreds{testUser, testPassword}

// wsClientArgs is ws_client.py's command line up to its scenarios.
func wsClientArgs(t testing.TB, url string, creds *wsCreds, extra ...string) []string {
	t.Helper()
	args := []string{filepath.Join(testdataDir(t), "ws_client.py")}
	if creds != nil {
		args = append(args, "--user", creds.user, "--password", creds.password)
	}
	args = append(args, extra...)
	return append(args, url)
}

// runWSClient runs ws_client.py with the scenarios on one connection and
// decodes its JSON output.
func runWSClient(t testing.TB, url string, creds *wsCreds, scenarios ...string) wsClientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := wsClientArgs(t, url, creds)
	cmd := exec.CommandContext(ctx, pythonBin, append(args, scenarios...)...)
	cmd.Env = append(baseEnv(), pythonEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ws_client.py %s %v: %v\nstdout: %s\nstderr: %s", url, scenarios, err, stdout.String(), stderr.String())
	}
	var r wsClientResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("ws_client.py printed %q: %v\nstderr: %s", stdout.String(), err, stderr.String())
	}
	if r.Error != "" {
		t.Errorf("ws_client.py: %s", r.Error)
	}
	return r
}

// holdEvent is a line of ws_client.py in hold mode, with the moment the
// test read it.
type holdEvent struct {
	Event        string   `json:"event"`
	N            int      `json:"n"`
	OK           bool     `json:"ok"`
	By           string   `json:"by"`
	Code         *int     `json:"code"`
	Reason       string   `json:"reason"`
	CloseSeconds *float64 `json:"close_seconds"`
	Connected    *bool    `json:"connected"`
	Status       int      `json:"status"`
	Error        string   `json:"error"`

	at time.Time
}

// wsHolder is ws_client.py holding a connection open: it echoes a tick
// every 100 ms until told to close or the connection ends.
type wsHolder struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan holdEvent
	stderr *syncBuffer
	done   chan struct{}
}

func startWSHolder(t testing.TB, url string, creds *wsCreds) *wsHolder {
	t.Helper()
	args := wsClientArgs(t, url, creds, "--tick", "0.1", "--hold-max", "30")
	cmd := exec.Command(pythonBin, append(args, "hold")...)
	cmd.Env = append(baseEnv(), pythonEnv...)
	h := &wsHolder{t: t, cmd: cmd, events: make(chan holdEvent, 1000), stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = h.stderr
	var err error
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(h.events)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			e := holdEvent{at: time.Now()}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = holdEvent{Event: "unparsed", Error: sc.Text(), at: time.Now()}
			}
			h.events <- e
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() {
		select {
		case <-h.done:
		default:
			_ = cmd.Process.Kill()
			<-h.done
		}
		if t.Failed() {
			t.Logf("--- ws_client.py hold stderr ---\n%s", h.stderr.String())
		}
	})
	return h
}

// next returns the client's next event, failing the test after timeout.
func (h *wsHolder) next(timeout time.Duration) holdEvent {
	h.t.Helper()
	e, err := h.tryNext(timeout)
	if err != nil {
		h.t.Fatal(err)
	}
	return e
}

func (h *wsHolder) tryNext(timeout time.Duration) (holdEvent, error) {
	select {
	case e, ok := <-h.events:
		if !ok {
			return holdEvent{}, fmt.Errorf("ws_client.py hold ended its output early; stderr:\n%s", h.stderr.String())
		}
		if e.Event == "" || e.Event == "unparsed" {
			return holdEvent{}, fmt.Errorf("ws_client.py hold: unexpected output %+v", e)
		}
		return e, nil
	case <-time.After(timeout):
		return holdEvent{}, fmt.Errorf("no event from ws_client.py hold within %s", timeout)
	}
}

// waitOpen waits until the tunnel is open and has echoed once.
func (h *wsHolder) waitOpen() {
	h.t.Helper()
	if e := h.next(10 * time.Second); e.Event != "open" {
		h.t.Fatalf("ws_client.py hold: first event %+v, want open", e)
	}
	if e := h.next(5 * time.Second); e.Event != "echo" || !e.OK {
		h.t.Fatalf("ws_client.py hold: %+v, want an echo", e)
	}
}

// askClose asks for a clean close from the client side.
func (h *wsHolder) askClose() {
	h.t.Helper()
	if _, err := io.WriteString(h.stdin, "close\n"); err != nil {
		h.t.Fatalf("telling ws_client.py to close: %v", err)
	}
}

// untilClosed returns the events up to and including "closed".
func (h *wsHolder) untilClosed(timeout time.Duration) []holdEvent {
	h.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var evs []holdEvent
	for {
		e, err := h.tryNext(time.Until(deadline))
		if err != nil {
			h.t.Fatalf("the connection did not end within %s (%d echoes meanwhile, the last %s ago): %v",
				timeout, len(evs), lastEchoAgo(evs), err)
		}
		evs = append(evs, e)
		if e.Event == "closed" {
			return evs
		}
	}
}

func lastEchoAgo(evs []holdEvent) string {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Event == "echo" {
			return time.Since(evs[i].at).Round(time.Millisecond).String()
		}
	}
	return "never"
}

func (e holdEvent) String() string {
	code := "none"
	if e.Code != nil {
		code = strconv.Itoa(*e.Code)
	}
	s := fmt.Sprintf("%s by %s, code %s", e.Event, e.By, code)
	if e.CloseSeconds != nil {
		s += fmt.Sprintf(", close handshake %.4fs", *e.CloseSeconds)
	}
	return s
}

// metricValue returns the value of the sample named name (with its labels,
// as written) in /metrics text; the test fails if there is none.
func metricValue(t testing.TB, text, name string) float64 {
	t.Helper()
	f, ok := findMetric(t, text, name)
	if !ok {
		t.Fatalf("/metrics lacks %s", name)
	}
	return f
}

// findMetric returns the value of the sample named name, and whether there
// is one.
func findMetric(t testing.TB, text, name string) (float64, bool) {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		v, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return f, true
	}
	return 0, false
}

const (
	tunnelsOpen = "warden_websocket_tunnels_open"
	inFlight    = "warden_requests_in_flight"
)

// waitNoTunnel waits until /metrics shows no open tunnel and no request in
// flight.
func waitNoTunnel(t testing.TB, w *wardenProc) {
	t.Helper()
	var last string
	deadline := time.Now().Add(3 * time.Second)
	for {
		last = metrics(t, w)
		if metricValue(t, last, tunnelsOpen) == 0 && metricValue(t, last, inFlight) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("3s after the tunnel ended: %s %v, %s %v (want 0 and 0)",
				tunnelsOpen, metricValue(t, last, tunnelsOpen), inFlight, metricValue(t, last, inFlight))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// --- the tests ---

// With the right credentials a real client's websocket works end to end:
// text, a 16 MiB binary message, a message in fragments and one with pings
// between its frames all come back whole; the frames reach the server as
// the client framed them; and the close handshake completes at once, not
// after the client's close timeout.
func TestWebsocketThroughWardenEchoesEverythingAndClosesPromptly(t *testing.T) {
	t.Parallel()
	s := startWSServer(t)
	w := startWarden(t, protectedEnv(s.addr))

	r := runWSClient(t, wsURL(w, "/v1/stream?session=a%2Fb"), rightCreds, "text", "big", "fragments", "pings")
	if !r.Connected || r.Status != 101 {
		t.Fatalf("handshake: connected=%v status=%d headers=%v", r.Connected, r.Status, r.Headers)
	}
	if len(r.Extensions) != 0 {
		t.Errorf("extensions negotiated: %v; the payloads must cross uncompressed", r.Extensions)
	}
	if got := r.Results["text"]; !got.OK {
		t.Errorf("text echo: sent %q, received %q", got.Sent, got.Received)
	}
	big := r.Results["big"]
	if !big.OK || big.SentBytes != 16<<20 || big.ReceivedBytes != big.SentBytes ||
		big.ReceivedSHA256 != big.SentSHA256 || big.ReceivedType != "binary" {
		t.Errorf("16 MiB binary echo: sent %d bytes sha256 %s, received %d %s bytes sha256 %s",
			big.SentBytes, big.SentSHA256, big.ReceivedBytes, big.ReceivedType, big.ReceivedSHA256)
	} else {
		t.Logf("16 MiB echoed in %.3fs", big.Seconds)
	}
	if got := r.Results["fragments"]; !got.OK || got.Fragments != 8 {
		t.Errorf("fragmented message: %+v", got)
	}
	if got := r.Results["pings"]; !got.OK || got.Pongs != got.Pings || got.Pings != 5 {
		t.Errorf("message with pings between its frames: %+v", got)
	}
	if r.Close == nil {
		t.Fatal("no close result")
	}
	if r.Close.Code == nil || *r.Close.Code != 1000 {
		t.Errorf("close code %v, want 1000 (a clean close handshake)", r.Close.Code)
	}
	if r.Close.Seconds >= 1 {
		t.Errorf("the close handshake took %.3fs; it should complete at once (the client's close timeout is 5s)", r.Close.Seconds)
	} else {
		t.Logf("close handshake took %.4fs", r.Close.Seconds)
	}

	// What the server saw: one handshake, for the path and query as sent,
	// without the credentials, and the messages framed as the client
	// framed them.
	closed := s.waitEvent(t, 5*time.Second, "ws_server to see the close", func(e wsEvent) bool { return e.Event == "closed" })
	if closed.Code == nil || *closed.Code != 1000 {
		t.Errorf("ws_server saw close code %v, want 1000", closed.Code)
	}
	var msgs []wsEvent
	var handshakes []wsEvent
	for _, e := range s.events(t) {
		switch e.Event {
		case "message":
			msgs = append(msgs, e)
		case "handshake":
			handshakes = append(handshakes, e)
		case "request":
			for _, h := range e.Headers {
				if strings.EqualFold(h[0], "Authorization") {
					t.Errorf("ws_server received the client's Authorization header: %q", h[1])
				}
			}
		}
	}
	if len(handshakes) != 1 || handshakes[0].Path != "/v1/stream?session=a%2Fb" {
		t.Errorf("ws_server handshakes: %+v, want one for /v1/stream?session=a%%2Fb", handshakes)
	}
	type shape struct {
		typ           string
		bytes         int64
		frames, pings int
	}
	want := []shape{
		{"text", int64(len("héllo wörld ✓ through warden")), 1, 0},
		{"binary", 16 << 20, 1, 0},
		{"text", -1, 9, 0}, // 8 fragments and the empty final frame
		{"binary", 6015, 7, 5},
	}
	if len(msgs) != len(want) {
		t.Fatalf("ws_server saw %d messages, want %d: %+v", len(msgs), len(want), msgs)
	}
	for i, m := range msgs {
		wnt := want[i]
		if m.Type != wnt.typ || (wnt.bytes >= 0 && m.Bytes != wnt.bytes) || m.Frames != wnt.frames || m.PingsDuring != wnt.pings {
			t.Errorf("message %d at ws_server: %s, %d bytes, %d frames, %d pings during; want %+v",
				i+1, m.Type, m.Bytes, m.Frames, m.PingsDuring, wnt)
		}
	}

	// Once closed, warden's access log has the tunnel: a 101 that carried
	// the 16 MiB back.
	var line map[string]any
	waitFor(t, 5*time.Second, "the access log line of the tunnel", func() bool {
		for _, l := range w.logLines(t) {
			if l["message"] == "request" && l["status"] == float64(101) {
				line = l
				return true
			}
		}
		return false
	})
	if b, _ := line["bytes"].(float64); b < 16<<20 {
		t.Errorf("access log: the tunnel sent %v bytes to the client, want at least 16 MiB", line["bytes"])
	}
	waitNoTunnel(t, w)
}

// Without credentials, or with wrong ones, the handshake is answered 401
// with a challenge, and nothing reaches the websocket server: no
// connection that carried a byte, no handshake request, no handshake.
func TestWebsocketWithoutRightCredentialsGets401AndNeverReachesTheServer(t *testing.T) {
	t.Parallel()
	s := startWSServer(t)
	w := startWarden(t, protectedEnv(s.addr))
	before := s.count(t)

	for _, tc := range []struct {
		name  string
		creds *wsCreds
	}{
		{"none", nil},
		{"wrong password", &wsCreds{testUser, "nope"}},
		{"wrong user", &wsCreds{"someone", testPassword}},
		{"empty password", &wsCreds{testUser, ""}},
	} {
		r := runWSClient(t, wsURL(w, "/v1/stream"), tc.creds, "text")
		if r.Connected || r.Status != http.StatusUnauthorized {
			t.Errorf("%s: connected=%v status=%d, want a refused handshake with 401", tc.name, r.Connected, r.Status)
		}
		if c := r.Headers["www-authenticate"]; !strings.HasPrefix(c, "Basic ") {
			t.Errorf("%s: WWW-Authenticate %q, want a Basic challenge", tc.name, c)
		}
	}
	// Anything warden had sent upstream would have been sent before it
	// answered; give the server a moment to report it.
	time.Sleep(300 * time.Millisecond)
	after := s.count(t)
	for _, k := range []string{"connection", "request", "handshake"} {
		if after[k] != before[k] {
			t.Errorf("ws_server saw %d %s event(s) for the refused attempts, want none", after[k]-before[k], k)
		}
	}
	if m := metrics(t, w); metricValue(t, m, tunnelsOpen) != 0 {
		t.Errorf("%s %v after refused handshakes", tunnelsOpen, metricValue(t, m, tunnelsOpen))
	}

	// The control: with the right credentials the same counts move, so
	// the check above would have seen a leak.
	if r := runWSClient(t, wsURL(w, "/v1/stream"), rightCreds, "text"); !r.Connected || !r.Results["text"].OK {
		t.Fatalf("with the right credentials: %+v", r)
	}
	s.waitEvent(t, 5*time.Second, "the control handshake", func(e wsEvent) bool { return e.Event == "handshake" })
	if got := s.count(t); got["connection"] != before["connection"]+1 || got["request"] != before["request"]+1 {
		t.Errorf("control: ws_server counts went from %v to %v, want one more connection and request", before, got)
	}
}

// The upstream refusing the handshake (403 from process_request) is what
// the client sees, not a 101, and no tunnel is left open.
func TestWebsocketRefusedByUpstreamGetsItsStatusAndOpensNoTunnel(t *testing.T) {
	t.Parallel()
	s := startWSServer(t)
	w := startWarden(t, protectedEnv(s.addr))

	for _, tc := range []struct {
		path   string
		status int
	}{{"/reject", 403}, {"/reject/404", 404}, {"/reject/503", 503}} {
		r := runWSClient(t, wsURL(w, tc.path), rightCreds, "text")
		if r.Connected || r.Status != tc.status {
			t.Errorf("%s: connected=%v status=%d, want the upstream's %d", tc.path, r.Connected, r.Status, tc.status)
		}
		if got := r.Headers["x-refused-by"]; got != "ws_server" {
			t.Errorf("%s: X-Refused-By %q: the upstream's answer did not come back (headers %v)", tc.path, got, r.Headers)
		}
		s.waitEvent(t, 5*time.Second, "ws_server to refuse "+tc.path, func(e wsEvent) bool {
			return e.Event == "rejected" && e.Path == tc.path
		})
	}
	if n := s.count(t)["handshake"]; n != 0 {
		t.Errorf("ws_server accepted %d handshakes, want none", n)
	}
	waitNoTunnel(t, w)
	m := metrics(t, w)
	for _, want := range []string{`warden_requests_total{code="403"} 1`, `warden_requests_total{code="404"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(m, `warden_requests_total{code="101"}`) && !strings.Contains(m, `warden_requests_total{code="101"} 0`) {
		t.Errorf("/metrics counts a 101 for refused handshakes")
	}
}

// An h2c upgrade is not a websocket: warden answers it as an ordinary
// HTTP/1.1 request, the connection stays HTTP/1.1, and the upstream sees
// neither Upgrade nor HTTP2-Settings.
func TestH2cUpgradeIsServedAsAnOrdinaryRequest(t *testing.T) {
	t.Parallel()
	up := startRawUpstream(t, nil)
	w := startWarden(t, protectedEnv(up.addr()))

	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	authz := "Authorization: " + basicAuth(testUser, testPassword) + "\r\n"
	req := "GET /h2c HTTP/1.1\r\n" +
		"Host: model.example\r\n" +
		"Connection: Upgrade, HTTP2-Settings\r\n" +
		"Upgrade: h2c\r\n" +
		"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n" +
		authz + "\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer to the h2c upgrade: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("h2c upgrade answered %d %q, want the upstream's ordinary 200 \"ok\"", resp.StatusCode, body)
	}
	if u := resp.Header.Get("Upgrade"); u != "" {
		t.Errorf("answer carries Upgrade: %q", u)
	}

	// The connection is still HTTP/1.1: a second request on it is served.
	if _, err := io.WriteString(c, "GET /after HTTP/1.1\r\nHost: model.example\r\n"+authz+"\r\n"); err != nil {
		t.Fatalf("second request on the connection: %v", err)
	}
	resp2, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("second request on the connection: %v", err)
	}
	io.Copy(io.Discard, resp2.Body)
	resp2.Body.Close()
	if resp2.StatusCode != 200 {
		t.Errorf("second request on the connection: %d", resp2.StatusCode)
	}

	heads := up.requests()
	if len(heads) != 2 {
		t.Fatalf("upstream got %d requests, want 2: %q", len(heads), heads)
	}
	line, headers := headerLines(heads[0])
	if line != "GET /h2c HTTP/1.1" {
		t.Errorf("upstream request line %q", line)
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		switch {
		case strings.EqualFold(name, "Upgrade"), strings.EqualFold(name, "HTTP2-Settings"):
			t.Errorf("upstream saw %q", h)
		case strings.EqualFold(name, "Connection") && strings.Contains(strings.ToLower(value), "upgrade"):
			t.Errorf("upstream saw %q", h)
		}
	}
	if m := metrics(t, w); metricValue(t, m, tunnelsOpen) != 0 {
		t.Errorf("%s %v after an h2c request", tunnelsOpen, metricValue(t, m, tunnelsOpen))
	}
}

// An open tunnel shows in /metrics as an open tunnel and a request in
// flight; once closed, both go back to 0.
func TestWebsocketTunnelShowsInMetricsWhileOpen(t *testing.T) {
	t.Parallel()
	s := startWSServer(t)
	w := startWarden(t, protectedEnv(s.addr))
	m := metrics(t, w)
	if metricValue(t, m, tunnelsOpen) != 0 || metricValue(t, m, inFlight) != 0 {
		t.Fatalf("before any tunnel: %s %v, %s %v", tunnelsOpen, metricValue(t, m, tunnelsOpen), inFlight, metricValue(t, m, inFlight))
	}

	h := startWSHolder(t, wsURL(w, "/hold"), rightCreds)
	h.waitOpen()
	m = metrics(t, w)
	if v := metricValue(t, m, tunnelsOpen); v != 1 {
		t.Errorf("while a tunnel is open: %s %v, want 1", tunnelsOpen, v)
	}
	if v := metricValue(t, m, inFlight); v < 1 {
		t.Errorf("while a tunnel is open: %s %v, want at least 1", inFlight, v)
	}

	h.askClose()
	evs := h.untilClosed(10 * time.Second)
	closed := evs[len(evs)-1]
	if closed.By != "client" || closed.Code == nil || *closed.Code != 1000 {
		t.Errorf("close: %s, want a clean close (1000) asked by the client", closed)
	}
	if closed.CloseSeconds != nil && *closed.CloseSeconds >= 1 {
		t.Errorf("the close handshake took %.3fs", *closed.CloseSeconds)
	}
	waitNoTunnel(t, w)
}

// SIGTERM with an open tunnel: it keeps working through the drain delay
// and after the listener closes, until the shutdown timeout, when warden
// closes it; then warden exits 0.
func TestWebsocketTunnelRunsThroughDrainAndIsClosedAtShutdownTimeout(t *testing.T) {
	const (
		drain   = time.Second
		timeout = 2 * time.Second
	)
	s := startWSServer(t)
	w := startWarden(t, merge(protectedEnv(s.addr), map[string]string{
		"WARDEN_DRAIN_DELAY":      drain.String(),
		"WARDEN_SHUTDOWN_TIMEOUT": timeout.String(),
	}))
	h := startWSHolder(t, wsURL(w, "/hold"), rightCreds)
	h.waitOpen()

	signalled := time.Now()
	w.signal(syscall.SIGTERM)
	evs := h.untilClosed(drain + timeout + 5*time.Second)
	closed := evs[len(evs)-1]
	closedAfter := closed.at.Sub(signalled)

	var inDrain, afterListener, failed int
	for _, e := range evs {
		if e.Event != "echo" {
			continue
		}
		if !e.OK {
			failed++
		}
		switch since := e.at.Sub(signalled); {
		case since > 100*time.Millisecond && since < drain-100*time.Millisecond:
			inDrain++
		case since > drain+300*time.Millisecond && since < drain+timeout-300*time.Millisecond:
			afterListener++
		}
	}
	t.Logf("after SIGTERM: %d echoes during the drain, %d after the listener closed; closed %s after the signal (%s)",
		inDrain, afterListener, closedAfter.Round(time.Millisecond), closed)
	if failed > 0 {
		t.Errorf("%d echoes came back wrong", failed)
	}
	if inDrain == 0 {
		t.Errorf("the tunnel echoed nothing during the drain delay")
	}
	if afterListener == 0 {
		t.Errorf("the tunnel echoed nothing between the listener closing and the shutdown timeout")
	}
	if closed.By != "peer" {
		t.Errorf("the tunnel ended by %q, want by warden (peer)", closed.By)
	}
	lo, hi := drain+timeout-300*time.Millisecond, drain+timeout+1500*time.Millisecond
	if closedAfter < lo || closedAfter > hi {
		t.Errorf("the tunnel was closed %s after SIGTERM, want about drain+timeout = %s (between %s and %s)",
			closedAfter.Round(time.Millisecond), drain+timeout, lo, hi)
	}

	code := w.wait(5 * time.Second)
	exitedAfter := time.Since(signalled)
	if code != 0 {
		t.Errorf("warden exit code %d, want 0", code)
	}
	t.Logf("warden exited %s after SIGTERM", exitedAfter.Round(time.Millisecond))
	s.waitEvent(t, 5*time.Second, "ws_server to see the connection end", func(e wsEvent) bool { return e.Event == "closed" })
	if strings.Contains(w.out.String(), "closing websocket tunnels still open") {
		t.Logf("warden logged that it closed the tunnel")
	}
}
