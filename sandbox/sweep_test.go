package sandbox_test

import (
	"context"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/testenv"
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

// TestConcurrentSweeps starts two runners at once, as two servers
// restarting together would: both sweeps meet the same leftovers, and each
// runner starts only once they are gone, whichever of the two removed them.
func TestConcurrentSweeps(t *testing.T) {
	t.Parallel()
	cfg := sandbox.Config{Instance: "test-" + codecrafter.NewID(), Pool: map[string]int{}}
	probe, _ := newRunner(t, cfg)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	f := strings.Split(probe.Owner(), "/") // host/pid/start/nonce
	f[1], f[3] = strconv.Itoa(dead.Process.Pid), "crashed"
	gone := strings.Join(f, "/")
	for range 8 {
		startIdle(t, cfg.Instance, gone)
	}

	type started struct {
		d    *sandbox.Docker
		err  error
		left []string
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	results := make(chan started, 2)
	for range 2 {
		go func() {
			d, err := sandbox.NewDocker(testenv.Context(t, time.Minute), cfg, sandbox.DefaultRuntimes(), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			var left []string
			if err == nil { // through the API, at once: the CLI's start would give removals time
				var list client.ContainerListResult
				list, err = cli.ContainerList(context.Background(), client.ContainerListOptions{All: true,
					Filters: client.Filters{}.Add("label", sandbox.LabelOwner+"="+gone)})
				for _, c := range list.Items {
					left = append(left, c.ID[:12])
				}
			}
			results <- started{d, err, left}
		}()
	}
	for i := range 2 {
		r := <-results
		if r.err != nil {
			t.Fatalf("runner %d: %v", i+1, r.err)
		}
		t.Cleanup(func() { _ = r.d.Close() })
		if len(r.left) > 0 {
			t.Errorf("runner %d started with the dead runner's containers still there: %v", i+1, r.left)
		}
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
