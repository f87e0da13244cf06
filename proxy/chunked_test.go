package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
)

// refChunked is a second, independent reading of RFC 9112 §7.1, line by
// line where chunkedScanner goes byte by byte: the tests hold the two to the
// same verdicts. It returns the decoded data and how many bytes of b the
// body took, or why it is malformed, or that b ends before the body does.
func refChunked(b []byte) (data []byte, n int, verdict string) {
	for {
		line, rest, ok := bytes.Cut(b[n:], []byte("\r\n"))
		if !ok {
			if badPrefix(b[n:]) {
				return data, n, "bad line"
			}
			return data, n, "incomplete"
		}
		size, good := refChunkLine(line)
		if !good {
			return data, n, "bad line"
		}
		n += len(line) + 2
		if size == 0 {
			break
		}
		if int64(len(rest)) < size {
			return data, n, "incomplete"
		}
		data = append(data, rest[:size]...)
		n += int(size)
		switch tail := b[n:]; {
		case bytes.HasPrefix(tail, []byte("\r\n")):
			n += 2
		case len(tail) == 0 || len(tail) == 1 && tail[0] == '\r':
			return data, n, "incomplete"
		default:
			return data, n, "bad data end"
		}
	}
	for { // the trailer section
		line, _, ok := bytes.Cut(b[n:], []byte("\r\n"))
		if !ok {
			if badPrefix(b[n:]) {
				return data, n, "bad trailer"
			}
			return data, n, "incomplete"
		}
		n += len(line) + 2
		if len(line) == 0 {
			return data, n, ""
		}
		if !refTrailerLine(line) {
			return data, n, "bad trailer"
		}
	}
}

// badPrefix: a line not yet ended that already holds an LF or a CR that is
// not its last byte can never end well.
func badPrefix(b []byte) bool {
	if bytes.IndexByte(b, '\n') >= 0 {
		return true
	}
	i := bytes.IndexByte(b, '\r')
	return i >= 0 && i != len(b)-1
}

func isTchar(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// refChunkLine checks chunk-size [ chunk-ext ], without its CRLF.
func refChunkLine(l []byte) (size int64, ok bool) {
	i := 0
	for i < len(l) {
		d, isHex := hexDigit(l[i])
		if !isHex {
			break
		}
		if i == maxChunkDigits {
			return 0, false
		}
		size = size*16 + int64(d)
		i++
	}
	if i == 0 {
		return 0, false
	}
	bws := func() {
		for i < len(l) && (l[i] == ' ' || l[i] == '\t') {
			i++
		}
	}
	token := func() bool {
		start := i
		for i < len(l) && isTchar(l[i]) {
			i++
		}
		return i > start
	}
	for i < len(l) {
		bws()
		if i == len(l) || l[i] != ';' {
			return 0, false
		}
		i++
		bws()
		if !token() {
			return 0, false
		}
		mark := i
		bws()
		if i < len(l) && l[i] == '=' {
			i++
			bws()
			if i < len(l) && l[i] == '"' {
				if !quoted(l, &i) {
					return 0, false
				}
			} else if !token() {
				return 0, false
			}
		} else {
			i = mark
		}
	}
	return size, true
}

func quoted(l []byte, i *int) bool {
	*i++ // the opening quote
	for *i < len(l) {
		c := l[*i]
		switch {
		case c == '"':
			*i++
			return true
		case c == '\\':
			if *i+1 == len(l) {
				return false
			}
			e := l[*i+1]
			if e != '\t' && (e < 0x20 || e == 0x7f) {
				return false
			}
			*i += 2
		case c == '\t' || c == ' ' || c == '!' || c >= 0x23 && c <= 0x5b || c >= 0x5d && c <= 0x7e || c >= 0x80:
			*i++
		default:
			return false
		}
	}
	return false
}

func refTrailerLine(l []byte) bool {
	name, value, ok := bytes.Cut(l, []byte(":"))
	if !ok || len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !isTchar(c) {
			return false
		}
	}
	for _, c := range value {
		if c != '\t' && (c < 0x20 || c == 0x7f) {
			return false
		}
	}
	return true
}

// scan runs chunkedScanner over b in the pieces given, decoding as it goes,
// and says what it made of it.
func scan(b []byte, pieces []int) (data []byte, n int, verdict string) {
	var s chunkedScanner
	for len(b) > 0 {
		step := len(b)
		if len(pieces) > 0 {
			step = min(max(pieces[0], 1), len(b))
			pieces = pieces[1:]
		}
		piece := b[:step]
		for len(piece) > 0 {
			if s.inData() {
				k := int(min(s.remaining, int64(len(piece))))
				data = append(data, piece[:k]...)
				s.consumeData(k)
				piece, n = piece[k:], n+k
				continue
			}
			k, err := s.framing(piece)
			n += k
			piece = piece[k:]
			if err != nil {
				return data, n, "bad"
			}
			if s.done() {
				return data, n, ""
			}
		}
		b = b[step:]
	}
	return data, n, "incomplete"
}

