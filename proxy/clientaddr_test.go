package proxy

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestClientAddrBelievesOnlyTrustedProxies(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("fc00::/7"),
	}
	p := &Proxy{cfg: Config{TrustedProxies: trusted}}
	tests := []struct {
		name string
		peer string
		xff  []string
		want string
	}{
		{"untrusted peer, no header", "203.0.113.9", nil, "203.0.113.9"},
		{"untrusted peer ignores a forged header", "203.0.113.9", []string{"1.2.3.4"}, "203.0.113.9"},
		{"trusted peer, one client", "10.0.0.2", []string{"198.51.100.7"}, "198.51.100.7"},
		{"client-forged entries left of the real one", "10.0.0.2", []string{"1.1.1.1, 2.2.2.2, 198.51.100.7"}, "198.51.100.7"},
		{"a chain of trusted proxies", "10.0.0.2", []string{"198.51.100.7, 10.1.1.1, 10.2.2.2"}, "198.51.100.7"},
		{"several header lines read as one list", "10.0.0.2", []string{"1.1.1.1, 198.51.100.7", "10.3.3.3"}, "198.51.100.7"},
		{"all trusted: the left-most", "10.0.0.2", []string{"10.9.9.9, 10.1.1.1"}, "10.9.9.9"},
		{"trusted peer without header", "10.0.0.2", nil, "10.0.0.2"},
		{"entries with ports", "10.0.0.2", []string{"198.51.100.7:5555, 10.1.1.1:80"}, "198.51.100.7"},
		{"IPv6 entries", "::ffff:10.0.0.2", []string{"2001:db8::1, [fd00::1]:80"}, "2001:db8::1"},
		{"IPv4-mapped client", "10.0.0.2", []string{"::ffff:198.51.100.7"}, "198.51.100.7"},
		{"garbage stops the walk at the last trusted hop", "10.0.0.2", []string{"198.51.100.7, not-an-ip, 10.1.1.1"}, "10.1.1.1"},
		{"empty entries are skipped", "10.0.0.2", []string{"198.51.100.7,, ,"}, "198.51.100.7"},
		{"loopback peer trusted by default", "127.0.0.1", []string{"198.51.100.7"}, "198.51.100.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw strings.Builder
			raw.WriteString("GET / HTTP/1.1\r\nHost: x\r\n")
			for _, v := range tt.xff {
				raw.WriteString("X-Forwarded-For: " + v + "\r\n")
			}
			raw.WriteString("\r\n")
			var req fasthttp.Request
			if err := req.Read(bufio.NewReader(strings.NewReader(raw.String()))); err != nil {
				t.Fatal(err)
			}
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(tt.peer), Port: 1}, nil)
			if got := p.clientAddr(&ctx); got != netip.MustParseAddr(tt.want) {
				t.Errorf("client = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestClientAddrAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	p := &Proxy{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}
	var req fasthttp.Request
	raw := "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1, 198.51.100.7, 10.1.1.1\r\n\r\n"
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP("10.0.0.2"), Port: 1}, nil)
	if n := testing.AllocsPerRun(100, func() { p.clientAddr(&ctx) }); n != 0 {
		t.Fatalf("clientAddr allocates %.0f times", n)
	}
}
