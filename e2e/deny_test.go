package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// WARDEN_DENY_PATHS: the model server's control routes are refused even
// with valid credentials, whatever the spelling of the path; allowed paths
// still arrive byte for byte.
func TestDenyPathsRefuseEverySpellingAndForwardTheRestByteForByte(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_DENY_PATHS": "/pause,/sleep,/collective_rpc,/admin/",
	}))
	authz := "Authorization: " + basicAuth(testUser, testPassword) + "\r\nConnection: close\r\n"
	before := up.stats(t).Requests
	for _, target := range []string{
		"/pause", "/pause?x=1", "/pause/", "/pause/now", "/%70ause", "/%70%61%75%73%65", "/%2570ause",
		"//pause", "///pause", "/./pause", "/v1/../pause", "/v1/%2e%2e/pause", "/v1/%2E%2E/pause",
		"/v1%2f..%2fpause", "/v1/..%5cpause", "/../../pause", "/sleep", "/collective_rpc", "/admin/x",
		"http://model.example/pause", "http://model.example//v1/../sleep?q=1",
	} {
		for _, method := range []string{"GET", "POST"} {
			req := method + " " + target + " HTTP/1.1\r\nHost: w\r\n" + authz
			if method == "POST" {
				req += "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
			} else {
				req += "\r\n"
			}
			raw := rawExchange(t, w.addr, req, 5*time.Second)
			if raw == "" {
				t.Fatalf("%s %s: no answer", method, target)
			}
			resp := parseRaw(t, raw)
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Warden-Error") != "path_denied" {
				t.Errorf("%s %s: %d %q, want 403 path_denied", method, target, resp.StatusCode, resp.Header.Get("X-Warden-Error"))
				continue
			}
			checkShouldRetry(t, resp.Header, "path_denied")
			var v struct{ Error string }
			if json.Unmarshal([]byte(raw[strings.Index(raw, "\r\n\r\n")+4:]), &v) != nil || v.Error != "path_denied" {
				t.Errorf("%s %s: body is not warden's JSON: %q", method, target, raw)
			}
		}
	}
	// The gate's neighbours: a body announced with Expect: 100-continue is
	// refused before it is sent (no 100 first), and a websocket upgrade is
	// refused before any tunnel.
	for name, req := range map[string]string{
		"Expect: 100-continue": "POST /%70ause HTTP/1.1\r\nHost: w\r\n" + authz + "Content-Length: 10\r\nExpect: 100-continue\r\n\r\n",
		"websocket upgrade": "GET //pause HTTP/1.1\r\nHost: w\r\n" + authz + "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	} {
		raw := rawExchange(t, w.addr, req, 5*time.Second)
		if !strings.HasPrefix(raw, "HTTP/1.1 403 ") || !strings.Contains(raw, "path_denied") {
			t.Errorf("%s to a denied path: %q, want 403 path_denied and nothing before it", name, raw)
		}
	}
	// Without credentials: the usual 401, which does not disclose the list.
	if raw := rawExchange(t, w.addr, "GET /pause HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n", 5*time.Second); statusOf(raw) != 401 {
		t.Errorf("/pause without credentials: %d, want 401", statusOf(raw))
	}
	if after := up.stats(t).Requests; after != before {
		t.Fatalf("the upstream received %d requests to denied paths", after-before)
	}

	// Allowed, odd but harmless spellings arrive as sent.
	for _, target := range []string{
		"/pauses", "/v1/pause", "/PAUSE", "/admin", "/v1/chat/completions?stream=true",
		"/v1/models/%7Euser?a=%2F&b=..%2F..%2Fpause", "/echo%20with%20spaces", "/%2e%2e",
	} {
		raw := rawExchange(t, w.addr, "GET "+target+" HTTP/1.1\r\nHost: w\r\n"+authz+"\r\n", 5*time.Second)
		if statusOf(raw) != 200 {
			t.Errorf("GET %s: %d, want 200 from the upstream", target, statusOf(raw))
			continue
		}
		var e echoReply
		if err := json.Unmarshal([]byte(raw[strings.Index(raw, "\r\n\r\n")+4:]), &e); err != nil {
			t.Errorf("GET %s: %v in %q", target, err, raw)
			continue
		}
		if e.RequestURI != target {
			t.Errorf("GET %s: the upstream saw %q", target, e.RequestURI)
		}
	}
}

func TestDenyPathsThatDenyEverythingAreAConfigurationError(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"/", "pause", "/pause,//"} {
		w := startWardenNoWait(t, map[string]string{"WARDEN_PASSWORD": "x", "WARDEN_DENY_PATHS": v})
		if code := w.wait(3 * time.Second); code == 0 {
			t.Errorf("WARDEN_DENY_PATHS=%q: exit code 0", v)
		}
		if !strings.Contains(w.out.String(), "WARDEN_DENY_PATHS") {
			t.Errorf("WARDEN_DENY_PATHS=%q: the message does not name it:\n%s", v, w.out.String())
		}
	}
}

// parseRaw reads the first response in raw.
func parseRaw(t *testing.T, raw string) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("%v in %q", err, raw)
	}
	return resp
}
