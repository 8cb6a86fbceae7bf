package sandbox_test

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/sandbox"
)

// TestSweepSparesLiveRunners starts two runners under one instance name
// on the engine, as two servers on one machine would: the second's
// start-up sweep leaves the first's warm container, and a running one of
// an owner it cannot check, alone, and removes those of a dead runner.
func TestSweepSparesLiveRunners(t *testing.T) {
	t.Parallel()
	cfg := sandbox.Config{Instance: "test-" + codecrafter.NewID(), Pool: map[string]int{"python": 1}}
	first, _ := newRunner(t, cfg)
	waitFor(t, "the first runner's warm container", func() bool { return first.PoolReady("python") == 1 })
	warm := labelledWith(t, sandbox.LabelOwner, first.Owner())
	if len(warm) != 1 {
		t.Fatalf("the first runner's containers: %v", warm)
	}

	// Leftovers: a dead process of this host (its pid, reaped), and a
	// runner on another host.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	f := strings.Split(first.Owner(), "/") // host/pid/start/nonce
	f[1], f[3] = strconv.Itoa(dead.Process.Pid), "crashed"
	orphan := startIdle(t, cfg.Instance, strings.Join(f, "/"))
	remote := startIdle(t, "elsewhere", "0c5a2b1e-7d7e-4f4e-9a56-2f1f3e9b7c10:4026531836/"+f[1]+"/1/remote")

	second, _ := newRunner(t, cfg)
	if exists(t, orphan) {
		t.Errorf("the dead runner's container %s was not swept", orphan[:12])
	}
	if !exists(t, remote) {
		t.Errorf("the other host's running container %s was removed", remote[:12])
	}
	if !exists(t, warm[0]) {
		t.Fatalf("the second runner removed the first's warm container %s", warm[0][:12])
	}

	// Both still run code; the first in its warm container.
	var used string
	first.OnAcquire(func(id string) { used = id })
	for i, d := range []*sandbox.Docker{first, second} {
		res := run(t, d, codecrafter.RunRequest{Language: "python", Code: "print('alive')"})
		if res.Status != codecrafter.StatusSucceeded || res.Stdout != "alive\n" {
			t.Errorf("runner %d: %s", i+1, describe(res))
		}
	}
	if used != warm[0] {
		t.Errorf("the first runner used %.12s, not its warm %.12s", used, warm[0])
	}
}

// startIdle starts a container labelled like a sandbox box that idles
// until the test ends, and returns its id.
func startIdle(t *testing.T, instance, owner string) string {
	t.Helper()
	out, err := exec.Command("docker", "run", "-d", "--network", "none", "--entrypoint", "sleep",
		"--label", sandbox.LabelInstance+"="+instance, "--label", sandbox.LabelOwner+"="+owner,
		"codecrafter/python", "infinity").Output()
	id := strings.TrimSpace(string(out))
	if err != nil || id == "" {
		t.Fatalf("docker run: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", id).Run() })
	return id
}

func exists(t *testing.T, id string) bool {
	t.Helper()
	out, err := execOutput("docker", "ps", "-aq", "--no-trunc", "--filter", "id="+id)
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	return strings.TrimSpace(out) != ""
}
