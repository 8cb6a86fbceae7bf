package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
)

// Who owns a box, so that a starting runner's sweep removes only what
// nobody uses, whatever Instance the operators configured.
//
// Every box is labelled LabelOwner = "<boot id>:<pid namespace>/<pid>/
// <start time>/<nonce>": the runner's process (its start time tells it
// from a later process with the same pid) and a random nonce per runner.
// The sweep removes
//   - at once, in any state, the boxes of a runner on the same boot and
//     pid namespace as its own whose process is gone (a crash, a kill -9),
//   - and any box stopped for staleAfter (created and never started,
//     exited, dead) whoever owns it.
//
// It leaves running boxes of owners it cannot check (another host via
// DOCKER_HOST, another container's pid namespace, runners from before
// owner labels) alone. Those are still swept, just later: a box's ccbox
// exits when its runner's attach connection closes (StdinOnce) and a
// running program at its time limit, so a dead runner's boxes all stop
// within a minute and are stale after staleAfter. A box that keeps
// running without its runner is an operator's to remove (by LabelOwner).
const staleAfter = 10 * time.Minute

// owner identifies a runner.
type owner struct {
	host  string // boot id and pid namespace, where pids compare; "" when unknown
	pid   int
	start string // /proc/<pid>/stat's starttime
	nonce string
}

func (o owner) String() string {
	return fmt.Sprintf("%s/%d/%s/%s", o.host, o.pid, o.start, o.nonce)
}

func parseOwner(s string) (owner, bool) {
	f := strings.Split(s, "/")
	if len(f) != 4 {
		return owner{}, false
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil || pid <= 0 {
		return owner{}, false
	}
	return owner{host: f[0], pid: pid, start: f[2], nonce: f[3]}, true
}

// newOwner names a new runner of this process.
func newOwner() owner {
	var b [6]byte
	_, _ = rand.Read(b[:])
	o := owner{pid: os.Getpid(), nonce: hex.EncodeToString(b[:])}
	boot, err1 := os.ReadFile("/proc/sys/kernel/random/boot_id")
	ns, err2 := os.Readlink("/proc/self/ns/pid")
	start, alive := processStart(o.pid)
	if err1 == nil && err2 == nil && alive {
		// "pid:[4026531836]" -> "4026531836"
		ns = strings.TrimSuffix(strings.TrimPrefix(ns, "pid:["), "]")
		o.host, o.start = strings.TrimSpace(string(boot))+":"+ns, start
	}
	return o
}

// processStart returns the start time of a live process (not a zombie).
func processStart(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	// pid (comm) state ppid ... starttime is field 22; comm may hold
	// spaces and parentheses, so count from the last ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", false
	}
	return f[19], true
}

// gone reports whether the runner that labelled a box with label is
// known to have ended; false when self cannot tell.
func (self owner) gone(label string, start func(pid int) (string, bool)) bool {
	o, ok := parseOwner(label)
	if !ok || self.host == "" || o.host != self.host {
		return false
	}
	s, alive := start(o.pid)
	return !alive || s != o.start
}

// stale reports whether a box has been stopped for staleAfter: a live
// runner inspects and removes its stopped boxes within a minute.
func stale(state container.ContainerState, created time.Time, finishedAt string, now time.Time) bool {
	switch state {
	case container.StateCreated:
		return now.Sub(created) > staleAfter
	case container.StateExited, container.StateDead:
		t, err := time.Parse(time.RFC3339Nano, finishedAt)
		return err != nil || now.Sub(t) > staleAfter
	}
	return false // running, paused, restarting, being removed
}
