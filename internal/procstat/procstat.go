// Package procstat reads /proc/<pid>/stat, for the two places warden needs
// it: its own CPU time and memory for /metrics, and the parent of every
// process, to find the ones it adopted as a subreaper.
package procstat

import (
	"errors"
	"os"
	"strconv"
	"strings"
)

// Stat is the part of /proc/<pid>/stat that warden reads (proc(5)).
type Stat struct {
	PPID         int
	UTime, STime uint64 // clock ticks
	VSize        uint64 // bytes
	RSS          uint64 // pages
}

var errFormat = errors.New("unexpected /proc/<pid>/stat format")

// Read reads the stat of pid, "self" included.
func Read(pid string) (Stat, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat") //nolint:gosec // G304: a path under /proc, of a pid
	if err != nil {
		return Stat{}, err
	}
	return Parse(string(b))
}

// Parse reads a stat line. The command (field 2) is in parentheses and may
// hold spaces and parentheses itself: fields are counted from the last ')'.
func Parse(s string) (Stat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Stat{}, errFormat
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15, vsize
	// 23, rss 24.
	if len(f) < 22 {
		return Stat{}, errFormat
	}
	num := func(field int) uint64 {
		v, _ := strconv.ParseUint(f[field-3], 10, 64)
		return v
	}
	ppid, _ := strconv.Atoi(f[4-3])
	return Stat{PPID: ppid, UTime: num(14), STime: num(15), VSize: num(23), RSS: num(24)}, nil
}
