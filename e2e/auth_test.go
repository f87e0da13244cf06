package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Every way of failing gets the same 401, and nothing reaches the upstream.
func TestRefusedRequestsGetTheSame401AndNeverReachTheUpstream(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	// Throttling off: this test fails on purpose more often than its limit.
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{"WARDEN_AUTH_FAILURE_LIMIT": "0"}))
	before := up.stats(t).Requests

	cases := map[string]string{
		"missing":             "",
		"wrong password":      basicAuth(testUser, "guess"),
		"wrong user":          basicAuth("admin", testPassword),
		"password prefix":     basicAuth(testUser, testPassword[:5]),
		"another scheme":      "Bearer " + testPassword,
		"malformed base64":    "Basic !!!notbase64",
		"no colon":            "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+testPassword)),
		"scheme only":         "Basic",
		"empty credentials":   "Basic ",
		"password in clear":   "Basic " + testUser + ":" + testPassword,
		"trailing garbage":    basicAuth(testUser, testPassword) + " x",
		"digest with user":    `Digest username="paperspace"`,
		"user with extra one": basicAuth(testUser+"x", testPassword),
	}
	var firstBody []byte
	for name, authz := range cases {
		for _, method := range []string{"GET", "POST"} {
			h := http.Header{}
			if authz != "" {
				h.Set("Authorization", authz)
			}
			var body io.Reader
			if method == "POST" {
				body = strings.NewReader(`{"prompt":"hello"}`)
			}
			resp, b := do(t, method, w.url("/v1/completions"), h, body)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s: status %d, want 401", name, method, resp.StatusCode)
			}
			if got, want := resp.Header.Get("WWW-Authenticate"), `Basic realm="warden", charset="UTF-8"`; got != want {
				t.Errorf("%s: WWW-Authenticate = %q, want %q", name, got, want)
			}
			if got := resp.Header.Get("X-Warden-Error"); got != "unauthorized" {
				t.Errorf("%s: X-Warden-Error = %q, want unauthorized", name, got)
			}
			checkShouldRetry(t, resp.Header, "unauthorized")
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("%s: Content-Type = %q", name, got)
			}
			var v map[string]any
			if err := json.Unmarshal(b, &v); err != nil || v["error"] != "unauthorized" {
				t.Errorf("%s: body %q is not warden's JSON error", name, b)
			}
			if firstBody == nil {
				firstBody = b
			} else if string(b) != string(firstBody) {
				t.Errorf("%s: body %q differs from %q: failures must look the same", name, b, firstBody)
			}
			if strings.Contains(string(b), testPassword) || strings.Contains(string(b), "guess") {
				t.Errorf("%s: body %q quotes a credential", name, b)
			}
		}
	}
	if after := up.stats(t).Requests; after != before {
		t.Fatalf("upstream received %d requests from refused clients", after-before)
	}
}

func TestRightCredentialsReachTheUpstreamWithoutThem(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, protectedEnv(up.addr))
	for _, authz := range []string{
		basicAuth(testUser, testPassword),
		"basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPassword)),
		"BASIC " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPassword)),
	} {
		h := http.Header{"Authorization": {authz}, "Proxy-Authorization": {"Basic c2VjcmV0"}}
		resp, b := do(t, "GET", w.url("/echo"), h, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%q: status %d: %s", authz, resp.StatusCode, b)
		}
		var e echoReply
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"Authorization", "Proxy-Authorization"} {
			if v, ok := e.Header[name]; ok {
				t.Errorf("upstream saw %s: %q", name, v)
			}
		}
	}
}

// A client that announces its body with Expect: 100-continue and has the
// wrong credentials is refused before it sends the body.
func TestExpectContinueIsRefusedBeforeTheBody(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, protectedEnv(up.addr))
	before := up.stats(t).Requests

	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\nExpect: 100-continue\r\n"+
		"Authorization: "+basicAuth(testUser, "wrong")+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401 (and no 100 Continue)", resp.StatusCode)
	}
	if resp.Header.Get("WWW-Authenticate") == "" || resp.Header.Get("X-Warden-Error") != "unauthorized" {
		t.Errorf("401 lacks its headers: %v", resp.Header)
	}
	if after := up.stats(t).Requests; after != before {
		t.Fatalf("upstream received the refused request")
	}

	// With the right credentials the client gets 100 Continue, then the answer.
	c2, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c2, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"+
		"Authorization: "+basicAuth(testUser, testPassword)+"\r\n\r\n")
	br := bufio.NewReader(c2)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("first line %q, %v: want 100 Continue", line, err)
	}
	br.ReadString('\n') // blank line after 100 Continue
	io.WriteString(c2, "hello")
	resp2, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp2.Body)
	var e echoReply
	if err := json.Unmarshal(b, &e); err != nil || e.BodyBytes != 5 {
		t.Fatalf("upstream saw %+v (%v), want the 5-byte body", e, err)
	}
	if _, ok := e.Header["Expect"]; ok {
		t.Errorf("Expect was forwarded; warden answers it")
	}
}

func TestPublicModeForwardsEverythingAndWarns(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, map[string]string{"WARDEN_UPSTREAM": "http://" + up.addr})
	resp, _ := do(t, "GET", w.url("/anything"), nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200 in public mode", resp.StatusCode)
	}
	var warned bool
	for _, l := range w.logLines(t) {
		if l["level"] == "warn" && strings.Contains(l["message"].(string), "public mode") {
			warned = true
		}
		if l["message"] == "warden started" && l["mode"] != "public" {
			t.Errorf("start line mode = %v", l["mode"])
		}
	}
	if !warned {
		t.Fatal("no warning about public mode in the log")
	}
}

// The secret is read once: changing the file later changes nothing until a
// restart.
func TestSecretFileIsReadOnceAtStart(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("first-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWarden(t, map[string]string{
		"WARDEN_UPSTREAM":      "http://" + up.addr,
		"WARDEN_PASSWORD_FILE": file,
	})
	check := func(password string, want int) {
		t.Helper()
		resp, _ := do(t, "GET", w.url("/"), http.Header{"Authorization": {basicAuth(testUser, password)}}, nil)
		if resp.StatusCode != want {
			t.Fatalf("password %q: status %d, want %d", password, resp.StatusCode, want)
		}
	}
	check("first-secret", 200) // the trailing newline was trimmed
	check("first-secret\n", 401)
	if err := os.WriteFile(file, []byte("second-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	check("first-secret", 200)
	check("second-secret", 401)

	// A restart (a redeploy) picks up the new secret.
	w.signal(os.Interrupt)
	w.wait(20 * time.Second)
	w2 := startWarden(t, map[string]string{
		"WARDEN_UPSTREAM":      "http://" + up.addr,
		"WARDEN_PASSWORD_FILE": file,
		"WARDEN_LISTEN":        w.addr,
		"WARDEN_ADMIN_LISTEN":  w.admin,
	})
	_ = w2
	check("second-secret", 200)
	check("first-secret", 401)
}

// echoReply mirrors what the test upstream's echo endpoint returns.
type echoReply struct {
	Method     string              `json:"method"`
	RequestURI string              `json:"request_uri"`
	Proto      string              `json:"proto"`
	Host       string              `json:"host"`
	Header     map[string][]string `json:"header"`
	BodyBytes  int64               `json:"body_bytes"`
	BodySHA256 string              `json:"body_sha256"`
	Chunked    bool                `json:"chunked"`
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
