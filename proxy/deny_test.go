package proxy

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

func TestDenyListMatchesWhatTheServerWouldRoute(t *testing.T) {
	t.Parallel()
	d, err := parseDenyPaths([]string{"/pause", " /sleep ", "/collective_rpc", "/admin/"})
	if err != nil {
		t.Fatal(err)
	}
	var scratch []byte
	for target, want := range map[string]bool{
		"/pause":                  true,
		"/pause?x=1":              true,
		"/pause/":                 true,
		"/pause/now":              true,
		"/%70ause":                true,
		"/%70%61%75%73%65":        true,
		"/%2570ause":              true, // decoded twice
		"/%252570ause":            true,
		"//pause":                 true,
		"///pause":                true,
		"/./pause":                true,
		"/v1/../pause":            true,
		"/v1/%2e%2e/pause":        true,
		"/v1/%2E%2E/pause":        true,
		"/v1%2f..%2fpause":        true,
		"/v1/..%5cpause":          true,
		"\\pause":                 false, // not a target: refused with 400
		"/../../pause":            true,
		"/sleep":                  true,
		"http://h/pause":          true,
		"http://h//v1/../pause?q": true,
		"/admin/x":                true,
		"/admin/":                 true,
		"/admin":                  false, // "/admin/" denies only below
		"/pauses":                 false,
		"/PAUSE":                  false, // paths are case-sensitive
		"/v1/pause":               false,
		"/v1/chat/completions":    false,
		"/":                       false,
		"*":                       false,
		"/pause%3Fx":              false, // the path "/pause?x": another route
		"/%":                      false,
		"/%7":                     false,
		"/%zz":                    false,
	} {
		if got := d.match(&scratch, []byte(target)); got != want {
			t.Errorf("match(%q) = %v, want %v", target, got, want)
		}
	}
	for _, bad := range [][]string{{"pause"}, {"/"}, {"//"}, {"/./"}} {
		if _, err := parseDenyPaths(bad); err == nil {
			t.Errorf("parseDenyPaths(%q) accepted", bad)
		}
	}
	if d, err := parseDenyPaths([]string{"", " "}); d != nil || err != nil {
		t.Errorf("an empty list = %v, %v; want none", d, err)
	}
}

func TestDenyMatchAllocatesNothing(t *testing.T) {
	d, _ := parseDenyPaths([]string{"/pause", "/sleep"})
	var scratch []byte
	target := []byte("/v1/%2e%2e//chat/./completions?x=1")
	d.match(&scratch, target)
	if n := testing.AllocsPerRun(100, func() { d.match(&scratch, target) }); n != 0 {
		t.Fatalf("match allocates %.0f times", n)
	}
}

// normalizePath against the standard library: repeated PathUnescape, then
// path.Clean.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//x/./y/", "/%2e%2e/%2570", "a", "/..", "\\a\\..\\b", "/%", "/%%30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		var scratch []byte
		got := string(normalizePath(&scratch, []byte(p)))
		want := p
		for range maxDecodeRounds {
			next := percentDecodeOracle(want)
			if next == want {
				break
			}
			want = next
		}
		want = strings.ReplaceAll(want, "\\", "/")
		dir := strings.HasSuffix(want, "/")
		want = path.Clean("/" + want)
		if dir && want != "/" {
			want += "/"
		}
		if got != want {
			t.Fatalf("normalizePath(%q) = %q, want %q", p, got, want)
		}
	})
}

// percentDecodeOracle decodes every valid %XX and leaves the rest, with
// url.PathUnescape on each escape.
func percentDecodeOracle(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if d, err := url.PathUnescape(s[i : i+3]); err == nil {
				b.WriteString(d)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
