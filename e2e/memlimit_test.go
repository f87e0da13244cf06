package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ownMemoryCgroup returns the directory of this process's memory cgroup
// (v2, or v1's memory controller) and the file that holds its limit.
func ownMemoryCgroup() (dir, limitFile string, ok bool) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", "", false
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			if c == "memory" {
				return filepath.Join("/sys/fs/cgroup/memory", parts[2]), "memory.limit_in_bytes", true
			}
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
			if rest, found := strings.CutPrefix(line, "0::"); found {
				return filepath.Join("/sys/fs/cgroup", rest), "memory.max", true
			}
		}
	}
	return "", "", false
}

// startLine waits for warden's start line and returns its fields.
func startLine(t *testing.T, p *proc) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
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
			break
		}
	}
	t.Fatalf("no start line:\n%s", p.out.String())
	return nil
}

// In a container with a memory limit, the Go runtime's soft limit is 90% of
// it, so the garbage collector works harder before the container is killed;
// GOMEMLIMIT, when set, wins. Runs where a memory cgroup can be made (root).
func TestGoMemoryLimitFollowsTheContainerLimit(t *testing.T) {
	t.Parallel()
	parent, limitFile, ok := ownMemoryCgroup()
	if !ok {
		t.Skip("no memory cgroup")
	}
	dir, err := os.MkdirTemp(parent, "warden-e2e-")
	if err != nil {
		t.Skipf("cannot create a memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		// The processes are gone by now (their cleanups ran first); the
		// kernel may take a moment to let the group go.
		for range 50 {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	const limit = 256 << 20
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.Itoa(limit)), 0o644); err != nil {
		t.Skipf("cannot set a memory limit: %v", err)
	}
	up := startUpstream(t)
	for _, tc := range []struct {
		name string
		env  []string
		want float64
	}{
		{"the container's limit", nil, 241591910}, // 0.9 × 256 MiB, rounded down
		{"GOMEMLIMIT", []string{"GOMEMLIMIT=64MiB"}, 64 << 20},
	} {
		env := append([]string{
			"WARDEN_UPSTREAM=http://" + up.addr, "WARDEN_PASSWORD=" + testPassword,
			"WARDEN_LISTEN=127.0.0.1:0", "WARDEN_ADMIN_LISTEN=127.0.0.1:0",
		}, tc.env...)
		// Into the group first, then warden, so the runtime starts in it.
		p := startProc(t, "warden", env, "/bin/sh", "-c",
			`echo $$ > "$1/cgroup.procs" && exec "$2"`, "sh", dir, wardenBin)
		fields := startLine(t, p)
		if got, _ := fields["go_memory_limit"].(float64); got != tc.want {
			t.Errorf("%s: start line go_memory_limit %v, want %v", tc.name, fields["go_memory_limit"], tc.want)
		}
		p.kill()
	}
}
