package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Bad configuration exits non-zero within a second, with one message that
// names every bad variable.
func TestBadConfigurationExitsNamingTheVariable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"bad duration", map[string]string{"WARDEN_UPSTREAM_TIMEOUT": "soon"}, []string{"WARDEN_UPSTREAM_TIMEOUT"}},
		{"negative duration", map[string]string{"WARDEN_DRAIN_DELAY": "-1s"}, []string{"WARDEN_DRAIN_DELAY"}},
		{"bad mode", map[string]string{"WARDEN_MODE": "open"}, []string{"WARDEN_MODE"}},
		{"protected without secret", map[string]string{"WARDEN_MODE": "protected"}, []string{"WARDEN_MODE"}},
		{"public with secret", map[string]string{"WARDEN_MODE": "public", "WARDEN_PASSWORD": "x"}, []string{"WARDEN_MODE"}},
		{"empty password", map[string]string{"WARDEN_PASSWORD": ""}, []string{"WARDEN_PASSWORD"}},
		{"both secrets", map[string]string{"WARDEN_PASSWORD": "x", "WARDEN_PASSWORD_FILE": empty}, []string{"WARDEN_PASSWORD_FILE"}},
		{"missing file", map[string]string{"WARDEN_PASSWORD_FILE": filepath.Join(dir, "nope")}, []string{"WARDEN_PASSWORD_FILE"}},
		{"empty file", map[string]string{"WARDEN_PASSWORD_FILE": empty}, []string{"WARDEN_PASSWORD_FILE"}},
		{"https upstream", map[string]string{"WARDEN_UPSTREAM": "https://127.0.0.1:8000"}, []string{"WARDEN_UPSTREAM"}},
		{"upstream with path", map[string]string{"WARDEN_UPSTREAM": "http://127.0.0.1:8000/v1"}, []string{"WARDEN_UPSTREAM"}},
		{"bad listen", map[string]string{"WARDEN_LISTEN": "8080"}, []string{"WARDEN_LISTEN"}},
		{"bad level", map[string]string{"WARDEN_LOG_LEVEL": "loud"}, []string{"WARDEN_LOG_LEVEL"}},
		{"bad format", map[string]string{"WARDEN_LOG_FORMAT": "xml"}, []string{"WARDEN_LOG_FORMAT"}},
		{"bad bool", map[string]string{"WARDEN_ACCESS_LOG": "maybe"}, []string{"WARDEN_ACCESS_LOG"}},
		{"bad number", map[string]string{"WARDEN_MAX_BODY_BYTES": "lots"}, []string{"WARDEN_MAX_BODY_BYTES"}},
		{"colon in user", map[string]string{"WARDEN_USERNAME": "a:b", "WARDEN_PASSWORD": "x"}, []string{"WARDEN_USERNAME"}},
		{"header limit too small", map[string]string{"WARDEN_MAX_HEADER_BYTES": "10"}, []string{"WARDEN_MAX_HEADER_BYTES"}},
		{"connection limit zero", map[string]string{"WARDEN_MAX_CONNS": "0"}, []string{"WARDEN_MAX_CONNS"}},
		{"connection limit not a number", map[string]string{"WARDEN_MAX_CONNS": "many"}, []string{"WARDEN_MAX_CONNS"}},
		{"unknown auth scheme", map[string]string{"WARDEN_PASSWORD": "x", "WARDEN_AUTH_SCHEMES": "basic,digest"}, []string{"WARDEN_AUTH_SCHEMES", "digest"}},
		{"auth schemes with an empty item", map[string]string{"WARDEN_PASSWORD": "x", "WARDEN_AUTH_SCHEMES": "basic,"}, []string{"WARDEN_AUTH_SCHEMES"}},
		{"bearer with a secret no token can carry", map[string]string{"WARDEN_PASSWORD": "has space:colon", "WARDEN_AUTH_SCHEMES": "basic,bearer"}, []string{"WARDEN_AUTH_SCHEMES", "WARDEN_PASSWORD"}},
		{"Go memory share above 1", map[string]string{"AUTOMEMLIMIT": "1.5"}, []string{"AUTOMEMLIMIT"}},
		{"Go memory share not a number", map[string]string{"AUTOMEMLIMIT": "most"}, []string{"AUTOMEMLIMIT"}},
		{"several at once", map[string]string{
			"WARDEN_UPSTREAM_TIMEOUT": "x", "WARDEN_MODE": "open", "WARDEN_LOG_FORMAT": "xml", "WARDEN_IDLE_TIMEOUT": "0s",
		}, []string{"WARDEN_UPSTREAM_TIMEOUT", "WARDEN_MODE", "WARDEN_LOG_FORMAT", "WARDEN_IDLE_TIMEOUT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			w := startWardenNoWait(t, tc.env)
			code := w.wait(2 * time.Second)
			if took := time.Since(start); took > time.Second {
				t.Errorf("took %s to exit", took)
			}
			if code == 0 {
				t.Fatalf("exit code 0 for bad configuration")
			}
			out := w.out.String()
			for _, name := range tc.want {
				if !strings.Contains(out, name) {
					t.Errorf("output does not name %s:\n%s", name, out)
				}
			}
			if n := strings.Count(strings.TrimSpace(out), "warden:"); n != 1 {
				t.Errorf("want one message, got %d:\n%s", n, out)
			}
			if strings.Contains(out, "x\"") && tc.env["WARDEN_PASSWORD"] == "x" {
				t.Errorf("output quotes the password: %s", out)
			}
			if pw := tc.env["WARDEN_PASSWORD"]; len(pw) > 1 && strings.Contains(out, pw) {
				t.Errorf("output quotes the password: %s", out)
			}
		})
	}
}

// A WARDEN_ variable warden does not know is reported, so a typo in a
// security setting does not pass unnoticed.
func TestUnknownVariableIsWarnedAbout(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{"WARDEN_PASWORD": "typo"}))
	found := false
	for _, l := range w.logLines(t) {
		if l["level"] == "warn" && l["variable"] == "WARDEN_PASWORD" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no warning naming WARDEN_PASWORD:\n%s", w.out.String())
	}
	if strings.Contains(w.out.String(), "typo") {
		t.Errorf("the log quotes the unknown variable's value")
	}
}
