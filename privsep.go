package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Privilege separation. A model server loads third-party code, and a model
// image often runs as root (vLLM's does), which gives warden's child every
// privilege, its secret file and its memory included. When warden starts as
// root, WARDEN_CHILD_USER makes it start the model server as another user,
// and warden itself then drops to its own non-root identity (WARDEN_RUN_AS,
// default 65532) right after reading its secrets, binding its ports and
// starting the child, before it serves a request.
//
// warden must still signal the child (the drain, forwarded signals, the
// final kill) once it no longer shares its uid: one OS thread of warden's
// keeps CAP_KILL, and only that capability, and every signal to the child
// is sent from it. Every other thread of warden holds no capability at all.

// defaultRunAs is warden's own identity after dropping root: the image's
// nonroot user.
const defaultRunAs = "65532"

// identity is a user to run as.
type identity struct {
	spec   string // as configured, for messages
	uid    int
	gid    int
	groups []int // supplementary groups; none for a numeric identity
}

// parseIdentity reads "name", "uid" or "uid:gid" (a name may also carry
// ":gid"). A name is looked up in the user database, and its groups with
// it; a numeric uid takes its primary group from the database when it is
// there, else a group of the same number, and no supplementary groups.
func parseIdentity(spec string) (identity, error) {
	id := identity{spec: spec}
	name, group, hasGroup := strings.Cut(spec, ":")
	if name == "" {
		return id, errors.New("empty user")
	}
	if uid, err := strconv.Atoi(name); err == nil {
		if uid < 0 {
			return id, fmt.Errorf("bad uid %d", uid)
		}
		id.uid, id.gid = uid, uid
		if u, err := user.LookupId(name); err == nil {
			if gid, err := strconv.Atoi(u.Gid); err == nil {
				id.gid = gid
			}
		}
	} else {
		u, err := user.Lookup(name)
		if err != nil {
			return id, fmt.Errorf("no user %q in the user database", name)
		}
		if id.uid, err = strconv.Atoi(u.Uid); err != nil {
			return id, fmt.Errorf("user %q has a non-numeric uid", name)
		}
		if id.gid, err = strconv.Atoi(u.Gid); err != nil {
			return id, fmt.Errorf("user %q has a non-numeric gid", name)
		}
		if gids, err := u.GroupIds(); err == nil {
			for _, g := range gids {
				if n, err := strconv.Atoi(g); err == nil && n != id.gid {
					id.groups = append(id.groups, n)
				}
			}
		}
	}
	if hasGroup {
		gid, err := strconv.Atoi(group)
		if err != nil || gid < 0 {
			g, lerr := user.LookupGroup(group)
			if lerr != nil {
				return id, fmt.Errorf("no group %q", group)
			}
			if gid, err = strconv.Atoi(g.Gid); err != nil {
				return id, fmt.Errorf("group %q has a non-numeric gid", group)
			}
		}
		id.gid = gid
	}
	return id, nil
}

func (id identity) String() string {
	return strconv.Itoa(id.uid) + ":" + strconv.Itoa(id.gid)
}

// credential is the identity for starting a child with it.
func (id identity) credential() *syscall.Credential {
	groups := make([]uint32, len(id.groups))
	for i, g := range id.groups {
		groups[i] = uint32(g) //nolint:gosec // G115: gids come from the user database or a non-negative number
	}
	return &syscall.Credential{Uid: uint32(id.uid), Gid: uint32(id.gid), Groups: groups} //nolint:gosec // G115: non-negative, checked by parseIdentity
}

// privileges is the plan for warden's identity and its child's.
type privileges struct {
	child *identity // nil: the child runs as warden does
	runAs *identity // nil: warden keeps its identity
}

// planPrivileges checks WARDEN_CHILD_USER and WARDEN_RUN_AS against who
// warden is: as root, either makes warden drop root before serving; as
// anyone else, they can only name warden's own identity. Problems name the
// variable.
func planPrivileges(childUser, runAs string, wrapper bool, euid int) (privileges, []error) {
	var plan privileges
	var problems []error
	if childUser != "" {
		switch id, err := parseIdentity(childUser); {
		case err != nil:
			problems = append(problems, fmt.Errorf("WARDEN_CHILD_USER: %w", err))
		case !wrapper:
			problems = append(problems, errors.New("WARDEN_CHILD_USER: only for wrapper mode (warden -- CMD), where warden starts the model server"))
		case euid != 0 && id.uid != euid:
			problems = append(problems, fmt.Errorf("WARDEN_CHILD_USER: warden runs as uid %d, not root, so it cannot start the model server as %s", euid, childUser))
		case euid == 0:
			plan.child = &id
		}
	}
	if runAs == "" && plan.child != nil {
		runAs = defaultRunAs
	}
	if runAs != "" {
		switch id, err := parseIdentity(runAs); {
		case err != nil:
			problems = append(problems, fmt.Errorf("WARDEN_RUN_AS: %w", err))
		case id.uid == 0:
			problems = append(problems, errors.New("WARDEN_RUN_AS: must not be root: it is the identity warden drops to"))
		case euid != 0 && id.uid != euid:
			problems = append(problems, fmt.Errorf("WARDEN_RUN_AS: warden runs as uid %d, not root, so it cannot become %s", euid, runAs))
		case euid == 0:
			plan.runAs = &id
		}
	}
	return plan, problems
}

