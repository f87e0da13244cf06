package proxy

import (
	"errors"
)

// chunkedScanner follows the framing of a chunked body (RFC 9112 §7.1)
// byte by byte, strictly:
//
//	chunked-body = *chunk last-chunk trailer-section CRLF
//	chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//	last-chunk   = 1*("0") [ chunk-ext ] CRLF
//	chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//	chunk-ext-val = token / quoted-string
//	trailer-section = *( field-line CRLF )
//
// Line ends are CRLF only, here: a bare LF, which RFC 9112 §2.2 lets a
// recipient accept in a message's head, is refused inside a chunked body,
// as fasthttp refuses it. Anything outside the grammar is errBadChunk, and
// the scanner stops there: a proxy that reads a chunk line differently from
// the one in front of it is how request smuggling starts.
//
// It holds no buffer, so it can follow a body across reads of any size. The
// request guard (guard.go) runs it over the client's bytes; the upstream
// body reader (body.go) decodes responses with it.
type chunkedScanner struct {
	state     uint8
	lineLen   int   // bytes of the current chunk line, or of the trailer section
	digits    int   // of the chunk size
	size      int64 // the chunk size being parsed
	remaining int64 // chunk data not yet consumed
}

// Limits: a chunk line or a trailer section longer than this is refused
// (fasthttp's own allowance for extensions is 16 KiB per body).
const (
	maxChunkLine    = 4 << 10
	maxTrailerBytes = 16 << 10
	maxChunkDigits  = 15 // sizes below 2^60
)

var errBadChunk = errors.New("malformed chunked encoding")

const (
	csSize0         uint8 = iota // first digit of a chunk size
	csSize                       // more digits
	csBWSSemi                    // whitespace after the size or a value: only ";" may follow
	csExtBWSName                 // after ";": whitespace, then a name
	csExtName                    // in a name
	csExtBWSEq                   // whitespace after a name: "=" or ";" may follow
	csExtBWSVal                  // after "=": whitespace, then a value
	csExtToken                   // in a token value
	csExtQuoted                  // in a quoted-string value
	csExtQuotedPair              // after a backslash in a quoted string
	csExtQuotedEnd               // after the closing quote
	csLineLF                     // CR seen at the end of a chunk line
	csData                       // chunk data: remaining bytes
	csDataCR                     // CR after chunk data
	csDataLF                     // LF after chunk data
	csTrailerStart               // start of a trailer line, or the final CRLF
	csTrailerName                // in a trailer field name
	csTrailerValue               // in a trailer field value
	csTrailerLF                  // CR seen at the end of a trailer line
	csEndLF                      // CR of the final CRLF seen
	csDone                       // the body has ended
	csFailed
)

// done reports whether the whole body, trailer section included, has been
// scanned.
func (s *chunkedScanner) done() bool { return s.state == csDone }

// inData reports whether the next bytes are chunk data, s.remaining of them.
func (s *chunkedScanner) inData() bool { return s.state == csData }

// consumeData records n bytes of chunk data as consumed; n must not exceed
// s.remaining.
func (s *chunkedScanner) consumeData(n int) {
	s.remaining -= int64(n)
	if s.remaining == 0 {
		s.state = csDataCR
	}
}

// framing consumes framing bytes from b: chunk lines, the CRLF after chunk
// data, the trailer section. It stops at the start of chunk data, at the end
// of the body, or at the end of b, and returns the bytes consumed. On a byte
// outside the grammar it returns errBadChunk, with n the bytes before it.
func (s *chunkedScanner) framing(b []byte) (n int, err error) {
	for n < len(b) {
		switch s.state {
		case csData, csDone:
			return n, nil
		case csFailed:
			return n, errBadChunk
		}
		if !s.step(b[n]) {
			s.state = csFailed
			return n, errBadChunk
		}
		n++
	}
	return n, nil
}

