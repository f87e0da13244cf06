package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paperspace/warden/auth"

	"github.com/paperspace/warden/proxy"
)

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.mode != modePublic || cfg.proxy.Upstream != "127.0.0.1:8000" || cfg.Listen != ":8080" ||
		cfg.UpstreamTimeout != 5*time.Minute || cfg.Username != "paperspace" {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestLoadConfigChoosesTheMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("from-file\r\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		env        map[string]string
		mode       string
		secret     string
		wantErrFor string
	}{
		{"no secret is public", nil, modePublic, "", ""},
		{"a password protects", map[string]string{"WARDEN_PASSWORD": "p"}, modeProtected, "p", ""},
		{"a file protects and is trimmed", map[string]string{"WARDEN_PASSWORD_FILE": file}, modeProtected, "from-file", ""},
		{"explicit protected", map[string]string{"WARDEN_MODE": "protected", "WARDEN_PASSWORD": "p"}, modeProtected, "p", ""},
		{"explicit public", map[string]string{"WARDEN_MODE": "public"}, modePublic, "", ""},
		{"protected without secret", map[string]string{"WARDEN_MODE": "protected"}, "", "", "WARDEN_MODE"},
		{"public with secret", map[string]string{"WARDEN_MODE": "public", "WARDEN_PASSWORD": "p"}, "", "", "WARDEN_MODE"},
		{"empty password", map[string]string{"WARDEN_PASSWORD": ""}, "", "", "WARDEN_PASSWORD"},
		{"both", map[string]string{"WARDEN_PASSWORD": "p", "WARDEN_PASSWORD_FILE": file}, "", "", "WARDEN_PASSWORD_FILE"},
		{"unreadable file", map[string]string{"WARDEN_PASSWORD_FILE": filepath.Join(dir, "nope")}, "", "", "WARDEN_PASSWORD_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(tt.env)
			if tt.wantErrFor != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrFor) {
					t.Fatalf("error %v, want one naming %s", err, tt.wantErrFor)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.mode != tt.mode || cfg.fingerprint != fingerprintOf(tt.secret) {
				t.Fatalf("mode %q fingerprint %q, want %q and the fingerprint of %q", cfg.mode, cfg.fingerprint, tt.mode, tt.secret)
			}
			if cfg.Password != "" {
				t.Fatalf("the password is kept in the parsed field too")
			}
		})
	}
}

func TestLoadConfigReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(map[string]string{
		"WARDEN_UPSTREAM_TIMEOUT": "later",
		"WARDEN_MAX_BODY_BYTES":   "-1",
		"WARDEN_LOG_FORMAT":       "xml",
		"WARDEN_UPSTREAM":         "ftp://x",
		"WARDEN_ACCESS_LOG":       "perhaps",
		"WARDEN_PASSWORD":         "hunter2",
		"WARDEN_USERNAME":         "a:b",
	})
	var ce *configError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a configError", err)
	}
	for _, name := range []string{
		"WARDEN_UPSTREAM_TIMEOUT", "WARDEN_MAX_BODY_BYTES", "WARDEN_LOG_FORMAT",
		"WARDEN_UPSTREAM:", "WARDEN_ACCESS_LOG", "WARDEN_USERNAME",
	} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("message does not name %s:\n%v", name, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("message quotes the password:\n%v", err)
	}
}

func TestLoadConfigNotesUnknownVariables(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(map[string]string{"WARDEN_PASWORD": "x", "OTHER": "y"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.unknownEnvVars) != 1 || cfg.unknownEnvVars[0] != "WARDEN_PASWORD" {
		t.Fatalf("unknown = %v", cfg.unknownEnvVars)
	}
}

// readmeRows returns the README's rows that start with a backquoted name
// matching prefix, as name → second column.
func readmeRows(t *testing.T, pattern string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("^\\| `(" + pattern + ")` \\| ([^|]*) \\|")
	rows := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			rows[m[1]] = strings.TrimSpace(m[2])
		}
	}
	return rows
}

