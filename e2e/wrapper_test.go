package e2e

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startWrapped starts `warden -- upstream ARGS...`: warden runs the Go test
// upstream as its child on modelAddr and protects it.
func startWrapped(t *testing.T, env map[string]string, modelAddr string, childArgs ...string) *wardenProc {
	t.Helper()
	args := append([]string{"--", upstreamBin, "-listen", modelAddr}, childArgs...)
	return startWardenArgs(t, merge(protectedEnv(modelAddr), env), args...)
}

func readyz(w *wardenProc) (int, string) {
	resp, err := http.Get(w.adminURL("/readyz"))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b := make([]byte, 512)
	n, _ := resp.Body.Read(b)
	return resp.StatusCode, string(b[:n])
}

func TestWrapperModeStartsAndProtectsTheModelServer(t *testing.T) {
	t.Parallel()
	modelAddr := freeAddr(t)
	w := startWrapped(t, map[string]string{"MODEL_SETTING": "kept", "WARDEN_DRAIN_DELAY": "1s"},
		modelAddr, "-listen-delay", "800ms", "-on-term", "graceful")
	waitFor(t, 3*time.Second, "the admin port", func() bool {
		code, _ := readyz(w)
		return code != 0
	})
	if code, body := readyz(w); code != 503 {
		t.Errorf("/readyz before the model listens: %d %q, want 503", code, body)
	}
	w.waitReady(t)

	if resp, _ := do(t, http.MethodGet, w.url("/echo"), nil, nil); resp.StatusCode != 401 {
		t.Errorf("without credentials: %d", resp.StatusCode)
	}
	resp, body := do(t, http.MethodGet, w.url("/__env"), authHeader(), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("with credentials: %d %s", resp.StatusCode, body)
	}
	var environ []string
	if err := json.Unmarshal(body, &environ); err != nil {
		t.Fatal(err)
	}
	var kept bool
	for _, kv := range environ {
		if strings.HasPrefix(kv, "WARDEN_") {
			t.Errorf("the model server sees %s", strings.SplitN(kv, "=", 2)[0])
		}
		kept = kept || kv == "MODEL_SETTING=kept"
	}
	if !kept {
		t.Errorf("the model server lost the rest of the environment: %v", environ)
	}
	if !strings.Contains(w.out.String(), "upstream listening on "+modelAddr) {
		t.Errorf("the model server's output did not pass through:\n%s", w.out.String())
	}

	// SIGTERM: drain first, the model server only after.
	signalled := time.Now()
	w.signal(syscall.SIGTERM)
	waitFor(t, 500*time.Millisecond, "/readyz to turn 503", func() bool {
		code, _ := readyz(w)
		return code == 503
	})
	if resp, _ := do(t, http.MethodGet, w.url("/echo"), authHeader(), nil); resp.StatusCode != 200 {
		t.Errorf("during the drain: %d, want 200", resp.StatusCode)
	}
	if code := w.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want the model server's 0", code)
	}
	m := regexp.MustCompile(`upstream got SIGTERM at (\d+)`).FindStringSubmatch(w.out.String())
	if m == nil {
		t.Fatalf("the model server never got SIGTERM:\n%s", w.out.String())
	}
	ms, _ := strconv.ParseInt(m[1], 10, 64)
	if got := time.UnixMilli(ms).Sub(signalled); got < 900*time.Millisecond {
		t.Errorf("the model server got SIGTERM %s after warden: before the 1s drain delay was over", got)
	}
}

func TestWrapperModeExitsWithTheModelServersStatus(t *testing.T) {
	t.Parallel()
	modelAddr := freeAddr(t)
	w := startWrapped(t, map[string]string{"WARDEN_DRAIN_DELAY": "300ms"}, modelAddr, "-exit-after", "1500ms", "-exit-code", "3")
	w.waitReady(t)
	waitFor(t, 3*time.Second, "/readyz to report the exit", func() bool {
		_, body := readyz(w)
		return strings.Contains(body, "model server exited")
	})
	if code := w.wait(10 * time.Second); code != 3 {
		t.Fatalf("exit code %d, want the model server's 3", code)
	}
}

func TestWrapperModeKillsAModelServerThatIgnoresSIGTERM(t *testing.T) {
	t.Parallel()
	modelAddr := freeAddr(t)
	w := startWrapped(t, map[string]string{"WARDEN_DRAIN_DELAY": "0s", "WARDEN_SHUTDOWN_TIMEOUT": "1s"},
		modelAddr, "-on-term", "ignore")
	w.waitReady(t)
	start := time.Now()
	w.signal(syscall.SIGTERM)
	code := w.wait(10 * time.Second)
	if code != 128+int(syscall.SIGKILL) {
		t.Errorf("exit code %d, want %d (killed)", code, 128+int(syscall.SIGKILL))
	}
	if took := time.Since(start); took < time.Second || took > 4*time.Second {
		t.Errorf("took %s, want the 1s shutdown timeout and then the kill", took)
	}
	if !strings.Contains(w.out.String(), "upstream got SIGTERM") {
		t.Errorf("SIGTERM was not tried first")
	}
}

