package main

import (
	"slices"
	"syscall"
	"testing"
)

func TestChildEnvDropsEveryWardenVariable(t *testing.T) {
	t.Parallel()
	got := childEnv([]string{"PATH=/bin", "WARDEN_PASSWORD=s", "WARDEN_PASSWORD_FILE=/f", "MODEL=x", "WARDENX=kept", "WARDEN_UPSTREAM=u"})
	if want := []string{"PATH=/bin", "MODEL=x", "WARDENX=kept"}; !slices.Equal(got, want) {
		t.Fatalf("childEnv = %q, want %q", got, want)
	}
}

func TestExitCodeFollowsShellConventions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ws   syscall.WaitStatus
		want int
	}{
		{0, 0},
		{3 << 8, 3}, // exited with 3
		{syscall.WaitStatus(syscall.SIGKILL), 137}, // killed by SIGKILL
		{syscall.WaitStatus(syscall.SIGTERM), 143},
	}
	for _, tt := range tests {
		if got := exitCode(tt.ws); got != tt.want {
			t.Errorf("exitCode(%#x) = %d, want %d", uint32(tt.ws), got, tt.want)
		}
	}
}
