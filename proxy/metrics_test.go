package proxy

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/paperspace/warden/auth"
)

// The text format, line by line (Prometheus exposition format 0.0.4).
var (
	helpLine   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$`)
	typeLine   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$`)
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)\})? (\S+)$`)
)

// parseExposition checks the format strictly and returns the samples by
// their full name with labels.
func parseExposition(t *testing.T, text string) map[string]float64 {
	t.Helper()
	samples := map[string]float64{}
	typed := map[string]string{}
	family := ""
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
			m := helpLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("line %d: bad HELP: %q", i+1, line)
			}
			family = m[1]
		case strings.HasPrefix(line, "# TYPE "):
			m := typeLine.FindStringSubmatch(line)
			if m == nil || m[1] != family {
				t.Fatalf("line %d: bad TYPE or not after its HELP: %q", i+1, line)
			}
			if _, dup := typed[family]; dup {
				t.Fatalf("line %d: %s described twice", i+1, family)
			}
			typed[family] = m[2]
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("line %d: bad sample: %q", i+1, line)
			}
			name := m[1]
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if name != family && base != family {
				t.Fatalf("line %d: sample %s outside its family %s", i+1, name, family)
			}
			v, err := strconv.ParseFloat(m[4], 64)
			if err != nil {
				t.Fatalf("line %d: bad value: %q", i+1, line)
			}
			key := name + m[2]
			if _, dup := samples[key]; dup {
				t.Fatalf("line %d: duplicate sample %s", i+1, key)
			}
			samples[key] = v
		}
	}
	return samples
}

func TestMetricsTextFormat(t *testing.T) {
	t.Parallel()
	m := NewMetrics(`v1 "quoted" \ back`)
	m.SetConfig("protected", true, time.UnixMilli(1_800_000_000_500))
	m.code(200).Inc()
	m.code(200).Inc()
	m.code(401).Inc()
	m.code(999).Inc() // clamped
	m.authFailures[auth.WrongPassword][auth.CarrierBearer].Inc()
	m.authAccepted[auth.CarrierAPIKey].Inc()
	m.upstreamError("timeout")
	m.upstreamError("no-such-kind")
	m.inFlight.Inc()
	m.duration.Observe(3 * time.Millisecond)
	m.duration.Observe(2 * time.Second)
	m.duration.Observe(10 * time.Minute)
	s := parseExposition(t, string(m.AppendText(nil)))
	for key, want := range map[string]float64{
		`warden_requests_total{code="200"}`:                                   2,
		`warden_requests_total{code="401"}`:                                   1,
		`warden_requests_total{code="599"}`:                                   1,
		`warden_auth_failures_total{reason="wrong_password",scheme="bearer"}`: 1,
		`warden_auth_failures_total{reason="wrong_password",scheme="basic"}`:  0,
		`warden_auth_failures_total{reason="missing",scheme="none"}`:          0,
		`warden_auth_failures_total{reason="scheme",scheme="other"}`:          0,
		`warden_auth_accepted_total{scheme="x-api-key"}`:                      1,
		`warden_auth_accepted_total{scheme="basic"}`:                          0,
		`warden_upstream_errors_total{kind="timeout"}`:                        1,
		`warden_requests_in_flight`:                                           1,
		`warden_request_duration_seconds_bucket{le="0.001"}`:                  0,
		`warden_request_duration_seconds_bucket{le="0.005"}`:                  1,
		`warden_request_duration_seconds_bucket{le="2.5"}`:                    2,
		`warden_request_duration_seconds_bucket{le="300"}`:                    2,
		`warden_request_duration_seconds_bucket{le="+Inf"}`:                   3,
		`warden_request_duration_seconds_count`:                               3,
		`warden_request_duration_seconds_sum`:                                 602.003,
		`warden_build_info{version="v1 \"quoted\" \\ back"}`:                  1,
		`warden_config_info{mode="protected",tls="true"}`:                     1,
		`warden_auth_previous_secret_deadline_timestamp_seconds`:              1_800_000_000.5,
		`process_open_fds`: -1, // present
		`go_goroutines`:    -1,
	} {
		got, ok := s[key]
		if !ok {
			t.Errorf("missing %s", key)
			continue
		}
		if want >= 0 && got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	if _, ok := s[`warden_requests_total{code="404"}`]; ok {
		t.Error("a status code never answered is exposed")
	}
}

func TestMetricsRecordingAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	m := NewMetrics("test")
	if n := testing.AllocsPerRun(100, func() {
		m.code(200).Inc()
		m.inFlight.Inc()
		m.inFlight.Dec()
		m.duration.Observe(time.Millisecond)
		m.upstreamError("busy")
	}); n != 0 {
		t.Fatalf("recording allocates %.0f times", n)
	}
}

// The reference parser, Prometheus's own (test-only: it never enters the
// binary), reads every metric warden writes, with the types warden says.
func TestMetricsParseWithThePrometheusReferenceParser(t *testing.T) {
	t.Parallel()
	m := NewMetrics(`v1 "quoted" \ back`)
	m.SetConfig("protected", true, time.UnixMilli(1_800_000_000_500))
	m.code(200).Inc()
	m.authFailures[auth.Missing][auth.CarrierNone].Inc()
	m.upstreamError("body")
	m.duration.Observe(3 * time.Millisecond)
	m.upstreamWait.Observe(time.Second)
	text := m.AppendText(nil)
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("the reference parser refuses warden's metrics: %v\n%s", err, text)
	}
	for name, want := range map[string]dto.MetricType{
		"warden_requests_total":                   dto.MetricType_COUNTER,
		"warden_request_duration_seconds":         dto.MetricType_HISTOGRAM,
		"warden_upstream_response_header_seconds": dto.MetricType_HISTOGRAM,
		"warden_requests_in_flight":               dto.MetricType_GAUGE,
		"warden_auth_failures_total":              dto.MetricType_COUNTER,
		"warden_auth_accepted_total":              dto.MetricType_COUNTER,
		"warden_build_info":                       dto.MetricType_GAUGE,
		"process_open_fds":                        dto.MetricType_GAUGE,
		"go_goroutines":                           dto.MetricType_GAUGE,
	} {
		f, ok := families[name]
		if !ok {
			t.Errorf("the reference parser found no %s", name)
			continue
		}
		if f.GetType() != want {
			t.Errorf("%s is a %v, want %v", name, f.GetType(), want)
		}
	}
	h := families["warden_request_duration_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 0.003 {
		t.Errorf("duration histogram: count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
}
