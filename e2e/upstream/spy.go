package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// spyReport is what a process beside warden could learn of it: for each
// attempt, the error, or what it read.
type spyReport struct {
	UID     int               `json:"uid"`
	Target  int               `json:"target"`
	Results map[string]string `json:"results"` // attempt → "error: …" or what was read
}

// spy tries, as a compromised model server would, to read warden's secret
// out of process pid: its environment, its memory, a ptrace attach. It
// writes the report to out.
func spy(pid int, out string, tryPtrace bool, secretFile string) error {
	r := spyReport{UID: os.Getuid(), Target: pid, Results: map[string]string{}}
	p := "/proc/" + strconv.Itoa(pid)
	if b, err := os.ReadFile(p + "/environ"); err != nil {
		r.Results["environ"] = "error: " + err.Error()
	} else {
		r.Results["environ"] = string(b)
	}
	if b, err := os.ReadFile(p + "/cmdline"); err != nil {
		r.Results["cmdline"] = "error: " + err.Error()
	} else {
		r.Results["cmdline"] = string(b)
	}
	r.Results["mem"] = readMem(p)
	if secretFile != "" {
		if b, err := os.ReadFile(secretFile); err != nil {
			r.Results["secret_file"] = "error: " + err.Error()
		} else {
			r.Results["secret_file"] = string(b)
		}
	}
	if tryPtrace {
		r.Results["ptrace"] = attach(pid)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o644)
}

// readMem reads the process's writable memory through /proc/PID/mem, the
// way a debugger would: the heap and stacks are where a secret lives.
func readMem(p string) string {
	mem, err := os.Open(p + "/mem")
	if err != nil {
		return "error: " + err.Error()
	}
	defer mem.Close()
	maps, err := os.ReadFile(p + "/maps")
	if err != nil {
		return "error: maps: " + err.Error()
	}
	// The initial stack holds the environment's strings, the heap what the
	// process copied of them: the first MiBs of each writable mapping do.
	var got []byte
	var start, end uint64
	var perms string
	for _, line := range splitLines(string(maps)) {
		if _, err := fmt.Sscanf(line, "%x-%x %s", &start, &end, &perms); err != nil || perms[0] != 'r' || perms[1] != 'w' {
			continue
		}
		size := min(end-start, 4<<20)
		if strings.HasSuffix(line, "[stack]") {
			start, size = end-min(end-start, 8<<20), min(end-start, 8<<20)
		}
		buf := make([]byte, size)
		n, _ := mem.ReadAt(buf, int64(start))
		got = append(got, buf[:n]...)
		if len(got) > 64<<20 {
			break
		}
	}
	if len(got) == 0 {
		return "error: nothing read"
	}
	return string(got)
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return out
}

// attach tries PTRACE_ATTACH, and lets go at once if it worked.
func attach(pid int) string {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := syscall.PtraceAttach(pid); err != nil {
		return "error: " + err.Error()
	}
	var ws syscall.WaitStatus
	_, _ = syscall.Wait4(pid, &ws, syscall.WALL, nil)
	_ = syscall.PtraceDetach(pid)
	return "attached"
}
