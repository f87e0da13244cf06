package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// loadMix drives warden with several kinds of clients at once, each in a
// loop, and records every answer that is not the one the kind expects.
type loadMix struct {
	w      *wardenProc
	client *http.Client
	stop   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	counts map[string]int
	bad    []string // unexpected answers, the first few
	nbad   int
	// allow, when it returns true for an error, does not count it as bad
	// (a fault test expects some kinds of failure).
	allow func(kind string, status int, code string, err error) bool

	// Every exchange counts against max; exhausted closes when it is spent
	// and the workers stop.
	total     atomic.Int64
	max       atomic.Int64
	exhausted chan struct{}
	once      sync.Once
}

// limit stops the load after n exchanges in all.
func (l *loadMix) limit(n int64) { l.max.Store(n) }

// The kinds of client, each a function that does one exchange and returns
// the status it got, warden's error code if any, and an error if the answer
// was not what it should be.
var loadKinds = map[string]func(l *loadMix) (int, string, error){
	"get":      (*loadMix).get,
	"unauth":   (*loadMix).unauth,
	"sse":      (*loadMix).sse,
	"upload":   (*loadMix).upload,
	"download": (*loadMix).download,
	"ws":       (*loadMix).ws,
	"vanish":   (*loadMix).vanish,
}

// startLoad starts workers[kind] clients of each kind against w.
func startLoad(t *testing.T, w *wardenProc, workers map[string]int) *loadMix {
	t.Helper()
	l := &loadMix{
		w:         w,
		stop:      make(chan struct{}),
		exhausted: make(chan struct{}),
		counts:    map[string]int{},
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, DisableCompression: true,
		}},
	}
	for kind, n := range workers {
		f, ok := loadKinds[kind]
		if !ok {
			t.Fatalf("no load kind %q", kind)
		}
		for range n {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for {
					select {
					case <-l.stop:
						return
					default:
					}
					if n := l.total.Add(1); l.max.Load() > 0 && n > l.max.Load() {
						l.once.Do(func() { close(l.exhausted) })
						return
					}
					status, code, err := f(l)
					l.record(kind, status, code, err)
				}
			}()
		}
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

func (l *loadMix) record(kind string, status int, code string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.counts[kind]++
		return
	}
	if l.allow != nil && l.allow(kind, status, code, err) {
		l.counts[kind+" (allowed failure)"]++
		return
	}
	select {
	case <-l.stop:
		return // cut by Stop: not the proxy's fault
	default:
	}
	l.nbad++
	if len(l.bad) < 20 {
		l.bad = append(l.bad, fmt.Sprintf("%s %s: status %d %s: %v", time.Now().Format("15:04:05.000"), kind, status, code, err))
	}
}

// Stop ends the load and waits for the workers.
func (l *loadMix) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.client.CloseIdleConnections()
}

// results returns the successes per kind and the unexpected answers.
func (l *loadMix) results() (map[string]int, int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	counts := map[string]int{}
	for k, v := range l.counts {
		counts[k] = v
	}
	return counts, l.nbad, append([]string(nil), l.bad...)
}

