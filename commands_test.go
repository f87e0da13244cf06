package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestToolSecretComesFromEnvironmentThenFileThenStdin(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(file, []byte("from-file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env   map[string]string
		stdin string
		want  string
		fails bool
	}{
		{map[string]string{"WARDEN_PASSWORD": "from-env", "WARDEN_PASSWORD_FILE": file}, "from-stdin", "from-env", false},
		{map[string]string{"WARDEN_PASSWORD_FILE": file}, "from-stdin", "from-file", false},
		{nil, "from-stdin\n", "from-stdin", false},
		{nil, "two\nlines\n", "two\nlines", false},
		{nil, "", "", true},
		{nil, "\n", "", true},
		{map[string]string{"WARDEN_PASSWORD": ""}, "x", "", true},
		{map[string]string{"WARDEN_PASSWORD_FILE": filepath.Join(t.TempDir(), "none")}, "x", "", true},
		{nil, strings.Repeat("x", 5000), "", true},
	} {
		got, err := toolSecret(tc.env, strings.NewReader(tc.stdin))
		if (err != nil) != tc.fails || got != tc.want {
			t.Errorf("%v / %q: %q, %v; want %q (fails %v)", tc.env, tc.stdin, got, err, tc.want, tc.fails)
		}
	}
}

func TestHeaderAndHashOutput(t *testing.T) {
	t.Parallel()
	run := func(f func(*strings.Builder) error) string {
		var b strings.Builder
		if err := f(&b); err != nil {
			return "error: " + err.Error()
		}
		return b.String()
	}
	env := map[string]string{"WARDEN_PASSWORD": "pa:ss wörd", "WARDEN_USERNAME": "u"}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("u:pa:ss wörd")) + "\n"
	if got := run(func(b *strings.Builder) error { return cmdHeader(nil, env, nil, b) }); got != want {
		t.Errorf("header = %q, want %q", got, want)
	}
	if got := run(func(b *strings.Builder) error { return cmdHeader([]string{"--bearer"}, env, nil, b) }); !strings.HasPrefix(got, "error: ") {
		t.Errorf("--bearer with a secret no token carries = %q", got)
	}
	tok := map[string]string{"WARDEN_PASSWORD": "tok_en"}
	if got := run(func(b *strings.Builder) error { return cmdHeader([]string{"--bearer"}, tok, nil, b) }); got != "Bearer tok_en\n" {
		t.Errorf("--bearer = %q", got)
	}
	if got := run(func(b *strings.Builder) error {
		return cmdHeader([]string{"--bearer", "--curl", "http://h/p?a=1&b='c'"}, tok, nil, b)
	}); got != `curl -H 'Authorization: Bearer tok_en' 'http://h/p?a=1&b='\''c'\'''`+"\n" {
		t.Errorf("--curl = %q", got)
	}
	for _, args := range [][]string{{"--curl"}, {"--curl", "ftp://h"}, {"secret-value"}, {"--unknown"}} {
		if got := run(func(b *strings.Builder) error { return cmdHeader(args, tok, nil, b) }); !strings.HasPrefix(got, "error: ") || strings.Contains(got, "secret-value") {
			t.Errorf("header %q = %q, want an error that does not echo it", args, got)
		}
	}
	sum := sha256.Sum256([]byte("tok_en"))
	if got := run(func(b *strings.Builder) error { return cmdHash(nil, tok, nil, b) }); got != hex.EncodeToString(sum[:])+"\n" {
		t.Errorf("hash = %q", got)
	}
}

// The quoting survives a real shell.
func TestShellQuoteRoundTrips(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"plain", "it's", "a b", `"q" $HOME ; rm -rf / '' \`, "Authorization: Basic cGE6c3M="} {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("shellQuote(%q) gave %q, %v", s, out, err)
		}
	}
}

func TestNewSecretIsStrong(t *testing.T) {
	t.Parallel()
	a, _ := newSecret()
	b, _ := newSecret()
	if a == b || len(a) != 43 || strings.ContainsAny(a, "+/=") {
		t.Fatalf("newSecret = %q, %q", a, b)
	}
}
