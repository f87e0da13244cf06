package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The one secret in each carrier that clients use (WARDEN_AUTH_SCHEMES):
// Basic, Bearer (the OpenAI SDKs' api_key) and x-api-key (Anthropic's).

// tokenSecret is a secret a Bearer token can carry (RFC 6750's syntax).
const tokenSecret = "sk-warden_T0ken.with~every+char/of=="

func carriersEnv(upstream, schemes string) map[string]string {
	return map[string]string{
		"WARDEN_UPSTREAM":           "http://" + upstream,
		"WARDEN_PASSWORD":           tokenSecret,
		"WARDEN_AUTH_SCHEMES":       schemes,
		"WARDEN_AUTH_FAILURE_LIMIT": "0",
		"WARDEN_LOG_LEVEL":          "debug",
	}
}

func TestEveryEnabledCarrierReachesTheUpstreamWithoutTheCredential(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, carriersEnv(up.addr, "basic,bearer,x-api-key"))
	for name, h := range map[string]http.Header{
		"basic":              {"Authorization": {basicAuth(testUser, tokenSecret)}},
		"bearer":             {"Authorization": {"Bearer " + tokenSecret}},
		"bearer, lower case": {"Authorization": {"bearer " + tokenSecret}},
		"x-api-key":          {"X-Api-Key": {tokenSecret}},
	} {
		resp, b := do(t, "GET", w.url("/echo"), h, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", name, resp.StatusCode, b)
		}
		var e echoReply
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		for _, header := range []string{"Authorization", "X-Api-Key"} {
			if v, ok := e.Header[header]; ok {
				t.Errorf("%s: the upstream saw %s: %q", name, header, v)
			}
		}
	}
	metrics := scrapeMetrics(t, w)
	for _, scheme := range []string{"basic", "bearer", "x-api-key"} {
		want := 1.0
		if scheme == "bearer" {
			want = 2
		}
		if got := metricValue(t, metrics, `warden_auth_accepted_total{scheme="`+scheme+`"}`); got != want {
			t.Errorf("accepted %s: %v, want %v", scheme, got, want)
		}
	}
	checkLogsHideSecret(t, w, tokenSecret)
}

