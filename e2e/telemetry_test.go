package e2e

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// The stream telemetry that model operators need: time to first token,
// and the longest silence within each streamed response.
func TestTimeToFirstByteAndLongestSilenceAreMeasured(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, protectedEnv(up.addr))
	get := func(path string) {
		t.Helper()
		req, _ := http.NewRequest("GET", w.url(path), nil)
		req.Header = authHeader()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	// Headers at once, then 600 ms of prefill, the first event, 600 ms
	// more, the rest: first byte after about 0.6 s, longest silence about
	// 0.6 s.
	get("/prefill?delay=600ms&split=1")
	// Five events 20 ms apart: first byte at once, no silence over 0.1 s.
	get("/sse?n=5&interval=20ms")
	// A sized body: a first byte, but not a stream.
	get("/echo")

	// A response is recorded as it ends, which can be just after the
	// client has read its last byte.
	var m string
	waitFor(t, 2*time.Second, "the three responses to be recorded", func() bool {
		m = scrapeMetrics(t, w)
		return metricValue(t, m, "warden_stream_longest_silence_seconds_count") == 2 &&
			metricValue(t, m, "warden_response_first_byte_seconds_count") == 3
	})
	for key, want := range map[string]float64{
		`warden_response_first_byte_seconds_count`:                3,
		`warden_response_first_byte_seconds_bucket{le="0.25"}`:    2,
		`warden_response_first_byte_seconds_bucket{le="1"}`:       3,
		`warden_stream_longest_silence_seconds_count`:             2,
		`warden_stream_longest_silence_seconds_bucket{le="0.1"}`:  1,
		`warden_stream_longest_silence_seconds_bucket{le="0.5"}`:  1,
		`warden_stream_longest_silence_seconds_bucket{le="1"}`:    2,
		`warden_stream_longest_silence_seconds_bucket{le="+Inf"}`: 2,
	} {
		if got := metricValue(t, m, key); got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	if sum := metricValue(t, m, "warden_stream_longest_silence_seconds_sum"); sum < 0.6 || sum > 1.2 {
		t.Errorf("longest silences sum to %.3f s, want about 0.6", sum)
	}
}