func (l *loadMix) request(method, path, password string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(method, l.w.url(path), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", basicAuth(testUser, password))
	return l.client.Do(req)
}

func statusErr(resp *http.Response, want int) (int, string, error) {
	code := resp.Header.Get("X-Warden-Error")
	if resp.StatusCode != want {
		return resp.StatusCode, code, fmt.Errorf("want %d", want)
	}
	return resp.StatusCode, code, nil
}

func (l *loadMix) get() (int, string, error) {
	resp, err := l.request(http.MethodGet, "/echo?k=v", testPassword, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if st, code, serr := statusErr(resp, 200); serr != nil {
		return st, code, serr
	}
	if err != nil {
		return resp.StatusCode, "", err
	}
	var e echoReply
	if err := json.Unmarshal(body, &e); err != nil {
		return 200, "", fmt.Errorf("bad echo %q", body)
	}
	if _, leaked := e.Header["Authorization"]; leaked || e.RequestURI != "/echo?k=v" {
		return 200, "", fmt.Errorf("upstream saw %+v", e)
	}
	return 200, "", nil
}

func (l *loadMix) unauth() (int, string, error) {
	resp, err := l.request(http.MethodGet, "/echo", "wrong-password", nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	st, code, serr := statusErr(resp, 401)
	if serr == nil && (code != "unauthorized" || resp.Header.Get("WWW-Authenticate") == "") {
		serr = errors.New("401 without its headers")
	}
	return st, code, serr
}

func (l *loadMix) sse() (int, string, error) {
	resp, err := l.request(http.MethodGet, "/sse?n=5&interval=10ms", testPassword, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if st, code, serr := statusErr(resp, 200); serr != nil {
		return st, code, serr
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 200, "", err
	}
	if n := strings.Count(string(b), `"token"`); n != 5 || !bytes.HasSuffix(b, []byte("data: [DONE]\n\n")) {
		return 200, "", fmt.Errorf("stream of %d events: %q", n, b)
	}
	return 200, "", nil
}

func (l *loadMix) upload() (int, string, error) {
	body := make([]byte, 256<<10)
	_, _ = rand.Read(body)
	sum := sha256.Sum256(body)
	resp, err := l.request(http.MethodPost, "/echo", testPassword, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if st, code, serr := statusErr(resp, 200); serr != nil {
		return st, code, serr
	}
	var e echoReply
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		return 200, "", err
	}
	if e.BodyBytes != int64(len(body)) || e.BodySHA256 != hex.EncodeToString(sum[:]) {
		return 200, "", fmt.Errorf("upload arrived as %d bytes, sha %s", e.BodyBytes, e.BodySHA256)
	}
	return 200, "", nil
}

func (l *loadMix) download() (int, string, error) {
	const size = 1 << 20
	resp, err := l.request(http.MethodGet, "/blob?bytes="+strconv.Itoa(size), testPassword, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if st, code, serr := statusErr(resp, 200); serr != nil {
		return st, code, serr
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return 200, "", fmt.Errorf("downloaded %d of %d bytes: %w", n, size, err)
	}
	if n != size {
		return 200, "", fmt.Errorf("downloaded %d of %d bytes", n, size)
	}
	return 200, "", nil
}

func (l *loadMix) ws() (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+l.w.addr+"/ws", &websocket.DialOptions{
		HTTPHeader:      http.Header{"Authorization": {basicAuth(testUser, testPassword)}},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
			return status, resp.Header.Get("X-Warden-Error"), err
		}
		return status, "", err
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for i := range 5 {
		msg := bytes.Repeat([]byte{byte('a' + i)}, 1+i*20000)
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			return 101, "", err
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			return 101, "", err
		}
		if !bytes.Equal(got, msg) {
			return 101, "", fmt.Errorf("echo of %d bytes came back as %d", len(msg), len(got))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		return 101, "", fmt.Errorf("close: %w", err)
	}
	return 101, "", nil
}

// vanish reads the start of an endless stream and goes away.
func (l *loadMix) vanish() (int, string, error) {
	resp, err := l.request(http.MethodGet, "/forever", testPassword, nil)
	if err != nil {
		return 0, "", err
	}
	if st, code, serr := statusErr(resp, 200); serr != nil {
		resp.Body.Close()
		return st, code, serr
	}
	br := bufio.NewReader(resp.Body)
	for range 2 {
		if _, err := br.ReadString('\n'); err != nil {
			resp.Body.Close()
			return 200, "", err
		}
	}
	resp.Body.Close()
	return 200, "", nil
}

// sample is warden's state, read from /metrics.
type sample struct {
	at                     time.Time
	goroutines, fds, inFly float64
	rssMiB                 float64
	disconnects            float64
}

func readSample(w *wardenProc) (sample, error) {
	resp, err := quickClient.Get(w.adminURL("/metrics"))
	if err != nil {
		return sample{}, err
	}
	defer resp.Body.Close()
	s := sample{at: time.Now()}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		if strings.HasPrefix(name, "warden_client_disconnects_total{") {
			s.disconnects += v // every phase
			continue
		}
		switch name {
		case "go_goroutines":
			s.goroutines = v
		case "process_open_fds":
			s.fds = v
		case "process_resident_memory_bytes":
			s.rssMiB = v / (1 << 20)
		case "warden_requests_in_flight":
			s.inFly = v
		}
	}
	return s, sc.Err()
}

var quickClient = &http.Client{Timeout: 2 * time.Second}