// sameVerdict compares the scanner's verdict with the reference's. The
// reference cannot judge an unfinished line, so for a body cut short the
// scanner may already have refused it; a scanner that refused a good prefix
// would also refuse the whole line, which the complete cases catch.
func sameVerdict(ref, got string) bool {
	switch ref {
	case "":
		return got == ""
	case "incomplete":
		return got == "incomplete" || got == "bad"
	}
	return got == "bad"
}

var chunkedCases = []struct {
	name, body string
	ok         bool
}{
	{"one chunk", "5\r\nhello\r\n0\r\n\r\n", true},
	{"upper and lower hex", "a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n", true},
	{"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", true},
	{"an extension name", "5;a\r\nhello\r\n0\r\n\r\n", true},
	{"a token value", "5;a=b\r\nhello\r\n0\r\n\r\n", true},
	{"whitespace around ; and =", "5 ; a = b\r\nhello\r\n0\r\n\r\n", true},
	{"whitespace between extensions", "5;a ;b=c\t;d\r\nhello\r\n0\r\n\r\n", true},
	{"a quoted value", "5;a=\"b c;d=e\"\r\nhello\r\n0\r\n\r\n", true},
	{"escapes in a quoted value", "5;a=\"\\\"\\\\\\ \"\r\nhello\r\n0\r\n\r\n", true},
	{"obs-text in a quoted value", "5;a=\"\xff\x80\"\r\nhello\r\n0\r\n\r\n", true},
	{"an extension on the last chunk", "5\r\nhello\r\n0;x=1\r\n\r\n", true},
	{"trailer fields", "5\r\nhello\r\n0\r\nX-A: 1\r\nx-b:\r\n\r\n", true},
	{"no chunks at all", "0\r\n\r\n", true},

	{"a size followed by a space", "5 \r\nhello\r\n0\r\n\r\n", false},
	{"a size followed by a tab", "5\t\r\nhello\r\n0\r\n\r\n", false},
	{"an empty extension", "5;\r\nhello\r\n0\r\n\r\n", false},
	{"an empty extension after whitespace", "5; \r\nhello\r\n0\r\n\r\n", false},
	{"two semicolons", "5;;a\r\nhello\r\n0\r\n\r\n", false},
	{"an unbalanced quote", "5;a=\"b\r\nhello\r\n0\r\n\r\n", false},
	{"a space in a token value", "5;a=b c\r\nhello\r\n0\r\n\r\n", false},
	{"whitespace after a value", "5;a=b \r\nhello\r\n0\r\n\r\n", false},
	{"whitespace after a name", "5;a \r\nhello\r\n0\r\n\r\n", false},
	{"an empty value", "5;a=\r\nhello\r\n0\r\n\r\n", false},
	{"a value without a name", "5;=b\r\nhello\r\n0\r\n\r\n", false},
	{"text after a quoted value", "5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", false},
	{"a NUL in a quoted value", "5;a=\"\x00\"\r\nhello\r\n0\r\n\r\n", false},
	{"an escaped LF", "5;a=\"\\\n\"\r\nhello\r\n0\r\n\r\n", false},
	{"no size", ";a\r\nhello\r\n0\r\n\r\n", false},
	{"a 0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", false},
	{"a negative size", "-5\r\nhello\r\n0\r\n\r\n", false},
	{"a size of 16 digits", "0000000000000005\r\nhello\r\n0\r\n\r\n", false},
	{"a bare LF after the size", "5\nhello\r\n0\r\n\r\n", false},
	{"a bare CR after the size", "5\rhello\r\n0\r\n\r\n", false},
	{"data longer than its size", "3\r\nhello\r\n0\r\n\r\n", false},
	{"a bare LF after the data", "5\r\nhello\n0\r\n\r\n", false},
	{"a space before the size", " 5\r\nhello\r\n0\r\n\r\n", false},
	{"a last chunk followed by a space", "0 \r\n\r\n", false},
	{"a trailer without a colon", "0\r\nX\r\n\r\n", false},
	{"a trailer name with a space", "0\r\nX A: 1\r\n\r\n", false},
	{"a folded trailer", "0\r\nX: 1\r\n 2\r\n\r\n", false},
	{"a trailer ended by a bare LF", "0\r\nX: 1\n\r\n", false},
	{"a bare LF ending the trailers", "0\r\n\n", false},
	{"a control byte in a trailer", "0\r\nX: \x01\r\n\r\n", false},
}

