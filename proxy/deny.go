package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Deny paths: routes of the model server that no API client should reach
// (vLLM's /pause, /sleep, /collective_rpc…), answered 403 even with valid
// credentials. The match is made on the path as the model server will
// understand it, whatever the client's spelling: percent-decoded, with "//",
// "/./" and "/../" resolved. The request itself, when allowed, is still
// forwarded byte for byte.

var failDenied = newFailure(403, "path_denied", "this path is not served through this endpoint")

// maxDecodeRounds bounds repeated percent-decoding: "%2570" is "%70" once
// decoded and "p" twice. A server that decodes twice would see the second;
// warden matches on the last, denying more rather than less.
const maxDecodeRounds = 4

// denyList is a set of path prefixes, each already in normal form.
type denyList struct {
	prefixes [][]byte
}

// CheckDenyPaths reports what is wrong with a list of deny paths, if
// anything.
func CheckDenyPaths(list []string) error {
	_, err := parseDenyPaths(list)
	return err
}

// denied answers 403 to a request whose path is denied, and reports whether
// it did.
func (p *Proxy) denied(x *exchange) bool {
	if p.deny == nil || !p.deny.match(&x.pathBuf, x.ctx.Request.Header.RequestURI()) {
		return false
	}
	if e := p.log.Debug(); e.Enabled() {
		e.Bytes("path", rawPath(x.ctx.Request.Header.RequestURI())).Msg("request to a denied path refused")
	}
	x.fail(failDenied) // the exchange is over: x is not to be used after
	return true
}

// parseDenyPaths reads a list of path prefixes. Each must
// start with "/"; it is normalised like the paths it is matched against,
// keeping a trailing "/" (which then denies only the paths below it).
func parseDenyPaths(list []string) (*denyList, error) {
	if len(list) == 0 {
		return nil, nil
	}
	d := &denyList{}
	for _, item := range list {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if item[0] != '/' {
			return nil, fmt.Errorf("deny path %q: must start with /", item)
		}
		var scratch []byte
		norm := normalizePath(&scratch, []byte(item))
		if string(norm) == "/" {
			return nil, errors.New("deny path \"/\" would deny every path")
		}
		d.prefixes = append(d.prefixes, bytes.Clone(norm))
	}
	if len(d.prefixes) == 0 {
		return nil, nil
	}
	return d, nil
}

// match reports whether target's path (the request target as received,
// origin-form or absolute-form) falls under one of the prefixes: it is the
// prefix, or the prefix is followed by "/" or by anything at all when the
// prefix ends with "/"; "/pause" denies "/pause" and "/pause/x", not
// "/pauses". scratch is reused between calls.
func (d *denyList) match(scratch *[]byte, rawTarget []byte) bool {
	target, _, ok := requestTarget(rawTarget)
	if !ok {
		return false // refused as a bad request later
	}
	p := normalizePath(scratch, rawPath(target))
	for _, prefix := range d.prefixes {
		if !bytes.HasPrefix(p, prefix) {
			continue
		}
		if len(p) == len(prefix) || prefix[len(prefix)-1] == '/' || p[len(prefix)] == '/' {
			return true
		}
	}
	return false
}

// normalizePath returns path as a server would route it, into *scratch:
// percent-decoded (until nothing changes, up to maxDecodeRounds), "\" read
// as "/" (some servers do), repeated slashes collapsed, and "." and ".."
// segments resolved (RFC 3986 §5.2.4; ".." above the root stays at the
// root). A trailing "/" stays. The result always starts with "/".
func normalizePath(scratch *[]byte, path []byte) []byte {
	// A leading "/" first, so that every segment has one before it: the
	// in-place resolution below relies on it.
	b := (*scratch)[:0]
	b = append(b, '/')
	b = append(b, path...)
	for range maxDecodeRounds {
		n, changed := percentDecode(b)
		b = b[:n]
		if !changed {
			break
		}
	}
	for i, c := range b {
		if c == '\\' {
			b[i] = '/'
		}
	}
	// Resolve segments in place: out is the normalised path so far.
	out := b[:0]
	i := 0
	for i < len(b) {
		for i < len(b) && b[i] == '/' {
			i++
		}
		j := i
		for j < len(b) && b[j] != '/' {
			j++
		}
		seg := b[i:j]
		switch {
		case len(seg) == 0, len(seg) == 1 && seg[0] == '.':
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			if k := bytes.LastIndexByte(out, '/'); k >= 0 {
				out = out[:k]
			}
		default:
			// out is behind i, so copying forward is safe.
			out = append(out, '/')
			out = append(out, seg...)
		}
		i = j
	}
	if len(out) == 0 || b[len(b)-1] == '/' {
		out = append(out, '/') // behind the read position: the last byte was a "/"
	}
	*scratch = b[:cap(b)][:0]
	return out
}

// percentDecode decodes %XX escapes in b in place, returning the new length
// and whether any escape was decoded. A "%" not followed by two hex digits
// stays as it is.
func percentDecode(b []byte) (int, bool) {
	n := 0
	changed := false
	for i := 0; i < len(b); i++ {
		if b[i] == '%' && i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]) {
			b[n] = unhex(b[i+1])<<4 | unhex(b[i+2])
			i += 2
			changed = true
		} else {
			b[n] = b[i]
		}
		n++
	}
	return n, changed
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}
