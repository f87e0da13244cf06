package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Thousands of exchanges cut at random points, by the client and by the
// upstream: token streams, downloads, uploads and websockets, whole and
// broken off. Afterwards warden is back to idle: nothing in flight, no
// tunnel open, goroutines and descriptors where they were, and every
// upstream connection slot free. Under `make e2e-race` warden runs with the
// race detector, which makes this the race stress test of the request path.
func TestCutsAtRandomLeaveNothingBehind(t *testing.T) {
	const maxConns = 8
	up := startUpstream(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_UPSTREAM_MAX_CONNS": strconv.Itoa(maxConns),
		"WARDEN_LOG_LEVEL":          "warn",
		"WARDEN_ACCESS_LOG":         "false",
	}))
	w.waitReady(t)
	idle := mustSample(t, w)

	ops := 2400
	if raceBuild {
		ops = 1200
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d exchanges", seed, ops)
	var next, done atomic.Int64
	var mu sync.Mutex
	failures := map[string]int{}
	counts := map[string]int{}
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Minute) // a bound, never reached when all is well
	for worker := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(worker)))
			s := &stresser{w: w, rng: rng}
			for next.Add(1) <= int64(ops) && time.Now().Before(deadline) {
				name, err := s.one()
				done.Add(1)
				mu.Lock()
				counts[name]++
				if err != nil {
					failures[name+": "+err.Error()]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d exchanges: %v", done.Load(), counts)
	for f, n := range failures {
		t.Errorf("%d× %s", n, f)
	}

	// Back to idle once idle upstream connections have timed out (1 s) and
	// fasthttp's idle workers have gone (10 to 20 s).
	waitIdle(t, w, idle)
	m := metrics(t, w)
	for _, line := range []string{"\nwarden_requests_in_flight 0\n", "\nwarden_websocket_tunnels_open 0\n"} {
		if !strings.Contains(m, line) {
			t.Errorf("metrics lack %q", strings.TrimSpace(line))
		}
	}

	// Every upstream slot is free: maxConns slow requests are all at the
	// upstream at once.
	var slow sync.WaitGroup
	for range maxConns {
		slow.Add(1)
		go func() {
			defer slow.Done()
			do(t, "GET", w.url("/slow?delay=1500ms"), authHeader(), nil)
		}()
	}
	var most int64
	for end := time.Now().Add(time.Second); time.Now().Before(end) && most < maxConns; time.Sleep(10 * time.Millisecond) {
		most = max(most, up.stats(t).SlowActive)
	}
	slow.Wait()
	if most != maxConns {
		t.Errorf("at most %d of %d slow requests reached the upstream together: upstream connection slots leaked", most, maxConns)
	}
}

// stresser runs one random exchange at a time against warden.
type stresser struct {
	w   *wardenProc
	rng *rand.Rand
}

func (s *stresser) one() (string, error) {
	switch s.rng.IntN(7) {
	case 0:
		return "stream whole", s.stream("/sse?n=5&interval=1ms", -1, true)
	case 1:
		return "stream, client leaves", s.stream("/sse?n=50&interval=2ms", s.rng.IntN(600), false)
	case 2:
		by := "fin"
		if s.rng.IntN(2) == 0 {
			by = "rst"
		}
		// After at least one event: the head is out, and the cut is one.
		return "stream, upstream cuts by " + by, s.stream(fmt.Sprintf("/sse?n=20&interval=1ms&cut=%d&cutby=%s", 1+s.rng.IntN(19), by), -1, false)
	case 3:
		return "download, client leaves at random", s.download()
	case 4:
		return "upload", s.upload(false)
	case 5:
		return "upload, client leaves", s.upload(true)
	default:
		return "websocket", s.websocket()
	}
}

// stream reads an SSE stream: all of it (whole: it must end with [DONE]),
// or, with leaveAfter >= 0, that many bytes before resetting the
// connection.
func (s *stresser) stream(path string, leaveAfter int, whole bool) error {
	c, err := net.Dial("tcp", s.w.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: warden.test\r\nAuthorization: %s\r\n\r\n", path, basicAuth(testUser, testPassword))
	if leaveAfter >= 0 {
		_, _ = io.ReadFull(c, make([]byte, leaveAfter))
		_ = c.(*net.TCPConn).SetLinger(0)
		return nil
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("no response: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode != 200:
		return fmt.Errorf("status %d", resp.StatusCode)
	case whole && (err != nil || !bytes.HasSuffix(body, []byte("data: [DONE]\n\n"))):
		return fmt.Errorf("a whole stream arrived cut: %w", err)
	case !whole && err == nil:
		return fmt.Errorf("a stream the upstream cut arrived whole (%d bytes)", len(body))
	}
	return nil
}

func (s *stresser) download() error {
	size := 1 + s.rng.IntN(1<<20)
	leave := s.rng.IntN(size + size/2) // past size: reads it all
	c, err := net.Dial("tcp", s.w.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET /blob?bytes=%d HTTP/1.1\r\nHost: warden.test\r\nAuthorization: %s\r\n\r\n", size, basicAuth(testUser, testPassword))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("no response: %w", err)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, int64(leave)))
	if leave < size {
		_ = c.(*net.TCPConn).SetLinger(0)
		return nil
	}
	if err != nil || n != int64(size) {
		return fmt.Errorf("downloaded %d of %d bytes: %w", n, size, err)
	}
	return nil
}

// upload sends a body, sized or chunked; with leave, the client goes after
// part of it.
func (s *stresser) upload(leave bool) error {
	size := s.rng.IntN(256 << 10)
	chunked := s.rng.IntN(2) == 0
	c, err := net.Dial("tcp", s.w.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	framing := fmt.Sprintf("Content-Length: %d", size)
	if chunked {
		framing = "Transfer-Encoding: chunked"
	}
	bw := bufio.NewWriter(c)
	fmt.Fprintf(bw, "POST /echo HTTP/1.1\r\nHost: warden.test\r\nAuthorization: %s\r\n%s\r\n\r\n", basicAuth(testUser, testPassword), framing)
	stop := size
	if leave {
		stop = s.rng.IntN(size + 1)
	}
	piece := bytes.Repeat([]byte("u"), 8<<10)
	for sent := 0; sent < stop; {
		n := min(len(piece), stop-sent)
		if chunked {
			fmt.Fprintf(bw, "%x\r\n", n)
		}
		bw.Write(piece[:n])
		if chunked {
			bw.WriteString("\r\n")
		}
		sent += n
	}
	if leave {
		bw.Flush()
		_ = c.(*net.TCPConn).SetLinger(0)
		return nil
	}
	if chunked {
		bw.WriteString("0\r\n\r\n")
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("no response: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(fmt.Sprintf(`"body_bytes":%d`, size))) {
		return fmt.Errorf("status %d for %d bytes: %.200s", resp.StatusCode, size, body)
	}
	return nil
}

// websocket echoes a few messages, then closes properly, or resets the
// connection at a random point.
func (s *stresser) websocket() error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var raw net.Conn
	c, _, err := websocket.Dial(ctx, "ws://"+s.w.addr+"/ws", &websocket.DialOptions{
		HTTPHeader:      http.Header{"Authorization": {basicAuth(testUser, testPassword)}},
		CompressionMode: websocket.CompressionDisabled,
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, addr)
			raw = conn
			return conn, err
		}}},
	})
	if err != nil {
		return err
	}
	defer c.CloseNow()
	leaveAt := s.rng.IntN(6) // 5: close properly
	for i := range 5 {
		if i == leaveAt {
			_ = raw.(*net.TCPConn).SetLinger(0)
			raw.Close()
			return nil
		}
		msg := bytes.Repeat([]byte{byte('a' + i)}, 1+s.rng.IntN(4<<10))
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			return err
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, msg) {
			return fmt.Errorf("echo of %d bytes came back as %d", len(msg), len(got))
		}
	}
	return c.Close(websocket.StatusNormalClosure, "")
}
