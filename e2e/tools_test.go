package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The small tools: warden secret, header and hash, and the secret given as
// its digest (WARDEN_PASSWORD_SHA256).

// tool runs warden with args, env (nothing else of the tests' environment)
// and stdin, and returns its standard output and whether it succeeded.
func tool(t *testing.T, env map[string]string, stdin string, args ...string) (string, string, bool) {
	t.Helper()
	cmd := exec.Command(wardenBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err == nil
}

func TestSecretPrintsAStrongRandomTokenAndNothingElse(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 5 {
		out, _, ok := tool(t, nil, "", "secret")
		if !ok {
			t.Fatal("warden secret failed")
		}
		if !regexp.MustCompile(`^[A-Za-z0-9_-]{43}\n$`).MatchString(out) {
			t.Fatalf("warden secret printed %q, want 43 base64url characters and a newline", out)
		}
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(out))
		if err != nil || len(b) != 32 {
			t.Fatalf("%q is not 32 bytes of base64url: %v", out, err)
		}
		if seen[out] {
			t.Fatalf("warden secret repeated %q", out)
		}
		seen[out] = true
	}
	if _, _, ok := tool(t, nil, "", "secret", "extra"); ok {
		t.Error("warden secret accepted an argument")
	}
}

func TestHeaderAndHashReadTheSecretNeverFromArguments(t *testing.T) {
	t.Parallel()
	const secret = "s3cret:with colon ünï"
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("paperspace:"+secret))
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(secret))
	digest := hex.EncodeToString(sum[:])
	for name, tc := range map[string]struct {
		env   map[string]string
		stdin string
	}{
		"environment":    {map[string]string{"WARDEN_PASSWORD": secret}, "ignored\n"},
		"file":           {map[string]string{"WARDEN_PASSWORD_FILE": file}, "ignored\n"},
		"standard input": {nil, secret + "\n"},
	} {
		out, errOut, ok := tool(t, tc.env, tc.stdin, "header")
		if !ok || out != basic+"\n" {
			t.Errorf("%s: header = %q (%s), want %q", name, out, errOut, basic)
		}
		out, errOut, ok = tool(t, tc.env, tc.stdin, "hash")
		if !ok || out != digest+"\n" {
			t.Errorf("%s: hash = %q (%s), want %q", name, out, errOut, digest)
		}
	}
	// Another user name; Bearer; a Bearer that cannot carry the secret.
	if out, _, _ := tool(t, map[string]string{"WARDEN_USERNAME": "alice"}, "pw", "header"); out != "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:pw"))+"\n" {
		t.Errorf("header for alice = %q", out)
	}
	if out, _, _ := tool(t, nil, "tok-3n.x\n", "header", "--bearer"); out != "Bearer tok-3n.x\n" {
		t.Errorf("header --bearer = %q", out)
	}
	if _, errOut, ok := tool(t, nil, secret, "header", "--bearer"); ok || strings.Contains(errOut, secret) {
		t.Errorf("header --bearer with a secret no token can carry: ok %v, %q", ok, errOut)
	}
	// No secret is ever taken from an argument: ps would show it.
	for _, args := range [][]string{{"header", secret}, {"hash", secret}, {"header", "--bearer", secret}, {"header", "--password", secret}} {
		out, errOut, ok := tool(t, nil, "", args...)
		if ok || out != "" || strings.Contains(errOut, secret) {
			t.Errorf("warden %q: ok %v, out %q, err %q; want a refusal that does not echo it", args, ok, out, errOut)
		}
	}
	if _, errOut, ok := tool(t, nil, "", "hash"); ok || !strings.Contains(errOut, "WARDEN_PASSWORD") {
		t.Errorf("hash without a secret: ok %v, %q", ok, errOut)
	}
	out, _, _ := tool(t, nil, "--help\n", "--help")
	for _, cmd := range []string{"warden secret", "warden header", "warden header --bearer", "warden header --curl", "warden hash"} {
		if !strings.Contains(out, cmd) {
			t.Errorf("--help does not list %q:\n%s", cmd, out)
		}
	}
}

// The curl line that warden header --curl prints works against warden.
func TestHeaderCurlLineReachesTheModel(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (make deps installs it)")
	}
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{"WARDEN_AUTH_SCHEMES": "basic"}))
	for _, args := range [][]string{{"header", "--curl", w.url("/echo?a=1&b='x'")}, {"header", "--curl=" + w.url("/echo")}} {
		line, errOut, ok := tool(t, map[string]string{"WARDEN_PASSWORD": testPassword}, "", args...)
		if !ok || !strings.HasPrefix(line, "curl -H 'Authorization: Basic ") {
			t.Fatalf("warden %q = %q (%s)", args, line, errOut)
		}
		out, err := exec.Command("sh", "-c", strings.TrimSpace(line)+" -s -o /dev/null -w '%{http_code}'").CombinedOutput()
		if err != nil || string(out) != "200" {
			t.Errorf("%s: %s %v", line, out, err)
		}
	}
}

