package sandbox_test

import (
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/promtest"
	"github.com/codecrafter/codecrafter/sandbox"
)

// TestWarmPool checks a pooled container serves exactly one run, without
// container creation on the run's path, and is replaced in the background.
func TestWarmPool(t *testing.T) {
	t.Parallel()
	// A pool of exactly one: PoolMax -1 keeps demand from growing it
	// (that sizing is TestDemand's).
	cfg := sandbox.Config{Instance: "test-" + codecrafter.NewID(), Pool: map[string]int{"python": 1}, PoolMax: -1}
	d, reg := newRunner(t, cfg)
	ready := func() bool {
		return promtest.Value(t, reg, "codecrafter_sandbox_pool_ready", map[string]string{"language": "python"}) == 1
	}
	waitFor(t, "a ready python container", ready)
	pooled := labelled(t, cfg.Instance)
	if len(pooled) != 1 {
		t.Fatalf("pool of one holds containers %v", pooled)
	}
	var used []string
	d.OnAcquire(func(id string) { used = append(used, id) })

	res := run(t, d, codecrafter.RunRequest{Language: "python", Code: "print('warm')"})
	if res.Status != codecrafter.StatusSucceeded || res.Stdout != "warm\n" {
		t.Fatalf("pooled run: %s", describe(res))
	}
	if len(used) != 1 || !strings.HasPrefix(used[0], pooled[0]) {
		t.Fatalf("the run used %v, not the pooled %v", used, pooled)
	}
	if n := promtest.Value(t, reg, "codecrafter_sandbox_containers_acquired_total", map[string]string{"language": "python", "source": "pool"}); n != 1 {
		t.Errorf("pool acquisitions = %v, want 1", n)
	}
	assertGone(t, d, used[0])

	// A replacement arrives; a run with another memory limit still uses
	// it (resized) and sees its own limit.
	waitFor(t, "a replacement container", ready)
	replacement := labelled(t, cfg.Instance)
	if len(replacement) != 1 || strings.HasPrefix(used[0], replacement[0]) {
		t.Fatalf("replacement %v (used %v)", replacement, used)
	}
	res = run(t, d, codecrafter.RunRequest{Language: "python", MemoryLimitMB: 96,
		Code: "print(open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip())"})
	if res.Status != codecrafter.StatusSucceeded || strings.TrimSpace(res.Stdout) != "100663296" {
		t.Errorf("resized pooled run: %s", describe(res))
	}
	if n := promtest.Value(t, reg, "codecrafter_sandbox_containers_acquired_total", map[string]string{"language": "python", "source": "pool"}); n != 2 {
		t.Errorf("pool acquisitions = %v, want 2", n)
	}
	// A pooled container that died while waiting costs a retry, not the run.
	waitFor(t, "another replacement", ready)
	d.WaitRemovals() // of the resized run's container
	// The waiting one is the one running: the used ones have exited and
	// may still be being removed.
	dead := labelledWith(t, sandbox.LabelInstance, cfg.Instance, "status=running")
	if len(dead) != 1 {
		t.Fatalf("waiting containers %v, want one", dead)
	}
	if out, err := execOutput("docker", "rm", "-f", dead[0]); err != nil {
		t.Fatalf("docker rm: %v %s", err, out)
	}
	res = run(t, d, codecrafter.RunRequest{Language: "python", Code: "print('retried')"})
	if res.Status != codecrafter.StatusSucceeded || res.Stdout != "retried\n" {
		t.Errorf("run after its pooled container died: %s", describe(res))
	}
	if n := promtest.Value(t, reg, "codecrafter_sandbox_containers_acquired_total", map[string]string{"language": "python", "source": "fresh"}); n != 1 {
		t.Errorf("fresh acquisitions = %v, want 1 (the retry)", n)
	}
	if n := promtest.Value(t, reg, "codecrafter_sandbox_containers_in_flight", nil); n != 0 {
		t.Errorf("in flight after the runs: %v", n)
	}
	// Close (in cleanup) drains the pool: newRunner checks nothing is left.
}

// waitFor polls cond until it holds or 60 s pass: there is no event to
// wait on for the pool's background work.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-time.After(20 * time.Millisecond)
	}
}
