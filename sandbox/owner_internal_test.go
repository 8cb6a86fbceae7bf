package sandbox

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
)

func TestOwnerGone(t *testing.T) {
	t.Parallel()
	self := newOwner()
	if self.host == "" || self.start == "" {
		t.Fatalf("owner %q: the runner reads /proc (Linux only)", self)
	}
	if o, ok := parseOwner(self.String()); !ok || o != self {
		t.Fatalf("parseOwner(%q) = %+v, %v", self, o, ok)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	other := self
	other.nonce = "another-runner"
	at := func(pid int, start string) string {
		o := self
		o.pid, o.start = pid, start
		return o.String()
	}
	for _, tc := range []struct {
		name, label string
		gone        bool
	}{
		{"itself", self.String(), false},
		{"another runner of this process", other.String(), false},
		{"a live process", at(os.Getppid(), mustStart(t, os.Getppid())), false},
		{"a dead process", at(dead.Process.Pid, self.start), true},
		{"a later process with the same pid", at(self.pid, self.start+"0"), true},
		{"another host or pid namespace", "5a9d3c1e-0000-4000-8000-000000000000:4026531836/1/1/x", false},
		{"no owner label (an older runner)", "", false},
		{"garbage", "x/y", false},
	} {
		if got := self.gone(tc.label, processStart); got != tc.gone {
			t.Errorf("%s: gone(%q) = %v, want %v", tc.name, tc.label, got, tc.gone)
		}
	}
	// Without /proc nothing is known to be gone.
	if (owner{pid: 1}).gone(at(dead.Process.Pid, "1"), processStart) {
		t.Error("an owner that cannot check pids judged one gone")
	}
}

func mustStart(t *testing.T, pid int) string {
	t.Helper()
	s, ok := processStart(pid)
	if !ok {
		t.Fatalf("process %d not found", pid)
	}
	return s
}

func TestStale(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	long, recent := now.Add(-staleAfter-time.Minute), now.Add(-time.Minute)
	for _, tc := range []struct {
		state    container.ContainerState
		created  time.Time
		finished string
		want     bool
	}{
		{container.StateRunning, long, "", false},
		{container.StatePaused, long, "", false},
		{container.StateRemoving, long, "", false},
		{container.StateCreated, recent, "", false},
		{container.StateCreated, long, "", true},
		{container.StateExited, long, recent.Format(time.RFC3339Nano), false}, // a long-pooled box that just ran
		{container.StateExited, long, long.Format(time.RFC3339Nano), true},
		{container.StateDead, long, "", true},
	} {
		if got := stale(tc.state, tc.created, tc.finished, now); got != tc.want {
			t.Errorf("stale(%s, created %v, finished %q) = %v, want %v", tc.state, tc.created, tc.finished, got, tc.want)
		}
	}
}