func TestSecretGivenAsItsDigest(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	const secret = "a-Str0ng-random-secret-of-enough-length"
	sum := sha256.Sum256([]byte(secret))
	digest := hex.EncodeToString(sum[:])
	file := filepath.Join(t.TempDir(), "digest")
	if err := os.WriteFile(file, []byte(digest+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plain := startWarden(t, map[string]string{"WARDEN_UPSTREAM": "http://" + up.addr, "WARDEN_PASSWORD": secret})
	fingerprint := startLine(t, plain.proc)["secret_fingerprint"]
	for name, env := range map[string]map[string]string{
		"WARDEN_PASSWORD_SHA256":      {"WARDEN_PASSWORD_SHA256": digest},
		"WARDEN_PASSWORD_SHA256_FILE": {"WARDEN_PASSWORD_SHA256_FILE": file},
		"upper-case digest":           {"WARDEN_PASSWORD_SHA256": strings.ToUpper(digest)},
	} {
		env["WARDEN_UPSTREAM"] = "http://" + up.addr
		env["WARDEN_AUTH_SCHEMES"] = "basic,bearer"
		w := startWarden(t, env)
		for _, h := range []string{basicAuth(testUser, secret), "Bearer " + secret} {
			if resp, b := do(t, "GET", w.url("/echo"), http.Header{"Authorization": {h}}, nil); resp.StatusCode != 200 {
				t.Errorf("%s: %d %s", name, resp.StatusCode, b)
			}
		}
		if resp, _ := do(t, "GET", w.url("/echo"), http.Header{"Authorization": {"Bearer " + digest}}, nil); resp.StatusCode != 401 {
			t.Errorf("%s: the digest itself was accepted as the secret: %d", name, resp.StatusCode)
		}
		line := startLine(t, w.proc)
		if line["secret_fingerprint"] != fingerprint || line["secret_source"] != name && name != "upper-case digest" {
			t.Errorf("%s: start line %v; want the fingerprint %v of the plain secret", name, line, fingerprint)
		}
		if strings.Contains(w.out.String(), digest) {
			t.Errorf("%s: the log shows the digest", name)
		}
		if got := metricValue(t, scrapeMetrics(t, w), "warden_secret_weak"); got != 0 {
			t.Errorf("%s: warden_secret_weak = %v for a digest, which cannot be judged", name, got)
		}
	}
}

func TestWeakSecretIsCalledOutNotRefused(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	for secret, weak := range map[string]bool{
		"hunter2":          true,
		"0123456789012345": true, // 16 digits: about 53 bits
		testPassword:       false,
	} {
		w := startWarden(t, map[string]string{"WARDEN_UPSTREAM": "http://" + up.addr, "WARDEN_PASSWORD": secret})
		if resp, _ := do(t, "GET", w.url("/echo"), http.Header{"Authorization": {basicAuth(testUser, secret)}}, nil); resp.StatusCode != 200 {
			t.Errorf("%q: a weak secret must still work: %d", secret, resp.StatusCode)
		}
		want := 0.0
		if weak {
			want = 1
		}
		if got := metricValue(t, scrapeMetrics(t, w), "warden_secret_weak"); got != want {
			t.Errorf("%q: warden_secret_weak = %v, want %v", secret, got, want)
		}
		out := w.out.String()
		if warned := strings.Count(out, "weak secret"); warned != int(want) {
			t.Errorf("%q: %d warnings, want %v:\n%s", secret, warned, want, out)
		}
		if strings.Contains(out, secret) {
			t.Errorf("%q: the log shows the secret", secret)
		}
	}
}

func TestSecretGivenSeveralWaysIsAConfigurationError(t *testing.T) {
	t.Parallel()
	digest := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"WARDEN_PASSWORD": "x", "WARDEN_PASSWORD_SHA256": digest}, []string{"WARDEN_PASSWORD and WARDEN_PASSWORD_SHA256"}},
		{map[string]string{"WARDEN_PASSWORD_SHA256": digest, "WARDEN_PASSWORD_SHA256_FILE": "/etc/hostname"}, []string{"WARDEN_PASSWORD_SHA256 and WARDEN_PASSWORD_SHA256_FILE"}},
		{map[string]string{"WARDEN_PASSWORD_SHA256": "not-hex"}, []string{"WARDEN_PASSWORD_SHA256", "64 hex digits"}},
		{map[string]string{"WARDEN_PASSWORD_SHA256": digest[:60]}, []string{"WARDEN_PASSWORD_SHA256"}},
		{map[string]string{"WARDEN_PASSWORD_SHA256": ""}, []string{"WARDEN_PASSWORD_SHA256", "empty"}},
		{map[string]string{"WARDEN_PASSWORD_SHA256": digest, "WARDEN_PREVIOUS_PASSWORD": "p", "WARDEN_PREVIOUS_PASSWORD_SHA256": digest, "WARDEN_PREVIOUS_PASSWORD_UNTIL": "2030-01-01T00:00:00Z"}, []string{"WARDEN_PREVIOUS_PASSWORD and WARDEN_PREVIOUS_PASSWORD_SHA256"}},
		{map[string]string{"WARDEN_MODE": "public", "WARDEN_PASSWORD_SHA256": digest}, []string{"WARDEN_MODE"}},
	} {
		w := startWardenNoWait(t, tc.env)
		if code := w.wait(3 * time.Second); code == 0 {
			t.Errorf("%v: exit 0", tc.env)
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(w.out.String(), want) {
				t.Errorf("%v: the message lacks %q:\n%s", tc.env, want, w.out.String())
			}
		}
	}
}
