package proxy

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/paperspace/warden/auth"
	"github.com/paperspace/warden/internal/procstat"
)

// Metrics are warden's Prometheus metrics, in the text exposition format
// (version 0.0.4). They are plain atomics written out at scrape time: the
// request path pays a few atomic adds and allocates nothing.
//
// warden does not use the Prometheus client library, which with protobuf
// made up a third of the binary and of its memory (README, Performance);
// TestBinaryDependsOnNoPrometheusLibraryOrProtobuf keeps it out.
type Metrics struct {
	version string
	start   time.Time

	requests       [600]counter // by status code; higher codes are counted as 599
	authFailures   [len(auth.Results)][len(auth.Carriers)]counter
	authAccepted   [len(auth.Carriers)]counter
	upstreamErrors [len(upstreamErrorKinds)]counter
	inFlight       gauge
	duration       *histogram
	upstreamWait   *histogram
	firstByte      *histogram
	silence        *histogram
	clientGone     [len(phaseNames)]counter // by phase
	connsRefused   counter
	connsOpen      func() int64 // nil until a proxy serves
	throttled      counter
	throttledNow   gauge
	tunnelsOpen    gauge
	heartbeats     counter
	previousSecret counter
	previousUntil  gauge // Unix milliseconds
	secretWeak     gauge
	upstreamUp     gauge
	draining       gauge
	configMode     string
	configTLS      bool
}

// authFailureSeries are the (reason, carrier) pairs a refusal can have,
// each exposed from the start.
var authFailureSeries = func() []authFailure {
	var out []authFailure
	add := func(r auth.Result, cs ...auth.Carrier) {
		for _, c := range cs {
			out = append(out, authFailure{r, c})
		}
	}
	add(auth.Missing, auth.CarrierNone)
	add(auth.Scheme, auth.CarrierBasic, auth.CarrierBearer, auth.CarrierAPIKey, auth.CarrierOther)
	add(auth.Malformed, auth.CarrierBasic, auth.CarrierBearer, auth.CarrierAPIKey)
	add(auth.WrongUser, auth.CarrierBasic)
	add(auth.WrongPassword, auth.CarrierBasic, auth.CarrierBearer, auth.CarrierAPIKey)
	return out
}()

type authFailure struct {
	r auth.Result
	c auth.Carrier
}

// upstreamErrorKinds label warden_upstream_errors_total.
var upstreamErrorKinds = [...]string{"connect", "connect_timeout", "timeout", "busy", "protocol", "body"}

// NewMetrics returns warden's metrics for a build version.
func NewMetrics(version string) *Metrics {
	return &Metrics{
		version: version,
		start:   time.Now(),
		duration: newHistogram([]float64{
			.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300,
		}),
		upstreamWait: newHistogram([]float64{
			.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300,
		}),
		firstByte: newHistogram([]float64{
			.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300,
		}),
		silence: newHistogram([]float64{
			.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300,
		}),
	}
}

// SetConfig records how this replica runs, for warden_config_info and the
// previous secret's deadline (zero: none).
func (m *Metrics) SetConfig(mode string, tls bool, previousUntil time.Time) {
	m.configMode, m.configTLS = mode, tls
	if !previousUntil.IsZero() {
		m.previousUntil.Set(previousUntil.UnixMilli())
	}
}

// SetSecretWeak records whether a configured secret was found weak at start.
func (m *Metrics) SetSecretWeak(weak bool) {
	if weak {
		m.secretWeak.Set(1)
	}
}

// code returns the counter for one status code.
func (m *Metrics) code(status int) *counter {
	return &m.requests[min(max(status, 0), len(m.requests)-1)]
}

func (m *Metrics) upstreamError(kind string) {
	for i, k := range upstreamErrorKinds {
		if k == kind {
			m.upstreamErrors[i].Inc()
			return
		}
	}
}

type counter struct{ v atomic.Uint64 }

