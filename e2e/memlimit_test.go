package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ownMemoryCgroup returns the directory of this process's memory cgroup
// (v1's memory controller, or else the v2 unified hierarchy) and the file
// that holds its limit.
func ownMemoryCgroup() (dir, limitFile string, ok bool) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", "", false
	}
	unified := ""
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		id, rest, _ := strings.Cut(line, ":")
		controllers, path, _ := strings.Cut(rest, ":")
		if slices.Contains(strings.Split(controllers, ","), "memory") {
			return filepath.Join("/sys/fs/cgroup/memory", path), "memory.limit_in_bytes", true
		}
		if id == "0" && controllers == "" {
			unified = path
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil && unified != "" {
		return filepath.Join("/sys/fs/cgroup", unified), "memory.max", true
	}
	return "", "", false
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
		if fields == nil {
			t.Fatalf("%s: warden exited without a start line:\n%s", tc.name, p.out.String())
		}
		if got, _ := fields["go_memory_limit"].(float64); got != tc.want {
			t.Errorf("%s: start line go_memory_limit %v, want %v", tc.name, fields["go_memory_limit"], tc.want)
		}
		p.kill()
	}
}