var grandchildPID = regexp.MustCompile(`grandchild pid=(\d+) setsid=(true|false)`)

func grandchildren(t *testing.T, w *wardenProc) []int {
	t.Helper()
	var pids []int
	waitFor(t, 3*time.Second, "the grandchildren to start", func() bool {
		pids = pids[:0]
		for _, m := range grandchildPID.FindAllStringSubmatch(w.out.String(), -1) {
			pid, _ := strconv.Atoi(m[1])
			pids = append(pids, pid)
		}
		return len(pids) == 2
	})
	return pids
}

func alive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// Whatever the model server leaves behind, warden leaves nothing: no
// process from its process group, not one that escaped into a new session,
// no zombie.
func TestWrapperModeLeavesNoOrphansOrZombies(t *testing.T) {
	t.Parallel()
	t.Run("after SIGTERM", func(t *testing.T) {
		modelAddr := freeAddr(t)
		w := startWrapped(t, map[string]string{"WARDEN_DRAIN_DELAY": "0s"}, modelAddr, "-grandchildren", "-on-term", "graceful")
		w.waitReady(t)
		pids := grandchildren(t, w)
		w.signal(syscall.SIGTERM)
		if code := w.wait(10 * time.Second); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		for _, pid := range pids {
			if alive(pid) {
				t.Errorf("grandchild %d outlived warden", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	t.Run("after the model server exits on its own", func(t *testing.T) {
		modelAddr := freeAddr(t)
		w := startWrapped(t, map[string]string{"WARDEN_DRAIN_DELAY": "2s"}, modelAddr,
			"-grandchildren", "-exit-after", "1s", "-exit-code", "0")
		w.waitReady(t)
		pids := grandchildren(t, w)
		waitFor(t, 3*time.Second, "the model server to exit", func() bool {
			return strings.Contains(w.out.String(), "upstream exiting")
		})
		// The orphans are warden's now (it is their subreaper): one that
		// dies must be reaped, not left a zombie.
		orphan := pids[1]
		waitFor(t, 2*time.Second, "warden to adopt the orphan", func() bool {
			return parentOf(orphan) == w.pid()
		})
		syscall.Kill(orphan, syscall.SIGKILL)
		waitFor(t, time.Second, "warden to reap the orphan", func() bool { return !alive(orphan) })
		if code := w.wait(10 * time.Second); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		for _, pid := range pids {
			if alive(pid) {
				t.Errorf("grandchild %d outlived warden", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// parentOf returns a process's parent pid, or 0.
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

func TestWrapperModeRefusesAMissingCommand(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--"}, {"--", "/nonexistent/model-server"}, {"--bogus"}} {
		p := startProc(t, "warden", []string{"WARDEN_LISTEN=" + freeAddr(t), "WARDEN_ADMIN_LISTEN=" + freeAddr(t)}, wardenBin, args...)
		if code := p.wait(5 * time.Second); code == 0 {
			t.Errorf("%q: exit code 0", args)
		}
		if out := p.out.String(); !strings.Contains(out, "warden:") {
			t.Errorf("%q: no message: %s", args, out)
		}
	}
}

// The same with a real model server as the child: uvicorn serving FastAPI.
func TestWrapperModeWithUvicornAsTheChild(t *testing.T) {
	t.Parallel()
	requirePython(t)
	modelAddr := freeAddr(t)
	_, port, _ := strings.Cut(modelAddr, ":")
	env := merge(protectedEnv(modelAddr), map[string]string{"WARDEN_DRAIN_DELAY": "200ms", "WARDEN_SHUTDOWN_TIMEOUT": "10s"})
	for _, kv := range pythonEnv {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	w := startWardenArgs(t, env, "--", pythonBin, "-m", "uvicorn", "model_server:app",
		"--app-dir", testdataDir(t), "--host", "127.0.0.1", "--port", port)
	p := w.proc
	waitFor(t, 20*time.Second, "uvicorn behind warden to be ready", func() bool {
		if p.exited() {
			t.Fatalf("warden exited: %s", p.out.String())
		}
		code, _ := readyz(w)
		return code == 200
	})
	if resp, _ := do(t, http.MethodGet, w.url("/health"), nil, nil); resp.StatusCode != 401 {
		t.Errorf("without credentials: %d", resp.StatusCode)
	}
	if resp, body := do(t, http.MethodGet, w.url("/health"), authHeader(), nil); resp.StatusCode != 200 || !strings.Contains(string(body), "ok") {
		t.Errorf("with credentials: %d %s", resp.StatusCode, body)
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want uvicorn's 0:\n%s", code, p.out.String())
	}
	if !strings.Contains(p.out.String(), "Shutting down") && !strings.Contains(p.out.String(), "Finished server process") {
		t.Errorf("uvicorn did not shut down gracefully:\n%s", p.out.String())
	}
}