func (c *counter) Inc()         { c.v.Add(1) }
func (c *counter) Load() uint64 { return c.v.Load() }

type gauge struct{ v atomic.Int64 }

func (g *gauge) Inc()        { g.v.Add(1) }
func (g *gauge) Dec()        { g.v.Add(-1) }
func (g *gauge) Set(v int64) { g.v.Store(v) }
func (g *gauge) Load() int64 { return g.v.Load() }

// histogram counts durations in buckets with fixed upper bounds (seconds),
// Prometheus-style: cumulative on output, each observation counted once.
type histogram struct {
	bounds []time.Duration
	upper  []float64
	counts []atomic.Uint64 // one per bound, and one for +Inf
	sumNs  atomic.Uint64
}

func newHistogram(upper []float64) *histogram {
	h := &histogram{upper: upper, counts: make([]atomic.Uint64, len(upper)+1)}
	for _, u := range upper {
		h.bounds = append(h.bounds, time.Duration(u*float64(time.Second)))
	}
	return h
}

// Observe counts one duration.
func (h *histogram) Observe(d time.Duration) {
	i := 0
	for i < len(h.bounds) && d > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(max(d, 0)))
}

// AppendText appends every metric in the Prometheus text format.
func (m *Metrics) AppendText(b []byte) []byte {
	w := textWriter{b: b}

	w.family("warden_requests_total", "counter", "Requests answered on the proxy port, by HTTP status code (warden's own answers included).")
	for code := range m.requests {
		if n := m.requests[code].Load(); n > 0 {
			w.sample("warden_requests_total", "code", strconv.Itoa(code), float64(n))
		}
	}
	w.family("warden_auth_failures_total", "counter", "Requests refused with 401, by reason (missing, scheme, malformed, wrong_user, wrong_password) and by the carrier the client used (scheme: basic, bearer, x-api-key; none when it sent no credential, other for an unknown Authorization scheme).")
	for _, f := range authFailureSeries {
		w.sample2("warden_auth_failures_total", "reason", f.r.String(), "scheme", f.c.String(), float64(m.authFailures[f.r][f.c].Load()))
	}
	w.family("warden_auth_accepted_total", "counter", "Requests whose credentials were accepted, by carrier (scheme: basic, bearer, x-api-key).")
	for _, c := range [...]auth.Carrier{auth.CarrierBasic, auth.CarrierBearer, auth.CarrierAPIKey} {
		w.sample("warden_auth_accepted_total", "scheme", c.String(), float64(m.authAccepted[c].Load()))
	}
	w.family("warden_upstream_errors_total", "counter", "Failed exchanges with the upstream, by kind: connect, connect_timeout, timeout, busy, protocol, body.")
	for i, kind := range upstreamErrorKinds {
		w.sample("warden_upstream_errors_total", "kind", kind, float64(m.upstreamErrors[i].Load()))
	}
	w.single("warden_requests_in_flight", "gauge", "Requests being served on the proxy port, streams and websocket tunnels included.", float64(m.inFlight.Load()))
	w.histogram("warden_request_duration_seconds", "Time from the request's arrival to the last byte of the response, streams included.", m.duration)
	w.histogram("warden_upstream_response_header_seconds", "Time from sending the request upstream to receiving the upstream's response headers.", m.upstreamWait)
	w.histogram("warden_response_first_byte_seconds", "Time from the request's arrival to the first byte of the response body sent to the client: time to first token, for token streams.", m.firstByte)
	w.histogram("warden_stream_longest_silence_seconds", "The longest silence within each streamed response (a body of unknown length, as token streams are): from the response head, between pieces of the body, to its end. SSE heartbeats do not break a silence.", m.silence)
	w.family("warden_client_disconnects_total", "counter", "Requests whose client went away before the response was whole, by phase: waiting (before the response head; warden saw it while the model worked) or streaming (during the body). The upstream connection was closed to stop the work.")
	for _, ph := range [...]uint8{phaseWaiting, phaseStreaming} {
		w.sample("warden_client_disconnects_total", "phase", phaseNames[ph], float64(m.clientGone[ph].Load()))
	}
	var open int64
	if m.connsOpen != nil {
		open = m.connsOpen()
	}
	w.single("warden_client_connections_open", "gauge", "Client connections open on the proxy port now, idle keep-alive ones included (limit: WARDEN_MAX_CONNS).", float64(open))
	w.single("warden_client_connections_refused_total", "counter", "Client connections refused with 503 because WARDEN_MAX_CONNS were open.", float64(m.connsRefused.Load()))
	w.single("warden_auth_throttled_total", "counter", "Requests refused with 429 because their client failed to log in too often (WARDEN_AUTH_FAILURE_LIMIT).", float64(m.throttled.Load()))
	w.single("warden_auth_throttled_clients", "gauge", "Clients throttled now.", float64(m.throttledNow.Load()))
	w.single("warden_auth_previous_secret_total", "counter", "Requests accepted with the previous secret (WARDEN_PREVIOUS_PASSWORD) before its deadline; when it stays flat, clients have moved to the new one.", float64(m.previousSecret.Load()))
	w.single("warden_auth_previous_secret_deadline_timestamp_seconds", "gauge", "When the previous secret stops working (Unix time); 0 when there is none.", float64(m.previousUntil.Load())/1000)
	w.single("warden_secret_weak", "gauge", "1 when a configured secret is weak (fewer than 16 bytes, or about 64 bits by a simple estimate); a secret given as its SHA-256 digest cannot be judged.", float64(m.secretWeak.Load()))
	w.single("warden_websocket_tunnels_open", "gauge", "Websocket tunnels open now (also counted in warden_requests_in_flight).", float64(m.tunnelsOpen.Load()))
	w.single("warden_sse_heartbeats_total", "counter", "SSE keep-alive comments sent on silent event streams (WARDEN_SSE_HEARTBEAT).", float64(m.heartbeats.Load()))
	w.single("warden_upstream_up", "gauge", "1 when the last readiness probe reached the upstream, else 0.", float64(m.upstreamUp.Load()))
	w.single("warden_draining", "gauge", "1 once shutdown has begun.", float64(m.draining.Load()))
	w.family("warden_build_info", "gauge", "Always 1; the version label says which warden runs.")
	w.sample("warden_build_info", "version", m.version, 1)
	if m.configMode != "" {
		w.family("warden_config_info", "gauge", "Always 1; the labels say how this replica runs: mode (public or protected) and tls (true or false).")
		w.b = append(w.b, `warden_config_info{mode="`...)
		w.b = appendLabelValue(w.b, m.configMode)
		w.b = append(w.b, `",tls="`...)
		w.b = strconv.AppendBool(w.b, m.configTLS)
		w.b = append(w.b, "\"} 1\n"...)
	}
	m.appendRuntime(&w)
	return w.b
}

