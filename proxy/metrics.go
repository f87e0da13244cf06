package proxy

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/paperspace/warden/auth"
)

// Metrics are warden's Prometheus metrics. Every series the request path
// touches is resolved once, so that recording costs a few atomic adds and
// no allocation.
type Metrics struct {
	Registry *prometheus.Registry

	requests         *prometheus.CounterVec
	byCode           [600]atomic.Pointer[prometheus.Counter]
	authFailures     [len(auth.Results)]prometheus.Counter
	upstreamErrors   *prometheus.CounterVec
	inFlight         prometheus.Gauge
	duration         prometheus.Histogram
	upstreamWait     prometheus.Histogram
	clientGone       prometheus.Counter
	throttled        prometheus.Counter
	throttledClients prometheus.Gauge
	tunnelsOpen      prometheus.Gauge
	heartbeats       prometheus.Counter
	config           *prometheus.GaugeVec
	previousUntil    prometheus.Gauge
	previousSecret   prometheus.Counter
	upstreamUp       prometheus.Gauge
	draining         prometheus.Gauge
}

// NewMetrics registers warden's metrics, and the Go runtime and process
// collectors, on a new registry.
func NewMetrics(version string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_requests_total",
			Help: "Requests answered on the proxy port, by HTTP status code (warden's own answers included).",
		}, []string{"code"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warden_upstream_errors_total",
			Help: "Failed exchanges with the upstream, by kind: connect, connect_timeout, timeout, busy, protocol, body.",
		}, []string{"kind"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "warden_requests_in_flight",
			Help: "Requests being served on the proxy port, streams included.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "warden_request_duration_seconds",
			Help:    "Time from the request's arrival to the last byte of the response, streams included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		upstreamWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "warden_upstream_response_header_seconds",
			Help:    "Time from sending the request upstream to receiving the upstream's response headers.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		clientGone: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_client_disconnects_total",
			Help: "Responses cut short because the client went away; the upstream connection was closed to stop the work.",
		}),
		previousSecret: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_auth_previous_secret_total",
			Help: "Requests accepted with the previous secret (WARDEN_PREVIOUS_PASSWORD) before its deadline; when it stays flat, clients have moved to the new one.",
		}),
		tunnelsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "warden_websocket_tunnels_open",
			Help: "Websocket tunnels open now (also counted in warden_requests_in_flight).",
		}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_auth_throttled_total",
			Help: "Requests refused with 429 because their client failed to log in too often (WARDEN_AUTH_FAILURE_LIMIT).",
		}),
		throttledClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "warden_auth_throttled_clients",
			Help: "Clients throttled now.",
		}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warden_sse_heartbeats_total",
			Help: "SSE keep-alive comments sent on silent event streams (WARDEN_SSE_HEARTBEAT).",
		}),
		config: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "warden_config_info",
			Help: "Always 1; the labels say how this replica runs: mode (public or protected) and tls (true or false).",
		}, []string{"mode", "tls"}),
		previousUntil: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "warden_auth_previous_secret_deadline_timestamp_seconds",
			Help: "When the previous secret stops working (Unix time); 0 when there is none.",
		}),
		upstreamUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "warden_upstream_up",
			Help: "1 when the last readiness probe reached the upstream, else 0.",
		}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "warden_draining",
			Help: "1 once shutdown has begun.",
		}),
	}
	authFailures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warden_auth_failures_total",
		Help: "Requests refused with 401, by reason: missing, scheme, malformed, wrong_user, wrong_password.",
	}, []string{"reason"})
	for _, r := range auth.Results {
		if !r.Accepted() {
			m.authFailures[r] = authFailures.WithLabelValues(r.String())
		}
	}
	for _, kind := range []string{"connect", "connect_timeout", "timeout", "busy", "protocol", "body"} {
		m.upstreamErrors.WithLabelValues(kind)
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "warden_build_info",
		Help: "Always 1; the version label says which warden runs.",
	}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	reg.MustRegister(m.requests, authFailures, m.upstreamErrors, m.inFlight, m.duration,
		m.upstreamWait, m.clientGone, m.throttled, m.throttledClients, m.tunnelsOpen, m.heartbeats, m.config, m.previousUntil, m.previousSecret, m.upstreamUp, m.draining, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetConfig records how this replica runs, for warden_config_info and the
// previous secret's deadline (zero: none).
func (m *Metrics) SetConfig(mode string, tls bool, previousUntil time.Time) {
	m.config.WithLabelValues(mode, strconv.FormatBool(tls)).Set(1)
	if !previousUntil.IsZero() {
		m.previousUntil.Set(float64(previousUntil.UnixMilli()) / 1000)
	}
}

// code returns the counter for one status code, creating it on first use.
func (m *Metrics) code(status int) prometheus.Counter {
	if status < 0 || status >= len(m.byCode) {
		return m.requests.WithLabelValues(strconv.Itoa(status))
	}
	if c := m.byCode[status].Load(); c != nil {
		return *c
	}
	c := m.requests.WithLabelValues(strconv.Itoa(status))
	m.byCode[status].Store(&c)
	return c
}

func (m *Metrics) upstreamError(kind string) {
	m.upstreamErrors.WithLabelValues(kind).Inc()
}
