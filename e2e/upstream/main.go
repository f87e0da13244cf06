// Command upstream is the model server stand-in that warden's end-to-end
// tests put behind warden: it echoes requests, streams Server-Sent Events,
// sends and swallows large bodies, answers slowly, and breaks connections on
// purpose. It listens on the address given by -listen (127.0.0.1 only in
// tests) and counts every request it receives, for /__stats.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

type stats struct {
	Requests        int64 `json:"requests"`         // every request but /__stats
	StreamsCanceled int64 `json:"streams_canceled"` // /forever handlers that saw the client go
	StreamsActive   int64 `json:"streams_active"`
	SlowActive      int64 `json:"slow_active"` // /slow requests waiting now
}

var (
	requests        atomic.Int64
	streamsCanceled atomic.Int64
	streamsActive   atomic.Int64
	slowActive      atomic.Int64
	lastMu          sync.Mutex
	last            *echoReply
)

// echoReply describes a request as the upstream saw it.
type echoReply struct {
	Method     string              `json:"method"`
	RequestURI string              `json:"request_uri"`
	Proto      string              `json:"proto"`
	Host       string              `json:"host"`
	Header     map[string][]string `json:"header"`
	BodyBytes  int64               `json:"body_bytes"`
	BodySHA256 string              `json:"body_sha256"`
	Chunked    bool                `json:"chunked"`
	RemoteAddr string              `json:"remote_addr"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "address to listen on")
	// For wrapper-mode tests, where this runs as warden's child.
	listenDelay := flag.Duration("listen-delay", 0, "wait this long before listening")
	exitAfter := flag.Duration("exit-after", 0, "exit on its own after this long (0: never)")
	exitCode := flag.Int("exit-code", 0, "status for -exit-after")
	onTerm := flag.String("on-term", "default", "on SIGTERM: default (die by the signal), graceful (exit 0), ignore")
	grandchildren := flag.Bool("grandchildren", false, "start two long sleeps, one in a new session, and print their pids")
	spyOn := flag.Int("spy", -1, "try to read process PID's secret (0: the parent's) and write a report to -spy-out, then serve (or exit with -spy-only)")
	spyOut := flag.String("spy-out", "", "where -spy writes its report")
	spyOnly := flag.Bool("spy-only", false, "exit after -spy")
	spyPtrace := flag.Bool("spy-ptrace", true, "let -spy try PTRACE_ATTACH too")
	spyFile := flag.String("spy-file", "", "let -spy try to read this file (warden's secret file) too")
	spyDelay := flag.Duration("spy-delay", 0, "wait this long before -spy")
	flag.Parse()
	if *spyOn >= 0 {
		time.Sleep(*spyDelay)
		pid := *spyOn
		if pid == 0 {
			pid = os.Getppid()
		}
		if err := spy(pid, *spyOut, *spyPtrace, *spyFile); err != nil {
			log.Fatal(err)
		}
		if *spyOnly {
			return
		}
	}
	handleTerm(*onTerm)
	if *grandchildren {
		startGrandchildren()
	}
	if *exitAfter > 0 {
		time.AfterFunc(*exitAfter, func() {
			fmt.Printf("upstream exiting with status %d\n", *exitCode)
			os.Exit(*exitCode)
		})
	}
	time.Sleep(*listenDelay)
	mux := http.NewServeMux()
	mux.HandleFunc("/__stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, stats{requests.Load(), streamsCanceled.Load(), streamsActive.Load(), slowActive.Load()})
	})
	mux.HandleFunc("/__env", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, os.Environ())
	})
	mux.HandleFunc("/__last", func(w http.ResponseWriter, r *http.Request) {
		lastMu.Lock()
		defer lastMu.Unlock()
		writeJSON(w, last)
	})
	mux.HandleFunc("/sse", counted(sse))
	mux.HandleFunc("/blob", counted(blob))
	mux.HandleFunc("/slow", counted(slow))
	mux.HandleFunc("/drop", counted(drop))
	mux.HandleFunc("/forever", counted(forever))
	mux.HandleFunc("/status/{code}", counted(status))
	mux.HandleFunc("/prefill", counted(prefill))
	mux.HandleFunc("/ws", counted(wsEcho))
	mux.HandleFunc("/", counted(echo))

	srv := &http.Server{
		Addr:              *listen,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Second, // like uvicorn
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "upstream listening on %s\n", ln.Addr())
	log.Fatal(srv.Serve(ln))
}

// wsEcho is a websocket endpoint that sends every message back.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(64 << 20)
	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// handleTerm sets what SIGTERM does; each choice prints a line with the
// time, so tests can tell when the signal came.
func handleTerm(mode string) {
	if mode == "default" {
		return
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	go func() {
		for range ch {
			fmt.Printf("upstream got SIGTERM at %d\n", time.Now().UnixMilli())
			if mode == "graceful" {
				os.Exit(0)
			}
		}
	}()
}

// startGrandchildren starts two sleeps that outlive this process unless
// someone kills them: one in this process group, one in a new session.
func startGrandchildren() {
	for _, setsid := range []bool{false, true} {
		cmd := exec.Command("sleep", "300")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: setsid}
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("grandchild pid=%d setsid=%v\n", cmd.Process.Pid, setsid)
	}
}

func counted(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// echo reads the whole body and describes the request.
func echo(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	reply := &echoReply{
		Method:     r.Method,
		RequestURI: r.RequestURI,
		Proto:      r.Proto,
		Host:       r.Host,
		Header:     r.Header,
		BodyBytes:  n,
		BodySHA256: hex.EncodeToString(h.Sum(nil)),
		Chunked:    len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked",
		RemoteAddr: r.RemoteAddr,
	}
	lastMu.Lock()
	last = reply
	lastMu.Unlock()
	if v := r.URL.Query().Get("set-header"); v != "" {
		w.Header().Add("X-Echo", v)
	}
	writeJSON(w, reply)
}

// sse sends n events (default 10), the first at once, then one every
// interval (default 100ms).
//
// With cut=K the stream breaks off after K events: cutby=fin closes the
// connection, cutby=rst resets it.
func sse(w http.ResponseWriter, r *http.Request) {
	n := intParam(r, "n", 10)
	interval := durationParam(r, "interval", 100*time.Millisecond)
	cut := intParam(r, "cut", -1)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher := w.(http.Flusher)
	for i := range n {
		if i == cut {
			breakOff(w, r.URL.Query().Get("cutby") == "rst")
			return
		}
		if i > 0 {
			select {
			case <-time.After(interval):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "id: %d\ndata: {\"token\":%d,\"sent_unix_ms\":%d}\n\n", i, i, time.Now().UnixMilli())
		flusher.Flush()
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// breakOff ends a response half-way: the connection closes (or resets)
// without the rest of the body.
func breakOff(w http.ResponseWriter, reset bool) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// blob sends bytes=N bytes of a repeating pattern; with chunked=1 the length
// is not announced.
func blob(w http.ResponseWriter, r *http.Request) {
	n := int64(intParam(r, "bytes", 1<<20))
	if r.URL.Query().Get("chunked") == "" {
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i % 251)
	}
	for n > 0 {
		m := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:m]); err != nil {
			return
		}
		n -= m
	}
}

// slow waits delay (default 2s) before sending its headers.
func slow(w http.ResponseWriter, r *http.Request) {
	slowActive.Add(1)
	defer slowActive.Add(-1)
	select {
	case <-time.After(durationParam(r, "delay", 2*time.Second)):
	case <-r.Context().Done():
		return
	}
	_, _ = io.WriteString(w, "slow answer\n")
}

// drop breaks the connection: with when=headers before any response byte,
// with when=body after half of a 1 MiB body announced by Content-Length (or
// chunked=1).
func drop(w http.ResponseWriter, r *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "no hijack", http.StatusInternalServerError)
		return
	}
	conn, bw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	if r.URL.Query().Get("when") == "headers" {
		return
	}
	chunked := r.URL.Query().Get("chunked") != ""
	writeHalfBody(bw.Writer, chunked)
	_ = bw.Flush()
	time.Sleep(50 * time.Millisecond)
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // reset, not a clean FIN
	}
}

func writeHalfBody(bw *bufio.Writer, chunked bool) {
	half := make([]byte, 512<<10)
	if chunked {
		fmt.Fprint(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		fmt.Fprintf(bw, "%x\r\n", len(half))
		_, _ = bw.Write(half)
		fmt.Fprint(bw, "\r\n")
		return
	}
	fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", 2*len(half))
	_, _ = bw.Write(half)
}

// forever streams a small event every 50ms until the client goes away, and
// counts the cancellations it sees.
func forever(w http.ResponseWriter, r *http.Request) {
	streamsActive.Add(1)
	defer streamsActive.Add(-1)
	w.Header().Set("Content-Type", "text/event-stream")
	flusher := w.(http.Flusher)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-r.Context().Done():
			streamsCanceled.Add(1)
			return
		case <-t.C:
		}
		if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
			streamsCanceled.Add(1)
			return
		}
		flusher.Flush()
	}
}

// prefill sends its headers at once, stays silent for delay (a model's
// prefill), then sends two events; with split=1 it also pauses for delay in
// the middle of the second event. type sets the Content-Type (default
// text/event-stream).
func prefill(w http.ResponseWriter, r *http.Request) {
	delay := durationParam(r, "delay", time.Second)
	ct := r.URL.Query().Get("type")
	if ct == "" {
		ct = "text/event-stream"
	}
	w.Header().Set("Content-Type", ct)
	flusher := w.(http.Flusher)
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	pause := func() bool {
		select {
		case <-time.After(delay):
			return true
		case <-r.Context().Done():
			return false
		}
	}
	if !pause() {
		return
	}
	fmt.Fprint(w, "data: first\n\n")
	flusher.Flush()
	fmt.Fprint(w, "data: second, part one\n")
	flusher.Flush()
	if r.URL.Query().Get("split") != "" && !pause() {
		return
	}
	fmt.Fprint(w, "data: second, part two\n\n")
	flusher.Flush()
}

// status answers with the status code in the path and, for HEAD and 304,
// the headers a GET would have had.
func status(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(r.PathValue("code"))
	if err != nil || code < 200 || code > 599 {
		http.Error(w, "bad code", http.StatusBadRequest)
		return
	}
	body := "status " + strconv.Itoa(code) + "\n"
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("ETag", `"v1"`)
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}

func intParam(r *http.Request, name string, def int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(name)); err == nil {
		return v
	}
	return def
}

func durationParam(r *http.Request, name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(r.URL.Query().Get(name)); err == nil {
		return v
	}
	return def
}
