package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Privilege separation in wrapper mode: warden started as root runs the
// model server as WARDEN_CHILD_USER and itself drops to WARDEN_RUN_AS
// before serving. The model server, a compromised one included, then
// reads none of the secret: not warden's environment or memory, not by
// ptrace, not the secret file.

// rootWrapperEnv is the environment of a warden in wrapper mode in front of
// modelAddr, with more variables after it.
func rootWrapperEnv(t *testing.T, modelAddr string, more ...string) []string {
	t.Helper()
	return append([]string{
		"WARDEN_UPSTREAM=http://" + modelAddr, "WARDEN_PASSWORD=" + testPassword,
		"WARDEN_LISTEN=" + freeAddr(t), "WARDEN_ADMIN_LISTEN=" + freeAddr(t),
	}, more...)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: warden must start as root to separate privileges")
	}
}

// procIDs reads the Uid, Gid, Groups and CapEff lines of a process.
func procIDs(t *testing.T, pid int) map[string]string {
	t.Helper()
	return statusIDs(t, "/proc/"+strconv.Itoa(pid)+"/status")
}

func statusIDs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(Uid|Gid|Groups|CapEff|CapPrm):[ \t]*(.*)$`).FindAllSubmatch(b, -1) {
		out[string(m[1])] = strings.Join(strings.Fields(string(m[2])), " ")
	}
	return out
}

func TestWrappedModelServerAsAnotherUserGetsNoneOfTheSecret(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	const secret = "separated-s3cret-that-must-not-leak"
	dir := spyDir(t)
	secretFile := filepath.Join(t.TempDir(), "password") // root's, 0400
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "spy.json")
	modelAddr := freeAddr(t)
	env := map[string]string{
		"WARDEN_UPSTREAM":      "http://" + modelAddr,
		"WARDEN_PASSWORD_FILE": secretFile,
		"WARDEN_LISTEN":        freeAddr(t),
		"WARDEN_ADMIN_LISTEN":  freeAddr(t),
		"WARDEN_CHILD_USER":    "65534:65534",
		"WARDEN_RUN_AS":        "65532",
		"WARDEN_DRAIN_DELAY":   "200ms",
	}
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	// As root (nil credential). The model server spies on its parent once
	// warden serves.
	p := startProcAs(t, nil, "warden", list, wardenBin, "--", upstreamBin, "-listen", modelAddr,
		"-spy", "0", "-spy-out", report, "-spy-file", secretFile, "-spy-delay", "500ms", "-on-term", "graceful")
	w := &wardenProc{proc: p, addr: env["WARDEN_LISTEN"], admin: env["WARDEN_ADMIN_LISTEN"]}
	w.waitReady(t)

	// warden serves as 65532, with no group and no capability left on its
	// main thread.
	ids := procIDs(t, w.pid())
	if ids["Uid"] != "65532 65532 65532 65532" || ids["Gid"] != "65532 65532 65532 65532" || ids["Groups"] != "" {
		t.Errorf("warden runs as %v, want uid and gid 65532 everywhere and no groups", ids)
	}
	if ids["CapEff"] != "0000000000000000" || ids["CapPrm"] != "0000000000000000" {
		t.Errorf("warden's main thread keeps capabilities: %v", ids)
	}
	// One thread, the one that signals the model server, holds CAP_KILL
	// (bit 5) and nothing else; every other holds nothing.
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(w.pid()) + "/task/*/status")
	withKill := 0
	for _, task := range tasks {
		switch caps := statusIDs(t, task); caps["CapEff"] {
		case "0000000000000000":
		case "0000000000000020":
			withKill++
		default:
			t.Errorf("thread %s holds capabilities %v", task, caps)
		}
	}
	if withKill != 1 {
		t.Errorf("%d of %d threads hold CAP_KILL, want one", withKill, len(tasks))
	}
	resp, _ := do(t, "GET", w.url("/echo"), map[string][]string{"Authorization": {basicAuth(testUser, secret)}}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("warden does not serve after dropping root: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", w.url("/echo"), nil, nil); resp.StatusCode != 401 {
		t.Fatalf("without credentials: %d", resp.StatusCode)
	}

	r := readSpyReport(t, report)
	if r.UID != 65534 {
		t.Fatalf("the model server runs as uid %d, want 65534", r.UID)
	}
	if r.Target != w.pid() {
		t.Fatalf("the spy looked at pid %d, warden is %d", r.Target, w.pid())
	}
	checkSpyFoundNothing(t, r, secret)
	if got := r.Results["secret_file"]; !strings.HasPrefix(got, "error: ") {
		t.Errorf("the model server read the secret file: %s", short(got))
	}
	if !strings.Contains(w.out.String(), "dropped root") {
		t.Errorf("no log line says warden dropped root:\n%s", w.out.String())
	}

	// SIGTERM: the drain, then the model server gets SIGTERM from warden
	// (it exits 0 on it), and warden exits with its status.
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want the model server's 0:\n%s", code, w.out.String())
	}
	if strings.Contains(w.out.String(), "killed") {
		t.Errorf("the model server had to be killed: warden could not signal it:\n%s", w.out.String())
	}
}

// As root in wrapper mode without separation, warden says what the model
// server can read.
func TestWrapperModeAsRootWithoutSeparationWarns(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	modelAddr := freeAddr(t)
	p := startProcAs(t, nil, "warden", rootWrapperEnv(t, modelAddr), wardenBin, "--", upstreamBin, "-listen", modelAddr)
	waitFor(t, 5*time.Second, "the warning", func() bool {
		return strings.Contains(p.out.String(), "WARDEN_CHILD_USER")
	})
	if ids := procIDs(t, p.pid()); !strings.HasPrefix(ids["Uid"], "0 ") {
		t.Errorf("warden dropped root unasked: %v", ids)
	}
}

func TestPrivilegesThatCannotBeHonouredStopWardenNamingTheVariable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"WARDEN_CHILD_USER": "no-such-user-here"}, []string{"--", upstreamBin}, "WARDEN_CHILD_USER"},
		{map[string]string{"WARDEN_RUN_AS": "no-such-user-here"}, nil, "WARDEN_RUN_AS"},
		{map[string]string{"WARDEN_RUN_AS": "0"}, nil, "WARDEN_RUN_AS"},
		{map[string]string{"WARDEN_CHILD_USER": "65534"}, nil, "WARDEN_CHILD_USER"}, // not wrapper mode
	}
	if os.Geteuid() != 0 {
		// Not root: another identity cannot be honoured at all.
		cases = append(cases, struct {
			env  map[string]string
			args []string
			want string
		}{map[string]string{"WARDEN_RUN_AS": "65533"}, nil, "WARDEN_RUN_AS"})
	}
	for _, tc := range cases {
		w := startWardenArgs(t, merge(tc.env, map[string]string{"WARDEN_PASSWORD": testPassword}), tc.args...)
		if code := w.wait(3 * time.Second); code == 0 {
			t.Errorf("%v %v: exit 0", tc.env, tc.args)
			continue
		}
		if !strings.Contains(w.out.String(), tc.want) {
			t.Errorf("%v: the message does not name %s:\n%s", tc.env, tc.want, w.out.String())
		}
	}
}

// A model server of another user that ignores SIGTERM is still killed when
// the shutdown timeout passes: warden's signalling thread holds CAP_KILL.
func TestSeparatedModelServerThatIgnoresSIGTERMIsKilled(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	modelAddr := freeAddr(t)
	env := rootWrapperEnv(t, modelAddr, "WARDEN_CHILD_USER=nobody", "WARDEN_DRAIN_DELAY=100ms", "WARDEN_SHUTDOWN_TIMEOUT=1s")
	p := startProcAs(t, nil, "warden", env, wardenBin, "--", upstreamBin, "-listen", modelAddr, "-on-term", "ignore")
	w := &wardenProc{proc: p}
	w.learnAddrs(t)
	w.waitReady(t)
	if ids := procIDs(t, w.pid()); ids["Uid"] != "65532 65532 65532 65532" {
		t.Fatalf("warden runs as %v, want the default WARDEN_RUN_AS 65532", ids)
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(10 * time.Second); code != 128+int(syscall.SIGKILL) {
		t.Fatalf("exit status %d, want %d (the model server killed):\n%s", code, 128+int(syscall.SIGKILL), w.out.String())
	}
}

// As a sidecar started as root, WARDEN_RUN_AS alone makes warden drop root
// once its secret is read and its ports bound (here a port below 1024,
// which only root may bind).
func TestSidecarStartedAsRootDropsToRunAs(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	up := startUpstream(t)
	secretFile := filepath.Join(t.TempDir(), "password") // root's, 0400
	if err := os.WriteFile(secretFile, []byte(testPassword+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	var w *wardenProc
	for _, port := range []string{"881", "882", "883", "884"} {
		w = startWardenArgs(t, map[string]string{
			"WARDEN_UPSTREAM": "http://" + up.addr, "WARDEN_PASSWORD_FILE": secretFile,
			"WARDEN_RUN_AS": "65532:65532", "WARDEN_LISTEN": "127.0.0.1:" + port, "WARDEN_DRAIN_DELAY": "100ms",
		})
		if w.addr != "" {
			break
		}
	}
	w.waitReady(t)
	if ids := procIDs(t, w.pid()); ids["Uid"] != "65532 65532 65532 65532" || ids["CapEff"] != "0000000000000000" {
		t.Fatalf("warden runs as %v, want 65532 and no capability", ids)
	}
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(w.pid()) + "/task/*/status")
	for _, task := range tasks {
		if caps := statusIDs(t, task); caps["CapEff"] != "0000000000000000" {
			t.Errorf("thread %s keeps capabilities %v: no model server to signal", task, caps)
		}
	}
	if resp, _ := do(t, "GET", w.url("/echo"), authHeader(), nil); resp.StatusCode != 200 {
		t.Fatalf("warden does not serve after dropping root: %d", resp.StatusCode)
	}
	w.signal(syscall.SIGTERM)
	if code := w.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
}
