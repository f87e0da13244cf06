package proxy

import (
	"bytes"
	"net"
	"net/netip"
)

// headerKind classifies a header name for forwarding.
type headerKind uint8

const (
	kindOther headerKind = iota
	// kindHop is a hop-by-hop header (RFC 9110 §7.6.1), or one that warden
	// answers itself and must not pass on: it is dropped in both directions.
	kindHop
	// kindFraming is Content-Length: warden frames each message it sends
	// itself (RFC 9112 §6), so the incoming value is dropped.
	kindFraming
	// kindTransferEncoding is dropped for the same reason, once checked.
	kindTransferEncoding
	// kindCredentials is Authorization or Proxy-Authorization: the secret
	// stops at warden and never reaches the upstream.
	kindCredentials
	// kindAPIKey is x-api-key: a carrier of the secret when warden accepts
	// it (and then stripped like Authorization), else an ordinary header.
	kindAPIKey
	kindHost
	kindXForwardedFor
	kindXForwardedHost
	kindXForwardedProto
	kindConnection
	// kindUpgrade is hop-by-hop; only websocket upgrades are re-created.
	kindUpgrade
)

// classify tells what a header name is. Names arrive normalised by fasthttp
// ("Keep-Alive"), but the comparison is case-insensitive anyway (RFC 9110
// §5.1), so that the result never depends on that setting.
func classify(name []byte) headerKind {
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			return kindHop
		}
	case 4:
		if equalFold(name, "host") {
			return kindHost
		}
	case 6:
		if equalFold(name, "expect") {
			// warden answers "Expect: 100-continue" itself, after checking the
			// credentials (RFC 9110 §10.1.1), and then sends the body at once.
			return kindHop
		}
	case 7:
		if equalFold(name, "upgrade") {
			return kindUpgrade
		}
		if equalFold(name, "trailer") {
			return kindHop
		}
	case 9:
		if equalFold(name, "x-api-key") {
			return kindAPIKey
		}
	case 10:
		if equalFold(name, "connection") {
			return kindConnection
		}
		if equalFold(name, "keep-alive") {
			return kindHop
		}
	case 13:
		if equalFold(name, "authorization") {
			return kindCredentials
		}
	case 14:
		if equalFold(name, "content-length") {
			return kindFraming
		}
	case 15:
		if equalFold(name, "x-forwarded-for") {
			return kindXForwardedFor
		}
	case 16:
		if equalFold(name, "x-forwarded-host") {
			return kindXForwardedHost
		}
		if equalFold(name, "proxy-connection") {
			return kindHop
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			return kindTransferEncoding
		}
		if equalFold(name, "x-forwarded-proto") {
			return kindXForwardedProto
		}
	case 18:
		if equalFold(name, "proxy-authenticate") {
			return kindHop
		}
	case 19:
		if equalFold(name, "proxy-authorization") {
			return kindCredentials
		}
	}
	return kindOther
}

// validName reports whether a header name is an RFC 9110 §5.1 token.
// fasthttp tolerates spaces inside names (fasthttp#1917); warden does not
// forward what a strict upstream would refuse.
func validName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// validValue reports whether a header value holds only field-vchars, spaces
// and tabs (RFC 9110 §5.5): no CR, LF, NUL or other controls.
func validValue(value []byte) bool {
	for _, c := range value {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// equalFold reports whether b equals s, ignoring case (RFC 9110 §5.1 for
// names; tokens likewise).
func equalFold(b []byte, s string) bool { return bytes.EqualFold(b, []byte(s)) }

// trimOWS trims optional whitespace (RFC 9110 §5.6.3).
func trimOWS(b []byte) []byte { return bytes.Trim(b, " \t") }

// connectionTokens collects the header names listed in Connection header
// values (RFC 9110 §7.6.1), which are hop-by-hop too. The values are copied
// into buf so that the tokens stay valid while headers are changed.
type connectionTokens struct {
	buf    []byte
	tokens [][2]int // start and end of each token in buf
}

func (t *connectionTokens) reset() {
	t.buf = t.buf[:0]
	t.tokens = t.tokens[:0]
}

// add splits one Connection value at commas and records each token.
func (t *connectionTokens) add(value []byte) {
	for tok := range bytes.SplitSeq(value, []byte(",")) {
		if tok = trimOWS(tok); len(tok) > 0 {
			start := len(t.buf)
			t.buf = append(t.buf, tok...)
			t.tokens = append(t.tokens, [2]int{start, len(t.buf)})
		}
	}
}

// has reports whether name is one of the listed tokens.
func (t *connectionTokens) has(name []byte) bool {
	for _, tok := range t.tokens {
		if bytes.EqualFold(t.buf[tok[0]:tok[1]], name) {
			return true
		}
	}
	return false
}

// appendClientIP appends the IP address of a socket peer, without port and
// with IPv4-mapped IPv6 addresses unmapped, as X-Forwarded-For carries it.
func appendClientIP(dst []byte, addr net.Addr) []byte {
	switch a := addr.(type) {
	case *net.TCPAddr:
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap().AppendTo(dst)
		}
	case nil:
		return dst
	}
	// Not TCP (an in-memory listener in tests): the address as it prints.
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return append(dst, addr.String()...)
	}
	return append(dst, host...)
}
