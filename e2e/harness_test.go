// Package e2e tests the warden binary as a process, against real upstream
// processes and real clients. It imports nothing of warden: what it checks is
// what a user sees at the process boundary.
//
// A test that owns its processes and ports (nearly all) says t.Parallel():
// they mostly wait, on drain delays and timeouts, and overlap (make e2e runs
// 8 at once). The few that measure time or put load on the machine do not,
// and so run alone, before the others.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binaries built once by TestMain.
var (
	wardenBin   string
	upstreamBin string
	// raceBuild builds warden with the race detector (WARDEN_E2E_RACE=1).
	raceBuild = os.Getenv("WARDEN_E2E_RACE") == "1"
)

const (
	testUser     = "paperspace"
	testPassword = "c0rrect-h0rse:battery stäple"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "warden-e2e-")
	if err == nil {
		// Tests run the binaries as an unprivileged user too.
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	wardenBin = filepath.Join(dir, "warden")
	upstreamBin = filepath.Join(dir, "upstream")
	for _, b := range []struct{ out, pkg string }{{wardenBin, ".."}, {upstreamBin, "./upstream"}} {
		args := []string{"build", "-o", b.out}
		env := append(os.Environ(), "CGO_ENABLED=0")
		if raceBuild && b.out == wardenBin {
			// WARDEN_E2E_RACE=1: run warden itself under the race detector.
			args = append(args, "-race")
			env = append(os.Environ(), "CGO_ENABLED=1")
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output while tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a started process whose output is kept for the test.
type proc struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	out     *syncBuffer
	done    chan struct{}
	waitErr error
}

// startProc starts a process with exactly env as its environment (plus PATH
// and HOME), and stops it when the test ends.
func startProc(t testing.TB, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	return startProcAs(t, nil, name, env, bin, args...)
}

// startProcAs is startProc with the process running as cred (nil: as the
// test).
func startProcAs(t testing.TB, cred *syscall.Credential, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	if cred != nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if strings.Contains(p.out.String(), "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race", name)
		}
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.out.String())
		}
	})
	return p
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %s", p.name, timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// pid returns the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// freeAddr returns a loopback address with a port that was free a moment
// ago and that no other call has returned. The port is below the kernel's
// ephemeral range, so that nothing else of the run takes it meanwhile: not
// a process listening on port 0, not an outgoing connection's local port.
// (An address handed out here and bound later by the process it was meant
// for could otherwise answer another test's probe first.)
func freeAddr(t testing.TB) string {
	t.Helper()
	low := ephemeralLow()
	for range 200 {
		port := 10000 + rand.IntN(low-10000)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		portsMu.Lock()
		seen := portsGiven[addr]
		portsMu.Unlock()
		if seen {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken
		}
		ln.Close()
		portsMu.Lock()
		seen = portsGiven[addr]
		portsGiven[addr] = true
		portsMu.Unlock()
		if !seen {
			return addr
		}
	}
	t.Fatal("no unused port found")
	return ""
}

// ephemeralLow is the first port of the kernel's ephemeral range
// (ip_local_port_range), 32768 when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 12000 {
				return n
			}
		}
	}
	return 32768
}

var (
	portsMu    sync.Mutex
	portsGiven = map[string]bool{}
)

// upstreamProc is the Go test upstream.
type upstreamProc struct {
	*proc
	addr string
}

// startUpstream starts the test upstream on a port the kernel picks.
func startUpstream(t testing.TB) *upstreamProc {
	t.Helper()
	p := startProc(t, "upstream", nil, upstreamBin, "-listen", "127.0.0.1:0")
	var addr string
	waitFor(t, 5*time.Second, "upstream to listen", func() bool {
		out := p.out.String()
		i := strings.Index(out, "upstream listening on ")
		if i < 0 {
			return false
		}
		addr, _, _ = strings.Cut(out[i+len("upstream listening on "):], "\n")
		return true
	})
	return &upstreamProc{proc: p, addr: addr}
}

