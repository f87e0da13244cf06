package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server-Sent Events reach the client one by one, as the model emits them:
// each event arrives before the upstream has produced the next one.
func TestServerSentEventsArriveEventByEvent(t *testing.T) {
	up := startUpstream(t)
	w := startWarden(t, protectedEnv(up.addr))
	const n, interval = 5, 300 * time.Millisecond
	req, _ := http.NewRequest("GET", w.url(fmt.Sprintf("/sse?n=%d&interval=%s", n, interval)), nil)
	req.Header.Set("Authorization", basicAuth(testUser, testPassword))
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if headersAfter := time.Since(start); headersAfter > interval {
		t.Errorf("headers took %s: they must not wait for the body", headersAfter)
	}
	type event struct {
		Token  int   `json:"token"`
		SentMs int64 `json:"sent_unix_ms"`
	}
	sc := bufio.NewScanner(resp.Body)
	var arrived []time.Time
	var events []event
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: {") {
			continue
		}
		var e event
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &e); err != nil {
			t.Fatal(err)
		}
		arrived = append(arrived, time.Now())
		events = append(events, e)
	}
	if len(events) != n {
		t.Fatalf("got %d events, want %d", len(events), n)
	}
	for i := 0; i+1 < n; i++ {
		next := time.UnixMilli(events[i+1].SentMs)
		if !arrived[i].Before(next) {
			t.Errorf("event %d arrived at %s, after event %d was sent at %s: warden held it back",
				i, arrived[i].Format(time.StampMilli), i+1, next.Format(time.StampMilli))
		}
	}
}

// patternReader yields n bytes of a fixed pattern without holding them.
type patternReader struct{ n, off int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	m := min(int64(len(p)), r.n-r.off)
	for i := range m {
		p[i] = byte((r.off + i) % 251)
	}
	r.off += m
	return int(m), nil
}

func patternSHA(n int64) string {
	h := sha256.New()
	io.Copy(h, &patternReader{n: n})
	return hex.EncodeToString(h.Sum(nil))
}

// 100 MiB each way, with and without a known length, and warden's memory
// stays well under 64 MiB.
func TestLargeBodiesStreamWithBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 400 MiB")
	}
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{"WARDEN_LOG_LEVEL": "info"}))
	const size = 100 << 20
	want := patternSHA(size)

	upload := func(chunked bool) {
		var body io.Reader = &patternReader{n: size}
		req, _ := http.NewRequest("POST", w.url("/sink"), body)
		if !chunked {
			req.ContentLength = size
		}
		req.Header.Set("Authorization", basicAuth(testUser, testPassword))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("upload (chunked=%v): %v", chunked, err)
		}
		defer resp.Body.Close()
		var e echoReply
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatal(err)
		}
		if e.BodyBytes != size || e.BodySHA256 != want || e.Chunked != chunked {
			t.Fatalf("upload (chunked=%v): upstream got %d bytes, sha %s, chunked %v", chunked, e.BodyBytes, e.BodySHA256, e.Chunked)
		}
	}
	download := func(chunked bool) {
		url := w.url(fmt.Sprintf("/blob?bytes=%d", size))
		if chunked {
			url += "&chunked=1"
		}
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", basicAuth(testUser, testPassword))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n != size {
			t.Fatalf("download (chunked=%v): %d bytes, %v", chunked, n, err)
		}
		if !chunked && resp.ContentLength != size {
			t.Errorf("Content-Length = %d, want %d", resp.ContentLength, size)
		}
	}
	upload(false)
	upload(true)
	download(false)
	download(true)
	if raceBuild {
		t.Log("memory bound not checked: the race detector multiplies memory use")
	} else if peak := vmHWM(t, w.pid()); peak > 40<<20 {
		t.Fatalf("warden's peak RSS is %d MiB after moving 400 MiB; want well under 64 MiB", peak>>20)
	} else {
		t.Logf("warden peak RSS: %.1f MiB", float64(peak)/(1<<20))
	}
}

// When the client goes away mid-stream, warden closes the upstream
// connection so the model stops generating.
func TestClientDisconnectStopsTheUpstream(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	// A long idle timeout, so that only closing the connection at once can
	// stop the stream in time (the idle reaper would close it later).
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{"WARDEN_UPSTREAM_IDLE_TIMEOUT": "60s"}))
	req, _ := http.NewRequest("GET", w.url("/forever"), nil)
	req.Header.Set("Authorization", basicAuth(testUser, testPassword))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for range 3 {
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	if s := up.stats(t); s.StreamsActive != 1 {
		t.Fatalf("upstream has %d active streams, want 1", s.StreamsActive)
	}
	resp.Body.Close() // the client goes away
	waitFor(t, 2*time.Second, "the upstream stream to be cancelled", func() bool {
		s := up.stats(t)
		return s.StreamsActive == 0 && s.StreamsCanceled == 1
	})
	waitFor(t, 2*time.Second, "the disconnect to be counted", func() bool {
		return strings.Contains(metrics(t, w), `warden_client_disconnects_total{phase="streaming"} 1`)
	})
}