func TestREADMEListsEveryVariable(t *testing.T) {
	t.Parallel()
	rows := readmeRows(t, "WARDEN_[A-Z0-9_]+")
	names := envNames()
	for name, def := range names {
		got, ok := rows[name]
		switch {
		case !ok:
			t.Errorf("README's configuration table lacks %s", name)
		case def == "" && !strings.HasPrefix(got, "("):
			t.Errorf("README gives %s the default %s; it has none", name, got)
		case def != "" && got != "`"+def+"`":
			t.Errorf("README gives %s the default %s; the code says `%s`", name, got, def)
		}
	}
	for name := range rows {
		if _, ok := names[name]; !ok {
			t.Errorf("README documents %s, which warden does not read", name)
		}
	}
}

func TestREADMEListsEveryWardenError(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for code, status := range proxy.Failures() {
		row := regexp.MustCompile("\\| " + strconv.Itoa(status) + " \\| `" + regexp.QuoteMeta(code) + "` \\|")
		if !row.Match(b) {
			t.Errorf("README's table of warden's answers lacks %d %s", status, code)
		}
	}
}

func TestRunRejectsBadConfigurationWithoutListening(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	err := run(context.Background(), nil, map[string]string{"WARDEN_MODE": "nope"}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "WARDEN_MODE") {
		t.Fatalf("run = %v", err)
	}
}

func TestRunServesUntilCancelledThenReturnsNil(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncWriter
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, map[string]string{
			"WARDEN_LISTEN":       "127.0.0.1:0",
			"WARDEN_ADMIN_LISTEN": "127.0.0.1:0",
			"WARDEN_PASSWORD":     "secret-for-run",
			"WARDEN_DRAIN_DELAY":  "0s",
		}, io.Discard, &stderr)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "warden started") {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no start line: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if strings.Contains(stderr.String(), "secret-for-run") {
		t.Fatal("the log shows the secret")
	}
}

type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(map[string]string{})
	if err != nil || len(cfg.proxy.TrustedProxies) != 6 {
		t.Fatalf("default: %v, %v", cfg.proxy.TrustedProxies, err)
	}
	cfg, err = loadConfig(map[string]string{"WARDEN_TRUSTED_PROXIES": ""})
	if err != nil || len(cfg.proxy.TrustedProxies) != 0 {
		t.Fatalf("empty must trust no one: %v, %v", cfg.proxy.TrustedProxies, err)
	}
	cfg, err = loadConfig(map[string]string{"WARDEN_TRUSTED_PROXIES": "10.1.2.0/24, 192.0.2.7 ,::ffff:198.51.100.1"})
	if trusted := cfg.proxy.TrustedProxies; err != nil || len(trusted) != 3 || trusted[1].String() != "192.0.2.7/32" || trusted[2].String() != "198.51.100.1/32" {
		t.Fatalf("list: %v, %v", trusted, err)
	}
	if _, err := loadConfig(map[string]string{"WARDEN_TRUSTED_PROXIES": "10.0.0.0/8,nope"}); err == nil || !strings.Contains(err.Error(), "WARDEN_TRUSTED_PROXIES") {
		t.Fatalf("bad entry: %v", err)
	}
}

