package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paperspace/warden/internal/procstat"
)

// child is the model server that warden starts and protects in wrapper mode
// (`warden -- CMD ARGS...`), for platforms that run one image per replica.
//
// warden makes itself a child subreaper (and is PID 1 in many containers),
// so every process the model server leaves behind becomes warden's to reap:
// it reaps them all, and kills whatever is left when it exits, so that it
// never leaves orphans or zombies.
type child struct {
	cmd  *exec.Cmd
	pgid int

	signals chan os.Signal // SIGCHLD
	exited  chan struct{}  // closed when the model server has exited
	// signaller sends the signals when warden drops root for a uid other
	// than the model server's; nil: warden signals it directly. Set before
	// the child starts, never changed.
	signaller *signaller
	mu        sync.Mutex
	status    syscall.WaitStatus
}

// childEnv is warden's environment without the WARDEN_ variables: the model
// server must not see the secret or the files that hold it.
func childEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		if !strings.HasPrefix(kv, envPrefix) {
			out = append(out, kv)
		}
	}
	return out
}

// startChild starts the model server in its own process group, with
// warden's standard output and error, and starts reaping.
func startChild(args, environ []string, as *identity, sig *signaller) (*child, error) {
	if len(args) == 0 || args[0] == "" {
		return nil, errors.New("wrapper mode needs a command after --")
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return nil, fmt.Errorf("model server command: %w", err)
	}
	// Adopt every orphan the model server leaves, wherever warden runs.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	c := &child{
		signals:   make(chan os.Signal, 1),
		exited:    make(chan struct{}),
		signaller: sig,
	}
	// Listen for SIGCHLD before the child exists, so no exit is missed.
	signal.Notify(c.signals, syscall.SIGCHLD)
	c.cmd = &exec.Cmd{
		Path:   path,
		Args:   args,
		Env:    childEnv(environ),
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid: true,
			// If warden is killed outright, the model server goes too.
			Pdeathsig: syscall.SIGKILL,
		},
	}
	if as != nil {
		c.cmd.SysProcAttr.Credential = as.credential()
	}
	if err := c.cmd.Start(); err != nil {
		signal.Stop(c.signals)
		return nil, fmt.Errorf("start model server: %w", err)
	}
	c.pgid = c.cmd.Process.Pid
	go c.reap()
	return c, nil
}

// reap collects the exit status of every process that becomes warden's
// child: the model server, and the orphans it leaves (warden is their
// subreaper). os/exec's Wait is not used: it would race with this.
func (c *child) reap() {
	for {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err != nil || pid <= 0 {
				break
			}
			if pid == c.cmd.Process.Pid {
				c.mu.Lock()
				c.status = ws
				c.mu.Unlock()
				close(c.exited)
			}
		}
		if _, ok := <-c.signals; !ok {
			return
		}
	}
}

// Exited is closed when the model server has exited.
func (c *child) Exited() <-chan struct{} { return c.exited }

// ExitCode is the model server's exit code, 128+N if signal N killed it.
// Call it once Exited is closed.
func (c *child) ExitCode() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return exitCode(c.status)
}

func exitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	default:
		return 1
	}
}

// Describe says how the model server ended, for logs.
func (c *child) Describe() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status.Signaled() {
		return "killed by signal " + c.status.Signal().String()
	}
	return "exit status " + strconv.Itoa(c.status.ExitStatus())
}

// ForwardSignals passes SIGHUP, SIGUSR1 and SIGUSR2 on to the model server
// (a reload, a dump), until the returned function is called. SIGTERM and
// SIGINT are warden's: they start the drain, and reach the model server
// only once requests are done.
func (c *child) ForwardSignals() (stop func()) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-ch:
				if s, ok := sig.(syscall.Signal); ok {
					c.Signal(s)
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// Signal sends sig to the model server's process group.
func (c *child) Signal(sig syscall.Signal) {
	_ = c.kill(-c.pgid, sig)
}

// kill signals pid, through the signaller when warden has one.
func (c *child) kill(pid int, sig syscall.Signal) error {
	if c.signaller != nil {
		return c.signaller.kill(pid, sig)
	}
	return syscall.Kill(pid, sig)
}

// Stop asks the model server to stop with SIGTERM and waits up to timeout,
// then kills it. It returns true if the model server had to be killed.
func (c *child) Stop(timeout time.Duration) (killed bool) {
	select {
	case <-c.exited:
		return false
	default:
	}
	c.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.exited:
		return false
	case <-t.C:
		c.Signal(syscall.SIGKILL)
		<-c.exited
		return true
	}
}

// Cleanup kills what the model server left behind: its process group, and
// any other process warden adopted as subreaper, then reaps them.
func (c *child) Cleanup() {
	c.Signal(syscall.SIGKILL)
	for _, pid := range adoptedChildren() {
		_ = c.kill(pid, syscall.SIGKILL)
	}
	// Give the reaper a moment to collect them; never wait long.
	deadline := time.Now().Add(2 * time.Second)
	for len(adoptedChildren()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	signal.Stop(c.signals)
	close(c.signals)
}

// adoptedChildren lists the processes whose parent is warden, from /proc.
func adoptedChildren() []int {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := procstat.Read(e.Name()); err == nil && st.PPID == self {
			pids = append(pids, pid)
		}
	}
	return pids
}
