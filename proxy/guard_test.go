package proxy

import (
	"errors"
	"io"
	"net"
	"testing"
)

func TestStreamFieldOfFasthttpIsFound(t *testing.T) {
	t.Parallel()
	if !streamField.ok {
		t.Fatal("the reader of fasthttp's chunked request body stream was not found: chunked request bodies would all be refused; see guard.go")
	}
}

// The guard hands on every byte before the first one outside the grammar,
// then fails; after a body that ends well it passes the next request's
// bytes through unread.
func TestGuardedConnStopsAtTheFirstBadByte(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
		fails          bool
	}{
		{"a good body, then the next request", "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n5 \r\n", "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n5 \r\n", false},
		{"a space after a size", "5\r\nhello\r\n3 \r\nabc\r\n0\r\n\r\n", "5\r\nhello\r\n3 ", true},
		{"an empty extension", "5;\r\nhello\r\n", "5;", true},
		{"a bad trailer", "0\r\nX\r\n\r\n", "0\r\nX", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, piece := range []int{1, 2, 7, 1 << 10} {
				client, server := net.Pipe()
				go func() {
					for b := []byte(tc.in); len(b) > 0; {
						n := min(piece, len(b))
						if _, err := client.Write(b[:n]); err != nil {
							return
						}
						b = b[n:]
					}
					client.Close()
				}()
				g := &guardedConn{Conn: server, active: true}
				got, err := io.ReadAll(g)
				server.Close()
				if string(got) != tc.want {
					t.Fatalf("in pieces of %d: read %q, want %q", piece, got, tc.want)
				}
				if fails := errors.Is(err, errBadChunk); fails != tc.fails {
					t.Fatalf("in pieces of %d: error %v, want a framing error: %t", piece, err, tc.fails)
				}
			}
		})
	}
}
