package proxy

import (
	"bytes"
	"net"
	"net/netip"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// clientAddr says who the client is, for failed-login throttling: the
// socket peer, unless the peer is a trusted proxy, in which case it is the
// right-most X-Forwarded-For entry that is not itself a trusted proxy.
//
// Entries right of that one were appended by trusted proxies and are true;
// entries left of it came from the client and may be forged, so a forged
// X-Forwarded-For from an untrusted peer changes nothing. If every entry is
// trusted, the left-most one is the client.
func (p *Proxy) clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	client := peerAddr(ctx.RemoteAddr())
	if !p.isTrusted(client) {
		return client
	}
	// X-Forwarded-For may come in several header lines, to be read as one
	// list in order; walk the lines from the last.
	var lines [8][]byte
	n := 0
	for k, v := range ctx.Request.Header.AllInOrder() {
		if classify(k) != kindXForwardedFor {
			continue
		}
		if n == len(lines) {
			copy(lines[:], lines[1:]) // keep the last ones: they are the ones read first
			n--
		}
		lines[n] = v
		n++
	}
	for i := n - 1; i >= 0; i-- {
		v := lines[i]
		for len(v) > 0 {
			j := bytes.LastIndexByte(v, ',')
			entry := trimOWS(v[j+1:])
			v = v[:max(j, 0)]
			if len(entry) == 0 {
				continue
			}
			addr, ok := parseForwardedAddr(entry)
			if !ok {
				// A trusted proxy would not append this: the chain is broken
				// here, and the last trusted hop is as far as warden can see.
				return client
			}
			if !p.isTrusted(addr) {
				return addr
			}
			client = addr
		}
	}
	return client
}

func (p *Proxy) isTrusted(addr netip.Addr) bool {
	for _, prefix := range p.cfg.TrustedProxies {
		if prefix.Contains(addr) {
			return true
		}
	}
	return false
}

// peerAddr is the socket peer's address, IPv4-mapped addresses unmapped.
func peerAddr(addr net.Addr) netip.Addr {
	if a, ok := addr.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// parseForwardedAddr reads one X-Forwarded-For entry: an address, or an
// address with a port ("1.2.3.4:80", "[::1]:80"), as some proxies send.
func parseForwardedAddr(b []byte) (netip.Addr, bool) {
	// No copy: ParseAddr keeps nothing of s (a zone is interned by value).
	s := unsafe.String(&b[0], len(b)) //nolint:gosec // G103: read-only view of b for the duration of the call
	if addr, err := netip.ParseAddr(s); err == nil {
		return addr.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