// step takes one framing byte and reports whether the grammar allows it.
func (s *chunkedScanner) step(c byte) bool {
	switch s.state {
	case csSize0, csSize, csBWSSemi, csExtBWSName, csExtName, csExtBWSEq, csExtBWSVal,
		csExtToken, csExtQuoted, csExtQuotedPair, csExtQuotedEnd, csLineLF:
		s.lineLen++
		if s.lineLen > maxChunkLine {
			return false
		}
	case csTrailerStart, csTrailerName, csTrailerValue, csTrailerLF, csEndLF:
		s.lineLen++
		if s.lineLen > maxTrailerBytes {
			return false
		}
	}
	switch s.state {
	case csSize0:
		d, ok := hexDigit(c)
		if !ok {
			return false
		}
		s.size = int64(d)
		s.digits = 1
		s.state = csSize
	case csSize:
		if d, ok := hexDigit(c); ok {
			if s.digits == maxChunkDigits {
				return false
			}
			s.digits++
			s.size = s.size<<4 | int64(d)
			return true
		}
		return s.afterValue(c)
	case csBWSSemi:
		switch c {
		case ' ', '\t':
		case ';':
			s.state = csExtBWSName
		default:
			return false
		}
	case csExtBWSName:
		switch {
		case c == ' ' || c == '\t':
		case tchar[c]:
			s.state = csExtName
		default:
			return false
		}
	case csExtName:
		switch {
		case tchar[c]:
		case c == ' ' || c == '\t':
			s.state = csExtBWSEq
		case c == '=':
			s.state = csExtBWSVal
		default:
			return s.afterValue(c)
		}
	case csExtBWSEq:
		switch c {
		case ' ', '\t':
		case '=':
			s.state = csExtBWSVal
		case ';':
			s.state = csExtBWSName
		default:
			return false
		}
	case csExtBWSVal:
		switch {
		case c == ' ' || c == '\t':
		case c == '"':
			s.state = csExtQuoted
		case tchar[c]:
			s.state = csExtToken
		default:
			return false
		}
	case csExtToken:
		if tchar[c] {
			return true
		}
		return s.afterValue(c)
	case csExtQuoted:
		switch {
		case c == '"':
			s.state = csExtQuotedEnd
		case c == '\\':
			s.state = csExtQuotedPair
		case c == '\t' || c == ' ' || c == 0x21 || c >= 0x23 && c <= 0x5b || c >= 0x5d && c != 0x7f:
			// qdtext, obs-text included
		default:
			return false
		}
	case csExtQuotedPair:
		if c != '\t' && (c < 0x20 || c == 0x7f) {
			return false
		}
		s.state = csExtQuoted
	case csExtQuotedEnd:
		return s.afterValue(c)
	case csLineLF:
		if c != '\n' {
			return false
		}
		s.lineLen = 0
		if s.size == 0 {
			s.state = csTrailerStart
			return true
		}
		s.remaining = s.size
		s.state = csData
	case csDataCR:
		if c != '\r' {
			return false
		}
		s.state = csDataLF
	case csDataLF:
		if c != '\n' {
			return false
		}
		s.state = csSize0
	case csTrailerStart:
		switch {
		case c == '\r':
			s.state = csEndLF
		case tchar[c]:
			s.state = csTrailerName
		default:
			return false
		}
	case csTrailerName:
		switch {
		case tchar[c]:
		case c == ':':
			s.state = csTrailerValue
		default:
			return false
		}
	case csTrailerValue:
		switch {
		case c == '\r':
			s.state = csTrailerLF
		case c == '\t' || c >= 0x20 && c != 0x7f:
		default:
			return false
		}
	case csTrailerLF:
		if c != '\n' {
			return false
		}
		s.state = csTrailerStart
	case csEndLF:
		if c != '\n' {
			return false
		}
		s.state = csDone
	default:
		return false
	}
	return true
}

// afterValue handles the byte after a size, an extension name or an
// extension value: whitespace (which only ";" may follow), ";", or CR.
func (s *chunkedScanner) afterValue(c byte) bool {
	switch c {
	case ' ', '\t':
		s.state = csBWSSemi
	case ';':
		s.state = csExtBWSName
	case '\r':
		s.state = csLineLF
	default:
		return false
	}
	return true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