// runtimeSamples are the Go runtime figures exposed, read with
// runtime/metrics (no stop-the-world).
var runtimeSamples = []struct{ source, name, kind, help string }{
	{"/memory/classes/heap/objects:bytes", "go_memstats_heap_alloc_bytes", "gauge", "Bytes of allocated heap objects."},
	{"/memory/classes/total:bytes", "go_memstats_sys_bytes", "gauge", "Bytes of memory obtained from the OS."},
	{"/gc/cycles/total:gc-cycles", "go_gc_cycles_total", "counter", "Completed GC cycles."},
	{"/sched/gomaxprocs:threads", "go_sched_gomaxprocs_threads", "gauge", "The current runtime.GOMAXPROCS setting."},
}

func (m *Metrics) appendRuntime(w *textWriter) {
	samples := make([]metrics.Sample, len(runtimeSamples))
	for i, s := range runtimeSamples {
		samples[i].Name = s.source
	}
	metrics.Read(samples)
	// runtime.NumGoroutine, as client_golang: /sched/goroutines:goroutines
	// also counts the runtime's own goroutines and lags behind exits.
	w.single("go_goroutines", "gauge", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine()))
	for i, s := range runtimeSamples {
		var v float64
		switch samples[i].Value.Kind() {
		case metrics.KindUint64:
			v = float64(samples[i].Value.Uint64())
		case metrics.KindFloat64:
			v = samples[i].Value.Float64()
		default:
			continue
		}
		w.single(s.name, s.kind, s.help, v)
	}
	w.single("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", float64(m.start.UnixMilli())/1000)
	if p, err := procstat.Read("self"); err == nil {
		const ticks = 100 // USER_HZ on Linux
		w.single("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", float64(p.UTime+p.STime)/ticks)
		w.single("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", float64(p.RSS)*float64(os.Getpagesize()))
		w.single("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", float64(p.VSize))
	}
	if entries, err := os.ReadDir("/proc/self/fd"); err == nil {
		w.single("process_open_fds", "gauge", "Number of open file descriptors.", float64(len(entries)))
	}
}