func TestCarriersNotEnabledAreRefusedAndXAPIKeyIsThenAnOrdinaryHeader(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, carriersEnv(up.addr, "basic"))
	before := up.stats(t).Requests
	for name, h := range map[string]http.Header{
		"bearer":    {"Authorization": {"Bearer " + tokenSecret}},
		"x-api-key": {"X-Api-Key": {tokenSecret}},
	} {
		resp, _ := do(t, "GET", w.url("/echo"), h, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with basic only: status %d, want 401", name, resp.StatusCode)
		}
		if got := resp.Header.Values("WWW-Authenticate"); len(got) != 1 || !strings.HasPrefix(got[0], "Basic ") {
			t.Errorf("%s: challenges %q, want Basic alone", name, got)
		}
	}
	if after := up.stats(t).Requests; after != before {
		t.Fatalf("the upstream received %d refused requests", after-before)
	}
	// Not a carrier here: the model's own key passes through.
	h := http.Header{"Authorization": {basicAuth(testUser, tokenSecret)}, "X-Api-Key": {"the-models-own-key"}}
	resp, b := do(t, "GET", w.url("/echo"), h, nil)
	var e echoReply
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &e) != nil {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if got := e.Header["X-Api-Key"]; len(got) != 1 || got[0] != "the-models-own-key" {
		t.Errorf("the upstream saw x-api-key %q, want the model's own key", got)
	}
	metrics := scrapeMetrics(t, w)
	for key, want := range map[string]float64{
		`warden_auth_failures_total{reason="scheme",scheme="bearer"}`:    1,
		`warden_auth_failures_total{reason="scheme",scheme="x-api-key"}`: 1,
		`warden_auth_accepted_total{scheme="basic"}`:                     1,
	} {
		if got := metricValue(t, metrics, key); got != want {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
}

func TestCarrierPrecedenceAndFailuresLookTheSame(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, carriersEnv(up.addr, "basic,bearer,x-api-key"))
	before := up.stats(t).Requests
	type header = [2]string
	cases := map[string][]header{
		"nothing":                               nil,
		"wrong bearer":                          {{"Authorization", "Bearer nope"}},
		"bearer prefix of the secret":           {{"Authorization", "Bearer " + tokenSecret[:10]}},
		"bearer with the user name":             {{"Authorization", "Bearer " + testUser + ":" + tokenSecret}},
		"bearer without a token":                {{"Authorization", "Bearer"}},
		"bearer, not token syntax":              {{"Authorization", "Bearer " + tokenSecret + " x"}},
		"wrong x-api-key":                       {{"X-Api-Key", "nope"}},
		"x-api-key with a scheme":               {{"X-Api-Key", "Bearer " + tokenSecret}},
		"empty x-api-key":                       {{"X-Api-Key", ""}},
		"two x-api-keys, both right":            {{"X-Api-Key", tokenSecret}, {"X-Api-Key", tokenSecret}},
		"two x-api-keys, one right":             {{"X-Api-Key", "nope"}, {"X-Api-Key", tokenSecret}},
		"wrong Authorization, right x-api-key":  {{"Authorization", "Bearer nope"}, {"X-Api-Key", tokenSecret}},
		"empty Authorization, right x-api-key":  {{"Authorization", ""}, {"X-Api-Key", tokenSecret}},
		"unknown scheme, right x-api-key":       {{"Authorization", "Token " + tokenSecret}, {"X-Api-Key", tokenSecret}},
		"basic with the secret as user":         {{"Authorization", basicAuth(tokenSecret, tokenSecret)}},
		"right secret in Proxy-Authorization":   {{"Proxy-Authorization", "Bearer " + tokenSecret}},
		"right secret in an Api-Key header":     {{"Api-Key", tokenSecret}},
		"x-api-key as the Authorization scheme": {{"Authorization", "x-api-key " + tokenSecret}},
	}
	var first string
	for name, headers := range cases {
		var req strings.Builder
		req.WriteString("GET /echo HTTP/1.1\r\nHost: w\r\n")
		for _, h := range headers {
			req.WriteString(h[0] + ": " + h[1] + "\r\n")
		}
		req.WriteString("Connection: close\r\n\r\n")
		raw := rawExchange(t, w.addr, req.String(), 5*time.Second)
		if statusOf(raw) != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401:\n%s", name, statusOf(raw), raw)
			continue
		}
		// Every failure the same: the challenges and the body (the Date
		// header aside).
		var same []string
		for _, line := range strings.Split(raw, "\r\n") {
			if !strings.HasPrefix(line, "Date:") {
				same = append(same, line)
			}
		}
		got := strings.Join(same, "\n")
		if first == "" {
			first = got
		} else if got != first {
			t.Errorf("%s: the 401 differs:\n%s\nfrom\n%s", name, got, first)
		}
		if strings.Contains(raw, tokenSecret) {
			t.Errorf("%s: the 401 quotes the secret", name)
		}
	}
	for _, want := range []string{`WWW-Authenticate: Basic realm="warden", charset="UTF-8"`, `WWW-Authenticate: Bearer realm="warden"`} {
		if !strings.Contains(strings.ToLower(first), strings.ToLower(want)) {
			t.Errorf("the 401 lacks %q:\n%s", want, first)
		}
	}
	if after := up.stats(t).Requests; after != before {
		t.Fatalf("the upstream received %d refused requests", after-before)
	}
	checkLogsHideSecret(t, w, tokenSecret)
	if out := w.out.String(); !strings.Contains(out, `"scheme":"x-api-key"`) || !strings.Contains(out, `"scheme":"bearer"`) {
		t.Errorf("the debug log does not say which carrier a refusal used:\n%s", out)
	}
}

// Failures in every carrier count together towards the throttle.
func TestThrottleCountsEveryCarrierTogether(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	env := carriersEnv(up.addr, "basic,bearer,x-api-key")
	env["WARDEN_AUTH_FAILURE_LIMIT"] = "3"
	w := startWarden(t, env)
	for _, h := range []http.Header{
		{"Authorization": {basicAuth(testUser, "nope")}},
		{"Authorization": {"Bearer nope"}},
		{"X-Api-Key": {"nope"}},
	} {
		if resp, _ := do(t, "GET", w.url("/echo"), h, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
	}
	resp, _ := do(t, "GET", w.url("/echo"), http.Header{"X-Api-Key": {tokenSecret}}, nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after three failures in three carriers: status %d, want 429", resp.StatusCode)
	}
}

func TestAPIKeyAloneStillChallenges(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, carriersEnv(up.addr, "x-api-key"))
	resp, _ := do(t, "GET", w.url("/echo"), http.Header{"Authorization": {basicAuth(testUser, tokenSecret)}}, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("basic with x-api-key alone: status %d, want 401", resp.StatusCode)
	}
	if got := resp.Header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != `X-API-Key realm="warden"` {
		t.Errorf("challenges %q", got)
	}
	if resp, b := do(t, "GET", w.url("/echo"), http.Header{"X-Api-Key": {tokenSecret}}, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("x-api-key: status %d: %s", resp.StatusCode, b)
	}
}

// checkLogsHideSecret checks that no log line, at any level, holds the
// secret or its base64.
func checkLogsHideSecret(t *testing.T, w *wardenProc, secret string) {
	t.Helper()
	out := w.out.String()
	for _, s := range []string{secret, basicAuth(testUser, secret)[len("Basic "):]} {
		if strings.Contains(out, s) {
			t.Errorf("warden's log holds a credential:\n%s", out)
		}
	}
}

func scrapeMetrics(t *testing.T, w *wardenProc) string {
	t.Helper()
	resp, b := do(t, "GET", w.adminURL("/metrics"), nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return string(b)
}