func metrics(t testing.TB, w *wardenProc) string {
	t.Helper()
	resp, body := do(t, "GET", w.adminURL("/metrics"), nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return string(body)
}

func merge(maps ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// readLines reads a streamed response line by line until it ends.
func readLines(t *testing.T, w *wardenProc, path string) (*http.Response, []string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, w.url(path), nil)
	req.Header.Set("Authorization", basicAuth(testUser, testPassword))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return resp, lines
}

// A silent event stream gets SSE comments, so that idle timeouts in front of
// warden do not cut a long prefill; never inside an event, never on other
// content types, never when the heartbeat is off.
func TestSSEHeartbeatKeepsSilentStreamsAlive(t *testing.T) {
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{"WARDEN_SSE_HEARTBEAT": "200ms"}))

	_, lines := readLines(t, w, "/prefill?delay=1100ms&split=1")
	before, inside := 0, 0
	seenFirst, inSecond := false, false
	for _, l := range lines {
		switch l {
		case ": keep-alive":
			if !seenFirst {
				before++
			}
			if inSecond {
				inside++
			}
		case "data: first":
			seenFirst = true
		case "data: second, part one":
			inSecond = true
		case "data: second, part two":
			inSecond = false
		}
	}
	if before < 3 {
		t.Errorf("%d heartbeats during a 1.1 s prefill with a 200 ms heartbeat, want about 5:\n%s", before, strings.Join(lines, "\n"))
	}
	if inside != 0 {
		t.Errorf("%d heartbeats inside an event:\n%s", inside, strings.Join(lines, "\n"))
	}
	if !seenFirst || !strings.Contains(strings.Join(lines, "\n"), "data: second, part two") {
		t.Errorf("events lost:\n%s", strings.Join(lines, "\n"))
	}
	if m := metrics(t, w); !strings.Contains(m, "warden_sse_heartbeats_total "+strconv.Itoa(before)) {
		t.Errorf("metrics do not count the %d heartbeats", before)
	}

	_, lines = readLines(t, w, "/prefill?delay=600ms&type=application/x-ndjson")
	for _, l := range lines {
		if strings.HasPrefix(l, ":") {
			t.Fatalf("heartbeat on a non-SSE response:\n%s", strings.Join(lines, "\n"))
		}
	}

	off := startWarden(t, protectedEnv(up.addr))
	_, lines = readLines(t, off, "/prefill?delay=600ms")
	for _, l := range lines {
		if strings.HasPrefix(l, ":") {
			t.Fatalf("heartbeat with WARDEN_SSE_HEARTBEAT unset:\n%s", strings.Join(lines, "\n"))
		}
	}
}

var serverTiming = regexp.MustCompile(`^warden;dur=([0-9.]+), upstream;dur=([0-9.]+)$`)

// Server-Timing splits warden's own time from the upstream's time to
// response headers.
func TestServerTimingSplitsWardenFromUpstream(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, protectedEnv(up.addr))
	resp, _ := do(t, http.MethodGet, w.url("/slow?delay=300ms"), authHeader(), nil)
	m := serverTiming.FindStringSubmatch(resp.Header.Get("Server-Timing"))
	if m == nil {
		t.Fatalf("Server-Timing = %q", resp.Header.Get("Server-Timing"))
	}
	own, _ := strconv.ParseFloat(m[1], 64)
	upstream, _ := strconv.ParseFloat(m[2], 64)
	if upstream < 300 || upstream > 3000 {
		t.Errorf("upstream;dur=%v ms for an upstream that waits 300 ms", upstream)
	}
	if own < 0 || own >= upstream {
		t.Errorf("warden;dur=%v ms next to upstream;dur=%v ms", own, upstream)
	}

	// Streams carry it too: it goes out with the headers.
	resp, _ = do(t, http.MethodGet, w.url("/sse?n=2&interval=10ms"), authHeader(), nil)
	if !serverTiming.MatchString(resp.Header.Get("Server-Timing")) {
		t.Errorf("stream: Server-Timing = %q", resp.Header.Get("Server-Timing"))
	}

	off := startWarden(t, merge(protectedEnv(up.addr), map[string]string{"WARDEN_SERVER_TIMING": "false"}))
	resp, _ = do(t, http.MethodGet, off.url("/echo"), authHeader(), nil)
	if v := resp.Header.Values("Server-Timing"); len(v) != 0 {
		t.Errorf("Server-Timing %q with WARDEN_SERVER_TIMING=false", v)
	}
}