// textWriter appends the text exposition format.
type textWriter struct{ b []byte }

func (w *textWriter) family(name, kind, help string) {
	w.b = append(w.b, "# HELP "...)
	w.b = append(w.b, name...)
	w.b = append(w.b, ' ')
	w.b = append(w.b, help...)
	w.b = append(w.b, "\n# TYPE "...)
	w.b = append(w.b, name...)
	w.b = append(w.b, ' ')
	w.b = append(w.b, kind...)
	w.b = append(w.b, '\n')
}

func (w *textWriter) single(name, kind, help string, v float64) {
	w.family(name, kind, help)
	w.b = append(w.b, name...)
	w.b = append(w.b, ' ')
	w.b = appendValue(w.b, v)
	w.b = append(w.b, '\n')
}

func (w *textWriter) sample(name, label, value string, v float64) {
	w.labelled(name, v, label, value)
}

func (w *textWriter) sample2(name, label1, value1, label2, value2 string, v float64) {
	w.labelled(name, v, label1, value1, label2, value2)
}

// labelled appends one sample with its labels, given as name, value pairs.
func (w *textWriter) labelled(name string, v float64, pairs ...string) {
	w.b = append(w.b, name...)
	w.b = append(w.b, '{')
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.b = append(w.b, pairs[i]...)
		w.b = append(w.b, `="`...)
		w.b = appendLabelValue(w.b, pairs[i+1])
		w.b = append(w.b, '"')
	}
	w.b = append(w.b, "} "...)
	w.b = appendValue(w.b, v)
	w.b = append(w.b, '\n')
}

func (w *textWriter) histogram(name, help string, h *histogram) {
	w.family(name, "histogram", help)
	var cumulative uint64
	for i, upper := range h.upper {
		cumulative += h.counts[i].Load()
		w.sample(name+"_bucket", "le", strconv.FormatFloat(upper, 'g', -1, 64), float64(cumulative))
	}
	cumulative += h.counts[len(h.upper)].Load()
	w.sample(name+"_bucket", "le", "+Inf", float64(cumulative))
	w.b = append(w.b, name...)
	w.b = append(w.b, "_sum "...)
	w.b = appendValue(w.b, float64(h.sumNs.Load())/1e9)
	w.b = append(w.b, '\n')
	w.b = append(w.b, name...)
	w.b = append(w.b, "_count "...)
	w.b = strconv.AppendUint(w.b, cumulative, 10)
	w.b = append(w.b, '\n')
}

func appendValue(b []byte, v float64) []byte {
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// appendLabelValue escapes a label value: backslash, double quote and line
// feed (the text format's rules).
func appendLabelValue(b []byte, s string) []byte {
	for i := range len(s) {
		switch c := s[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}