// chunkedScanner and the reference agree on every case, read whole, byte by
// byte and in pieces of every size, and both give the expected verdict.
func TestChunkedScannerFollowsRFC9112(t *testing.T) {
	t.Parallel()
	for _, tc := range chunkedCases {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.body)
			refData, refN, ref := refChunked(b)
			if (ref == "") != tc.ok {
				t.Fatalf("the reference says %q, want ok=%t", ref, tc.ok)
			}
			for size := 0; size <= len(b); size++ {
				var pieces []int
				if size > 0 {
					for range len(b) {
						pieces = append(pieces, size)
					}
				}
				data, n, got := scan(b, pieces)
				if !sameVerdict(ref, got) {
					t.Fatalf("in pieces of %d: %q after %d bytes, the reference %q after %d", size, got, n, ref, refN)
				}
				if got == "" && (n != refN || !bytes.Equal(data, refData)) {
					t.Fatalf("in pieces of %d: %d bytes, data %q; the reference %d bytes, data %q", size, n, data, refN, refData)
				}
			}
		})
	}
}

func TestChunkedScannerLimits(t *testing.T) {
	t.Parallel()
	long := "5;" + strings.Repeat("x", maxChunkLine) + "\r\nhello\r\n0\r\n\r\n"
	if _, _, v := scan([]byte(long), nil); v != "bad" {
		t.Errorf("a chunk line over %d bytes: %q, want refused", maxChunkLine, v)
	}
	fits := "5;" + strings.Repeat("x", maxChunkLine-5) + "\r\nhello\r\n0\r\n\r\n"
	if _, _, v := scan([]byte(fits), nil); v != "" {
		t.Errorf("a chunk line of %d bytes: %q, want accepted", maxChunkLine-1, v)
	}
	trailers := "0\r\n" + strings.Repeat("X: 1\r\n", maxTrailerBytes/6+1) + "\r\n"
	if _, _, v := scan([]byte(trailers), nil); v != "bad" {
		t.Errorf("a trailer section over %d bytes: %q, want refused", maxTrailerBytes, v)
	}
}

// FuzzChunkedScanner holds chunkedScanner to the reference on any input,
// whole and cut in pieces.
func FuzzChunkedScanner(f *testing.F) {
	for _, tc := range chunkedCases {
		f.Add([]byte(tc.body), uint8(3))
	}
	f.Fuzz(func(t *testing.T, b []byte, piece uint8) {
		if len(b) > 2048 {
			return
		}
		refData, refN, ref := refChunked(b)
		for _, pieces := range [][]int{nil, {int(piece)%7 + 1, 1, int(piece)%13 + 1, 2, 1, 1, 5, 3, 1}} {
			data, n, got := scan(b, pieces)
			if !sameVerdict(ref, got) {
				t.Fatalf("pieces %v: %q after %d bytes; the reference %q after %d\ninput %q", pieces, got, n, ref, refN, b)
			}
			if got == "" && (n != refN || !bytes.Equal(data, refData)) {
				t.Fatalf("pieces %v: %d bytes %q; the reference %d bytes %q\ninput %q", pieces, n, data, refN, refData, b)
			}
		}
	})
}

// upstreamBody never takes a body that the upstream broke off for a whole
// one, whatever the framing and wherever the cut, by a close or a reset.
func TestUpstreamBodyReportsEveryCut(t *testing.T) {
	t.Parallel()
	bodies := []struct {
		framing bodyFraming
		length  int64
		wire    string
		data    string
	}{
		{bodyFixed, 10, "0123456789", "0123456789"},
		{bodyChunked, 0, "3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nT: 1\r\n\r\n", "abcdefg"},
		{bodyUntilClose, 0, "until the close", "until the close"},
	}
	for _, b := range bodies {
		for cut := 0; cut <= len(b.wire); cut++ {
			for _, end := range []error{io.EOF, syscall.ECONNRESET} {
				name := fmt.Sprintf("framing %d, cut after %d of %d bytes by %v", b.framing, cut, len(b.wire), end)
				r := bufio.NewReaderSize(&endingReader{data: []byte(b.wire[:cut]), end: end}, 16)
				var body upstreamBody
				body.reset(&conn{br: r}, b.framing, b.length)
				got, err := io.ReadAll(readerOnly{&body})
				whole, want := cut == len(b.wire), b.data
				if b.framing == bodyUntilClose {
					// Only the close delimits this body: a clean one is its
					// end wherever it comes, a reset never.
					whole, want = errors.Is(end, io.EOF), b.wire[:cut]
				}
				if whole {
					if err != nil || string(got) != want {
						t.Errorf("%s: %q, %v; want the whole body", name, got, err)
					}
					continue
				}
				if err == nil {
					t.Errorf("%s: read %q and a clean end", name, got)
				}
				if !strings.HasPrefix(b.data, string(got)) {
					t.Errorf("%s: read %q, not a prefix of %q", name, got, b.data)
				}
			}
		}
	}
}

// endingReader returns data a few bytes at a time, then end.
type endingReader struct {
	data []byte
	end  error
}

func (r *endingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.end
	}
	n := copy(p[:min(len(p), 3)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// readerOnly hides upstreamBody's other methods from io.ReadAll.
type readerOnly struct{ io.Reader }