func TestPreviousSecretNeedsItsDeadlineAndACurrentSecret(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"WARDEN_PASSWORD": "a", "WARDEN_PREVIOUS_PASSWORD": "b"}, "WARDEN_PREVIOUS_PASSWORD_UNTIL"},
		{map[string]string{"WARDEN_PASSWORD": "a", "WARDEN_PREVIOUS_PASSWORD_UNTIL": "2030-01-01T00:00:00Z"}, "WARDEN_PREVIOUS_PASSWORD_UNTIL"},
		{map[string]string{"WARDEN_PREVIOUS_PASSWORD": "b", "WARDEN_PREVIOUS_PASSWORD_UNTIL": "2030-01-01T00:00:00Z"}, "WARDEN_PREVIOUS_PASSWORD"},
		{map[string]string{"WARDEN_PASSWORD": "a", "WARDEN_PREVIOUS_PASSWORD": "b", "WARDEN_PREVIOUS_PASSWORD_UNTIL": "tomorrow"}, "WARDEN_PREVIOUS_PASSWORD_UNTIL"},
		{map[string]string{"WARDEN_PASSWORD": "a", "WARDEN_PREVIOUS_PASSWORD": "", "WARDEN_PREVIOUS_PASSWORD_UNTIL": "2030-01-01T00:00:00Z"}, "WARDEN_PREVIOUS_PASSWORD"},
	} {
		if _, err := loadConfig(tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.env, err, tc.want)
		}
	}
	cfg, err := loadConfig(map[string]string{"WARDEN_PASSWORD": "a", "WARDEN_PREVIOUS_PASSWORD": "b", "WARDEN_PREVIOUS_PASSWORD_UNTIL": "2030-01-01T00:00:00Z"})
	if err != nil || cfg.previousFingerprint != fingerprintOf("b") || cfg.previousUntil.Year() != 2030 {
		t.Fatalf("good rollover: %+v, %v", cfg, err)
	}
}

// fingerprintOf is the start line's fingerprint of a secret, "" for none.
func fingerprintOf(secret string) string {
	if secret == "" {
		return ""
	}
	return auth.Fingerprint(secret)
}

func TestPlanPrivileges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		child, runAs string
		wrapper      bool
		euid         int
		wantChild    string // "uid:gid", "" for none
		wantRunAs    string
		wantProblem  string
	}{
		{"65534:65534", "", true, 0, "65534:65534", "65532:65532", ""},
		{"1000:2000", "54321", true, 0, "1000:2000", "54321:54321", ""},
		{"", "65532", false, 0, "", "65532:65532", ""},
		{"", "", true, 0, "", "", ""},
		{"65534", "", false, 0, "", "", "WARDEN_CHILD_USER: only for wrapper mode"},
		{"no-such-user-xyz", "", true, 0, "", "", "WARDEN_CHILD_USER: no user"},
		{"", "0", false, 0, "", "", "WARDEN_RUN_AS: must not be root"},
		{"", "root", false, 0, "", "", "WARDEN_RUN_AS: must not be root"},
		{"65534", "", true, 1000, "", "", "WARDEN_CHILD_USER: warden runs as uid 1000"},
		{"1000", "1000", true, 1000, "", "", ""}, // its own identity: nothing to do
		{"", "1001", false, 1000, "", "", "WARDEN_RUN_AS: warden runs as uid 1000"},
		{"65534:x-no-such-group", "", true, 0, "", "", "WARDEN_CHILD_USER: no group"},
	} {
		plan, problems := planPrivileges(tc.child, tc.runAs, tc.wrapper, tc.euid)
		msg := errors.Join(problems...)
		switch {
		case tc.wantProblem == "" && len(problems) > 0:
			t.Errorf("%+v: problems %v", tc, msg)
		case tc.wantProblem != "" && (msg == nil || !strings.Contains(msg.Error(), tc.wantProblem)):
			t.Errorf("%+v: problems %q, want %q", tc, msg, tc.wantProblem)
		case tc.wantProblem != "":
		default:
			got := func(id *identity) string {
				if id == nil {
					return ""
				}
				return id.String()
			}
			if got(plan.child) != tc.wantChild || got(plan.runAs) != tc.wantRunAs {
				t.Errorf("%+v: child %q, warden %q; want %q, %q", tc, got(plan.child), got(plan.runAs), tc.wantChild, tc.wantRunAs)
			}
		}
	}
	// A name brings its groups from the user database.
	if id, err := parseIdentity("root"); err != nil || id.uid != 0 || id.gid != 0 {
		t.Errorf("root = %+v, %v", id, err)
	}
}