// signaller is the one thread of warden that may signal the model server
// once warden has dropped root for another uid than the child's: it keeps
// CAP_KILL.
type signaller struct {
	reqs chan signalReq
}

type signalReq struct {
	pid  int
	sig  syscall.Signal
	caps bool // raise CAP_KILL instead of signalling
	done chan error
}

// newSignaller starts the signalling thread. It must start before warden
// drops root: the thread asks the kernel to keep its capabilities across
// the change of uid (PR_SET_KEEPCAPS, a per-thread flag), and raiseKill
// then keeps CAP_KILL alone.
func newSignaller() (*signaller, error) {
	s := &signaller{reqs: make(chan signalReq)}
	ready := make(chan error)
	go func() {
		// Never unlocked: the thread is the signaller's for the process's
		// life, and the runtime creates no thread from a locked one.
		runtime.LockOSThread()
		ready <- unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0)
		for r := range s.reqs {
			if r.caps {
				r.done <- keepOnlyKill()
				continue
			}
			r.done <- syscall.Kill(r.pid, r.sig)
		}
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("keep CAP_KILL across the change of uid: %w", err)
	}
	return s, nil
}

func (s *signaller) do(r signalReq) error {
	r.done = make(chan error, 1)
	s.reqs <- r
	return <-r.done
}

// kill sends sig to pid (a process group when negative) from the thread
// that holds CAP_KILL.
func (s *signaller) kill(pid int, sig syscall.Signal) error {
	return s.do(signalReq{pid: pid, sig: sig})
}

// raiseKill makes CAP_KILL the signalling thread's only capability,
// permitted and effective, once warden's uid has changed.
func (s *signaller) raiseKill() error {
	return s.do(signalReq{caps: true})
}

func keepOnlyKill() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Permitted = 1 << unix.CAP_KILL
	data[0].Effective = 1 << unix.CAP_KILL
	return unix.Capset(&hdr, &data[0])
}

// becomeIdentity makes warden id on every thread: supplementary groups,
// then group, then user (once the uid is not root, neither could change).
// Only the signaller's thread, if any, keeps CAP_KILL. warden is made
// non-dumpable again, since a change of credentials resets the flag.
func becomeIdentity(id identity, s *signaller) error {
	if err := syscall.Setgroups(id.groups); err != nil {
		return fmt.Errorf("WARDEN_RUN_AS: set groups: %w", err)
	}
	if err := syscall.Setgid(id.gid); err != nil {
		return fmt.Errorf("WARDEN_RUN_AS: set gid %d: %w", id.gid, err)
	}
	if err := syscall.Setuid(id.uid); err != nil {
		return fmt.Errorf("WARDEN_RUN_AS: set uid %d: %w", id.uid, err)
	}
	if os.Geteuid() != id.uid || os.Getegid() != id.gid {
		return fmt.Errorf("WARDEN_RUN_AS: still uid %d, gid %d after the change", os.Geteuid(), os.Getegid())
	}
	if s != nil {
		if err := s.raiseKill(); err != nil {
			return fmt.Errorf("WARDEN_RUN_AS: keep CAP_KILL to signal the model server: %w", err)
		}
	}
	return notDumpable()
}

// signallerFor starts the signalling thread when warden will need it: in
// wrapper mode, when it drops root for a uid other than the model
// server's. It must start before both the child and the drop, so that the
// child is only ever signalled through it.
func (s *settings) signallerFor(wrapper bool) (*signaller, error) {
	id, child := s.privileges.runAs, s.privileges.child
	if !wrapper || id == nil || child != nil && child.uid == id.uid {
		return nil, nil
	}
	sig, err := newSignaller()
	if err != nil {
		return nil, fmt.Errorf("WARDEN_RUN_AS: %w", err)
	}
	return sig, nil
}

// dropPrivileges carries out the plan for warden itself, once the child (if
// any) has started: as root with WARDEN_RUN_AS (or WARDEN_CHILD_USER), it
// becomes that identity before serving. As root in wrapper mode with
// neither, it says what the model server can read.
func (s *settings) dropPrivileges(log zerolog.Logger, sig *signaller) error {
	id := s.privileges.runAs
	if id == nil {
		if os.Geteuid() == 0 && s.wrapper {
			log.Warn().Msg("warden and the model server both run as root: the model server can read warden's secret file, its environment and its memory (root passes every check). Set WARDEN_CHILD_USER to start it as another user, and warden drops root (WARDEN_RUN_AS)")
		}
		return nil
	}
	if err := becomeIdentity(*id, sig); err != nil {
		return err
	}
	e := log.Info().Int("uid", id.uid).Int("gid", id.gid).Ints("groups", id.groups)
	if c := s.privileges.child; c != nil {
		e = e.Str("model_server_user", c.String())
	}
	e.Msg("dropped root: warden serves as " + id.spec)
	return nil
}
