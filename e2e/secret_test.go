package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The secret stays secret from the processes beside warden: a model server
// it wraps, or any other process of the same user (a sidecar in a pod that
// shares its process namespace). They run third-party code, so they are
// what an auth sidecar must hold out. warden is not dumpable: processes of
// its user cannot read its environment or memory, or attach to it.

// unprivileged is who these tests run warden and the spies as: nobody when
// the tests run as root, else the tests' own user.
func unprivileged() *syscall.Credential {
	if os.Getuid() != 0 {
		return nil
	}
	return &syscall.Credential{Uid: 65534, Gid: 65534}
}

// spyDir is a directory every user may write the spy's report into.
func spyDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "warden-spy-") // t.TempDir's parent is private
	if err == nil {
		err = os.Chmod(dir, 0o777)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type spyReport struct {
	UID     int               `json:"uid"`
	Target  int               `json:"target"`
	Results map[string]string `json:"results"`
}

func readSpyReport(t *testing.T, path string) spyReport {
	t.Helper()
	var r spyReport
	waitFor(t, 10*time.Second, "the spy's report", func() bool {
		b, err := os.ReadFile(path)
		return err == nil && json.Unmarshal(b, &r) == nil
	})
	return r
}

// checkSpyFoundNothing checks that every attempt of the spy failed and that
// nothing it read holds the secret.
func checkSpyFoundNothing(t *testing.T, r spyReport, secret string) {
	t.Helper()
	t.Logf("the spy (uid %d) on pid %d: environ %s; mem %s; ptrace %s", r.UID, r.Target,
		short(r.Results["environ"]), short(r.Results["mem"]), short(r.Results["ptrace"]))
	for _, attempt := range []string{"environ", "mem", "ptrace"} {
		if got := r.Results[attempt]; !strings.HasPrefix(got, "error: ") {
			t.Errorf("the spy's %s attempt worked: %s", attempt, short(got))
		}
	}
	for attempt, got := range r.Results {
		if strings.Contains(got, secret) {
			t.Errorf("the spy read the secret through %s", attempt)
		}
	}
	if !strings.Contains(r.Results["cmdline"], "warden") {
		t.Errorf("the spy could not even see warden's command line (%s): the test proves nothing", short(r.Results["cmdline"]))
	}
}

func short(s string) string {
	if len(s) > 80 {
		return strconv.Quote(s[:80]) + "…"
	}
	return strconv.Quote(s)
}

// uidOf reads a process's real uid.
func uidOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no Uid in /proc/PID/status")
	}
	uid, _ := strconv.Atoi(string(m[1]))
	return uid
}

func TestWrappedModelServerCannotReadWardensSecret(t *testing.T) {
	t.Parallel()
	const secret = "wrapped-s3cret-that-must-not-leak"
	dir := spyDir(t)
	report := filepath.Join(dir, "spy.json")
	modelAddr := freeAddr(t)
	env := merge(protectedEnv(modelAddr), map[string]string{
		"WARDEN_PASSWORD":     secret,
		"WARDEN_LISTEN":       freeAddr(t),
		"WARDEN_ADMIN_LISTEN": freeAddr(t),
	})
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	// The model server, as warden's child, spies on its parent first.
	p := startProcAs(t, unprivileged(), "warden", list, wardenBin,
		"--", upstreamBin, "-listen", modelAddr, "-spy", "0", "-spy-out", report)
	w := &wardenProc{proc: p, addr: env["WARDEN_LISTEN"], admin: env["WARDEN_ADMIN_LISTEN"]}
	w.waitReady(t)
	r := readSpyReport(t, report)
	if r.Target != w.pid() {
		t.Fatalf("the spy looked at pid %d, warden is %d", r.Target, w.pid())
	}
	if uid := uidOf(t, w.pid()); uid != r.UID {
		t.Fatalf("warden runs as uid %d, its child as %d: not the same-user case", uid, r.UID)
	}
	checkSpyFoundNothing(t, r, secret)
	checkProcessMetrics(t, w)
}

func TestProcessOfTheSameUserCannotReadWardensSecret(t *testing.T) {
	t.Parallel()
	const secret = "sidecar-s3cret-that-must-not-leak"
	up := startUpstream(t)
	env := merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_PASSWORD":     secret,
		"WARDEN_LISTEN":       freeAddr(t),
		"WARDEN_ADMIN_LISTEN": freeAddr(t),
	})
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	p := startProcAs(t, unprivileged(), "warden", list, wardenBin)
	w := &wardenProc{proc: p, addr: env["WARDEN_LISTEN"], admin: env["WARDEN_ADMIN_LISTEN"]}
	w.waitReady(t)

	dir := spyDir(t)
	report := filepath.Join(dir, "spy.json")
	spy := startProcAs(t, unprivileged(), "spy", nil, upstreamBin,
		"-spy", strconv.Itoa(w.pid()), "-spy-out", report, "-spy-only")
	if code := spy.wait(30 * time.Second); code != 0 {
		t.Fatalf("the spy exited %d", code)
	}
	r := readSpyReport(t, report)
	if uid := uidOf(t, w.pid()); uid != r.UID {
		t.Fatalf("warden runs as uid %d, the spy as %d: not the same-user case", uid, r.UID)
	}
	checkSpyFoundNothing(t, r, secret)
	checkProcessMetrics(t, w)

	// The control: the same spy, on a process of the same user that is not
	// warden, reads what it holds. The attempts above failed because of
	// warden, not because the spy cannot spy.
	const marker = "NEIGHBOUR_MARKER=readable-by-the-same-user"
	neighbour := startProcAs(t, unprivileged(), "neighbour", []string{marker}, upstreamBin, "-listen", freeAddr(t))
	waitFor(t, 5*time.Second, "the neighbour to start", func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(neighbour.pid()) + "/cmdline")
		return len(b) > 0
	})
	report2 := filepath.Join(dir, "control.json")
	// (No ptrace here: stopping a busy neighbour proves nothing more.)
	spy2 := startProcAs(t, unprivileged(), "spy", nil, upstreamBin,
		"-spy", strconv.Itoa(neighbour.pid()), "-spy-out", report2, "-spy-only", "-spy-ptrace=false")
	if code := spy2.wait(30 * time.Second); code != 0 {
		t.Fatalf("the control spy exited %d", code)
	}
	c := readSpyReport(t, report2)
	if !strings.Contains(c.Results["environ"], marker) || !strings.Contains(c.Results["mem"], "NEIGHBOUR_MARKER") {
		t.Errorf("the control failed: the spy could not read a same-user neighbour either (environ %s, mem %s)",
			short(c.Results["environ"]), short(c.Results["mem"]))
	}
}

// checkProcessMetrics checks that what warden reads about itself from
// /proc still works once it is not dumpable (files of a non-dumpable
// process belong to root).
func checkProcessMetrics(t *testing.T, w *wardenProc) {
	t.Helper()
	m := metrics(t, w)
	for _, name := range []string{
		"process_open_fds", "process_resident_memory_bytes", "process_virtual_memory_bytes",
		"process_cpu_seconds_total", "process_start_time_seconds",
	} {
		re := regexp.MustCompile(`(?m)^` + name + ` ([0-9.e+]+)$`)
		v := re.FindStringSubmatch(m)
		if v == nil {
			t.Errorf("/metrics lacks %s", name)
			continue
		}
		if f, _ := strconv.ParseFloat(v[1], 64); f <= 0 && name != "process_cpu_seconds_total" {
			t.Errorf("%s = %s", name, v[1])
		}
	}
}
