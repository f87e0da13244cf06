package e2e

import (
	"bufio"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

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

// During a rolling redeploy the previous secret keeps working until its
// deadline, and a metric shows when clients have moved.
func TestPreviousSecretWorksUntilItsDeadline(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	until := time.Now().Add(1500 * time.Millisecond).UTC()
	w := startWarden(t, map[string]string{
		"WARDEN_UPSTREAM":                "http://" + up.addr,
		"WARDEN_PASSWORD":                "new-secret",
		"WARDEN_PREVIOUS_PASSWORD":       "old-secret",
		"WARDEN_PREVIOUS_PASSWORD_UNTIL": until.Format(time.RFC3339Nano),
	})
	status := func(password string) int {
		resp, _ := do(t, http.MethodGet, w.url("/echo"), http.Header{"Authorization": {basicAuth(testUser, password)}}, nil)
		return resp.StatusCode
	}
	if got := status("new-secret"); got != 200 {
		t.Fatalf("new secret: %d", got)
	}
	if got := status("old-secret"); got != 200 {
		t.Fatalf("old secret before the deadline: %d", got)
	}
	if got := status("other"); got != 401 {
		t.Fatalf("wrong secret: %d", got)
	}
	m := metrics(t, w)
	if !strings.Contains(m, "warden_auth_previous_secret_total 1") {
		t.Errorf("the request with the previous secret was not counted")
	}
	deadline := "warden_auth_previous_secret_deadline_timestamp_seconds " + strconv.FormatFloat(float64(until.UnixMilli())/1000, 'g', -1, 64)
	if !strings.Contains(m, deadline) {
		t.Errorf("metrics lack %q", deadline)
	}
	var start map[string]any
	for _, l := range w.logLines(t) {
		if l["message"] == "warden started" {
			start = l
		}
	}
	if start["previous_secret_fingerprint"] == nil || start["previous_secret_fingerprint"] == start["secret_fingerprint"] ||
		start["previous_secret_until"] == nil {
		t.Errorf("start line does not show both fingerprints and the deadline: %v", start)
	}
	time.Sleep(time.Until(until) + 100*time.Millisecond)
	if got := status("old-secret"); got != 401 {
		t.Fatalf("old secret after the deadline: %d", got)
	}
	if got := status("new-secret"); got != 200 {
		t.Fatalf("new secret after the deadline: %d", got)
	}
	for _, secret := range []string{"new-secret", "old-secret"} {
		if strings.Contains(w.out.String(), secret) {
			t.Errorf("the log shows %s", secret)
		}
	}
}
