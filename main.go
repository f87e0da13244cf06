// Command warden is an auth sidecar for model servers: it checks HTTP Basic
// credentials and forwards authorised requests to one upstream on localhost,
// streaming both ways. Configuration comes from WARDEN_* variables only; see
// README.md.
//
//	warden                  protect the upstream named by WARDEN_UPSTREAM
//	warden -- CMD ARGS...   start CMD as the upstream and protect it
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/caarlos0/env/v11"
	"golang.org/x/sys/unix"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	if err := notDumpable(); err != nil {
		fmt.Fprintf(os.Stderr, "warden: %v\n", err)
		os.Exit(1)
	}
	limitGoMemory()
	// GOMAXPROCS stays Go's default, which follows the CPUs warden may run
	// on and its container's CPU limit: more Ps than that cost a sidecar
	// whose model server runs in another container CPU and latency (README,
	// Performance: GOMAXPROCS).
	environ := env.ToMap(os.Environ())
	if handled, err := runTool(os.Args[1:], environ, os.Stdin, os.Stdout); handled {
		if err != nil {
			fmt.Fprintf(os.Stderr, "warden: %v\n", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], environ, os.Stdout, os.Stderr)
	stop()
	var exit exitStatus
	switch {
	case errors.As(err, &exit):
		os.Exit(int(exit))
	case err != nil:
		fmt.Fprintf(os.Stderr, "warden: %v\n", err)
		os.Exit(1)
	}
}

// notDumpable makes warden's process non-dumpable (PR_SET_DUMPABLE 0), first
// thing, in every mode. Its secret is in its environment and its memory, and
// the processes beside it run third-party code: a model server warden wraps,
// or a sidecar sharing the pod's process namespace. Unless dumpable, a
// process's /proc/PID/environ, mem and maps belong to root and ptrace
// needs CAP_SYS_PTRACE, so processes of warden's own user can read none of
// them, and no core dump is written. The model server that warden starts is
// dumpable again: exec resets the flag.
func notDumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("make the process non-dumpable: %w", err)
	}
	return nil
}

// limitGoMemory gives the Go runtime a soft memory limit of 90% of the
// container's memory limit (its cgroup's), unless GOMEMLIMIT is set or
// AUTOMEMLIMIT=off: as connections approach WARDEN_MAX_CONNS the garbage
// collector then works harder instead of letting the heap grow to twice
// what is live and the container be killed (README, Performance: memory
// sizing). Without a limit, nothing changes.
func limitGoMemory() {
	_, _ = memlimit.Set(memlimit.WithProvider(memlimit.FromCgroup))
}

// exitStatus is the status warden exits with in wrapper mode: the model
// server's.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `usage:
  warden                  protect the upstream named by WARDEN_UPSTREAM
  warden -- CMD [ARGS...] start CMD as the model server and protect it
  warden --version        print the version

Tools (the secret comes from WARDEN_PASSWORD, WARDEN_PASSWORD_FILE or
standard input, in that order; never from an argument, where ps shows it):
  warden secret           print a new random secret (32 bytes, base64url)
  warden header           print the Authorization header value for the
                          secret: Basic, for WARDEN_USERNAME (paperspace)
  warden header --bearer  print it as a Bearer token
  warden header --curl URL
                          print a curl command that sends it to URL
  warden hash             print the secret's SHA-256, for WARDEN_PASSWORD_SHA256

Configuration comes from WARDEN_* environment variables; see README.md.
`

// runTool runs one of the small tools (secret, header, hash) if args name
// one, and reports whether it did.
func runTool(args []string, environ map[string]string, stdin io.Reader, stdout io.Writer) (bool, error) {
	if len(args) == 0 {
		return false, nil
	}
	switch args[0] {
	case "secret", "header", "hash":
		for _, a := range args[1:] {
			if a == "-h" || a == "--help" {
				_, err := fmt.Fprint(stdout, usage)
				return true, err
			}
		}
	}
	switch args[0] {
	case "secret":
		return true, cmdSecret(args[1:], stdout)
	case "header":
		return true, cmdHeader(args[1:], environ, stdin, stdout)
	case "hash":
		return true, cmdHash(args[1:], environ, stdin, stdout)
	}
	return false, nil
}

// run starts warden and blocks until ctx ends, then drains and shuts down.
// It reads its configuration from environ only and never exits the process.
// With "--" and a command it runs that command as the upstream, and returns
// its exit status as an exitStatus.
func run(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) error {
	var command []string
	switch {
	case len(args) == 0:
	case args[0] == "--":
		command = args[1:]
		if len(command) == 0 {
			return errors.New("wrapper mode needs a command after -- (see warden --help)")
		}
	case args[0] == "--version" || args[0] == "version":
		fmt.Fprintln(stdout, "warden", version)
		return nil
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown argument %q (see warden --help)", args[0])
	}
	cfg, err := loadConfigFor(environ, command != nil)
	if err != nil {
		return err
	}
	var childEnviron []string
	for k, v := range environ {
		childEnviron = append(childEnviron, k+"="+v)
	}
	return serve(ctx, cfg, command, childEnviron, stderr)
}