// startUpstreamAt starts the test upstream on addr (to restart one on the
// address warden already points at).
func startUpstreamAt(t testing.TB, addr string) *upstreamProc {
	t.Helper()
	p := startProc(t, "upstream", nil, upstreamBin, "-listen", addr)
	waitFor(t, 5*time.Second, "upstream to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return &upstreamProc{proc: p, addr: addr}
}

type upstreamStats struct {
	Requests        int64 `json:"requests"`
	StreamsCanceled int64 `json:"streams_canceled"`
	StreamsActive   int64 `json:"streams_active"`
	SlowActive      int64 `json:"slow_active"`
}

// stats asks the upstream directly (not through warden) what it has seen.
func (u *upstreamProc) stats(t testing.TB) upstreamStats {
	t.Helper()
	var s upstreamStats
	getJSON(t, "http://"+u.addr+"/__stats", &s)
	return s
}

// wardenProc is a running warden.
type wardenProc struct {
	*proc
	addr  string // proxy listener
	admin string // admin listener
}

func (w *wardenProc) url(path string) string      { return "http://" + w.addr + path }
func (w *wardenProc) adminURL(path string) string { return "http://" + w.admin + path }

// startWarden starts warden with env on free loopback ports and waits until
// /healthz answers. Variables in env override the defaults set here.
func startWarden(t testing.TB, env map[string]string) *wardenProc {
	t.Helper()
	w := startWardenNoWait(t, env)
	waitFor(t, 5*time.Second, "warden /healthz", func() bool {
		if w.exited() {
			t.Fatalf("warden exited: %s", w.out.String())
		}
		resp, err := http.Get(w.adminURL("/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return w
}

func startWardenNoWait(t testing.TB, env map[string]string) *wardenProc {
	t.Helper()
	return startWardenArgs(t, env)
}

// startWardenArgs starts warden with args and env, without waiting for it
// to serve. Variables in env override the defaults set here. Unless env
// names them, the listeners take ports the kernel picks (127.0.0.1:0), and
// their addresses are read from the start line, which warden logs once they
// are bound: a port picked here and bound later could meanwhile be taken
// by some other test's outgoing connection. A warden that exits before its
// start line (a configuration error) is returned without addresses.
func startWardenArgs(t testing.TB, env map[string]string, args ...string) *wardenProc {
	t.Helper()
	merged := map[string]string{
		"WARDEN_LISTEN":       "127.0.0.1:0",
		"WARDEN_ADMIN_LISTEN": "127.0.0.1:0",
		"WARDEN_LOG_LEVEL":    "debug",
	}
	for k, v := range env {
		merged[k] = v
	}
	learn := true
	switch merged["WARDEN_LOG_LEVEL"] {
	case "trace", "debug", "info":
	default:
		// No start line to learn from: ports picked here.
		learn = false
		for _, name := range []string{"WARDEN_LISTEN", "WARDEN_ADMIN_LISTEN"} {
			if merged[name] == "127.0.0.1:0" {
				merged[name] = freeAddr(t)
			}
		}
	}
	var list []string
	for k, v := range merged {
		list = append(list, k+"="+v)
	}
	p := startProc(t, "warden", list, wardenBin, args...)
	w := &wardenProc{proc: p, addr: merged["WARDEN_LISTEN"], admin: merged["WARDEN_ADMIN_LISTEN"]}
	if learn {
		w.learnAddrs(t)
	}
	return w
}

// learnAddrs reads the listeners' addresses from warden's start line.
func (w *wardenProc) learnAddrs(t testing.TB) {
	t.Helper()
	if fields := startLine(t, w.proc); fields != nil {
		w.addr, _ = fields["listen"].(string)
		w.admin, _ = fields["admin_listen"].(string)
	}
}

// startLine waits for warden's start line and returns its fields, or nil if
// the process exited without one.
func startLine(t testing.TB, p *proc) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		out := p.out.String()
		if i := strings.Index(out, `"message":"warden started"`); i >= 0 {
			line := out[strings.LastIndexByte(out[:i], '\n')+1:]
			line, _, _ = strings.Cut(line, "\n")
			var fields map[string]any
			if err := json.Unmarshal([]byte(line), &fields); err != nil {
				t.Fatalf("start line %q: %v", line, err)
			}
			return fields
		}
		if p.exited() {
			return nil
		}
	}
	t.Fatalf("warden logged no start line within 10s:\n%s", p.out.String())
	return nil
}

// protectedEnv is the usual setup: protected mode in front of upstream.
func protectedEnv(upstreamAddr string) map[string]string {
	return map[string]string{
		"WARDEN_UPSTREAM": "http://" + upstreamAddr,
		"WARDEN_PASSWORD": testPassword,
	}
}

// waitReady waits until /readyz is 200.
func (w *wardenProc) waitReady(t testing.TB) {
	t.Helper()
	waitFor(t, 5*time.Second, "warden /readyz", func() bool {
		resp, err := http.Get(w.adminURL("/readyz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// logLines parses warden's JSON log lines.
func (w *wardenProc) logLines(t testing.TB) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(w.out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		lines = append(lines, m)
	}
	return lines
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// client is an HTTP client that never follows redirects and times out.
var client = &http.Client{
	Timeout: 60 * time.Second,
	Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// do sends a request through client and returns the response with its body
// read.
func do(t testing.TB, method, url string, header http.Header, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

func authHeader() http.Header {
	return http.Header{"Authorization": {basicAuth(testUser, testPassword)}}
}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// rawExchange sends raw bytes on a new connection and returns everything
// read until the server closes or timeout passes.
func rawExchange(t testing.TB, addr, request string, timeout time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatalf("write: %v", err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

// statusOf returns the status code of the first response in raw, or 0.
func statusOf(raw string) int {
	var proto string
	var code int
	if _, err := fmt.Sscanf(raw, "%s %d", &proto, &code); err != nil {
		return 0
	}
	return code
}

// vmHWM returns the peak resident memory of a process in bytes.
func vmHWM(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), "%d", &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
