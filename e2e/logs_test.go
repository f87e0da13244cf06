package e2e

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// At no level may the secret, the Authorization header or an attempted
// password appear in the log.
func TestLogsNeverShowTheSecretOrAttemptedPasswords(t *testing.T) {
	t.Parallel()
	const secret = "Sup3r-S3cret:v@lue with spaces ünï"
	attempts := []string{"attempt-one-1234", "attempt:two:5678", secret + "x", secret[:10]}
	for _, source := range []string{"env", "file"} {
		t.Run(source, func(t *testing.T) {
			up := startUpstream(t)
			env := map[string]string{
				"WARDEN_UPSTREAM":           "http://" + up.addr,
				"WARDEN_LOG_LEVEL":          "trace",
				"WARDEN_ACCESS_LOG":         "true",
				"WARDEN_DRAIN_DELAY":        "0s",
				"WARDEN_AUTH_FAILURE_LIMIT": "0",
			}
			if source == "env" {
				env["WARDEN_PASSWORD"] = secret
			} else {
				file := filepath.Join(t.TempDir(), "secret")
				os.WriteFile(file, []byte(secret+"\n"), 0o600)
				env["WARDEN_PASSWORD_FILE"] = file
			}
			w := startWarden(t, env)
			forbidden := []string{secret, base64.StdEncoding.EncodeToString([]byte(testUser + ":" + secret))}
			send := func(authz string) {
				do(t, "GET", w.url("/echo?q=1"), http.Header{"Authorization": {authz}}, nil)
			}
			send(basicAuth(testUser, secret))
			for _, a := range attempts {
				send(basicAuth(testUser, a))
				send(basicAuth("admin", a))
				send("Bearer " + a)
				send("Basic " + a) // not base64: the raw attempt
				forbidden = append(forbidden, a, base64.StdEncoding.EncodeToString([]byte(testUser+":"+a)))
			}
			// Malformed and oversized requests, which fasthttp itself rejects.
			rawExchange(t, w.addr, "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "+
				base64.StdEncoding.EncodeToString([]byte(testUser+":"+attempts[0]))+"\r\nX: \x00\r\n\r\n", 2*time.Second)
			rawExchange(t, w.addr, "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "+attempts[1]+"\r\nX-Big: "+
				strings.Repeat("a", 40000)+"\r\n\r\n", 2*time.Second)
			// An upstream failure with credentials in flight.
			up.kill()
			send(basicAuth(testUser, secret))
			w.signal(syscall.SIGTERM)
			w.wait(15 * time.Second)

			out := w.out.String()
			for _, f := range forbidden {
				if strings.Contains(out, f) {
					t.Errorf("the log contains %q", f)
				}
			}
			if strings.Contains(strings.ToLower(out), "authorization: ") {
				t.Errorf("the log contains an Authorization header")
			}
			var access, started int
			for _, l := range w.logLines(t) {
				switch l["message"] {
				case "request":
					access++
					for _, field := range []string{"method", "path", "status", "duration_ms", "bytes", "client"} {
						if _, ok := l[field]; !ok {
							t.Errorf("access line lacks %s: %v", field, l)
						}
					}
					if strings.Contains(l["path"].(string), "?") {
						t.Errorf("access line logs the query: %v", l["path"])
					}
				case "warden started":
					started++
					for _, field := range []string{"mode", "upstream", "listen", "admin_listen", "version", "secret_fingerprint"} {
						if _, ok := l[field]; !ok {
							t.Errorf("start line lacks %s: %v", field, l)
						}
					}
				}
			}
			if started != 1 {
				t.Errorf("%d start lines, want 1", started)
			}
			if access < 1+4*len(attempts) {
				t.Errorf("%d access lines for %d requests", access, 1+4*len(attempts))
			}
		})
	}
}

func TestAccessLogCanBeSwitchedOff(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_ACCESS_LOG": "false", "WARDEN_LOG_LEVEL": "info",
	}))
	do(t, "GET", w.url("/echo"), authHeader(), nil)
	do(t, "GET", w.url("/echo"), nil, nil)
	for _, l := range w.logLines(t) {
		if l["message"] == "request" {
			t.Fatalf("access line with WARDEN_ACCESS_LOG=false: %v", l)
		}
	}
}

func TestStartLineShowsAFingerprintThatTellsSecretsApart(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	fingerprint := func(secret string) string {
		w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{"WARDEN_PASSWORD": secret}))
		for _, l := range w.logLines(t) {
			if l["message"] == "warden started" {
				return l["secret_fingerprint"].(string)
			}
		}
		t.Fatal("no start line")
		return ""
	}
	a1, a2, b := fingerprint("secret-a"), fingerprint("secret-a"), fingerprint("secret-b")
	if a1 != a2 || a1 == b || a1 == "" {
		t.Fatalf("fingerprints: %q %q %q; want equal for the same secret, different otherwise", a1, a2, b)
	}
}
