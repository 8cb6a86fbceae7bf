package main

import (
	"fmt"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter/internal/promtest"
	"github.com/codecrafter/codecrafter/internal/testenv"
)

// The end-to-end benchmarks run the whole embedded server (HTTP API,
// FerretDB, in-process queue and bus, worker, Docker sandbox with its warm
// pool) and time what a user sees. Run them with
//
//	go test -run '^$' -bench . -benchtime 40x ./cmd/codecrafter
//
// BENCHMARKS.md has the numbers.

const helloPy = `print("hello")`

// BenchmarkRunLatency measures warm python hello — the run takes a ready
// container from the pool, as an interactive user's does — from the
// execute mutation to its final status on a sessionExecutions
// subscription, beside `docker run --rm` and `docker exec` of the same
// program in the same image, in the same process. b.N is the sample count
// of each. (Back-to-back runs faster than the pool refills are what
// BenchmarkThroughput measures.)
func BenchmarkRunLatency(b *testing.B) {
	testenv.Docker(b)
	ta, u, session := benchApp(b, 2)
	statuses := u.Subscribe(b, sessExQ, map[string]any{"s": session})
	waitFinal := func(id string) {
		for {
			r, ok := statuses.Next(b, time.Minute)
			if !ok {
				b.Fatal("sessionExecutions ended")
			}
			var ev struct{ SessionExecutions struct{ ID, Status string } }
			r.Decode(b, &ev)
			if ev.SessionExecutions.ID == id && (ev.SessionExecutions.Status == "SUCCEEDED") {
				return
			}
			if ev.SessionExecutions.ID == id && ev.SessionExecutions.Status != "QUEUED" && ev.SessionExecutions.Status != "RUNNING" {
				b.Fatalf("run ended %s", ev.SessionExecutions.Status)
			}
		}
	}
	run := func() time.Duration {
		waitPool(b, ta, 2)
		start := time.Now()
		e := execute(b, u.Client, map[string]any{"language": "python", "code": helloPy, "sessionId": session})
		waitFinal(e.ID)
		return time.Since(start)
	}
	for range 3 { // warm up: pool filled, connections open
		run()
	}
	image := "codecrafter/python"
	container := startIdleContainer(b, image)
	ours := sample(b, b.N, run)
	dockerRun := sample(b, b.N, func() time.Duration {
		return timeCmd(b, "docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", helloPy)
	})
	dockerExec := sample(b, b.N, func() time.Duration {
		return timeCmd(b, "docker", "exec", container, "python3", "-c", helloPy)
	})
	b.ReportMetric(ms(pct(ours, 50)), "e2e-p50-ms")
	b.ReportMetric(ms(pct(ours, 99)), "e2e-p99-ms")
	b.ReportMetric(ms(pct(dockerRun, 50)), "docker-run-p50-ms")
	b.ReportMetric(ms(pct(dockerExec, 50)), "docker-exec-p50-ms")
	b.ReportMetric(float64(pct(ours, 50))/float64(pct(dockerRun, 50)), "e2e/docker-run")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkThroughput runs b.N trivial python runs at once through the API
// and reports finished runs per second.
func BenchmarkThroughput(b *testing.B) {
	testenv.Docker(b)
	_, u, _ := benchApp(b, 4)
	for range 2 {
		e := execute(b, u.Client, map[string]any{"language": "python", "code": helloPy})
		checkRun(b, collectOutput(b, u.Client, e.ID), "SUCCEEDED")
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range b.N {
		wg.Go(func() {
			e := execute(b, u.Client, map[string]any{"language": "python", "code": helloPy})
			checkRun(b, collectOutput(b, u.Client, e.ID), "SUCCEEDED")
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "runs/s")
	b.ReportMetric(0, "ns/op")
}

// benchApp serves the embedded default with a warm pool of pool python
// containers and returns a user with a session.
func benchApp(b *testing.B, pool int) (*testApp, *user, string) {
	b.Helper()
	ta := startApp(b, func(c *config) {
		c.Worker, c.PoolSize = "on", pool
		c.SandboxInstance = "bench"
		c.WorkerConcurrency = 4
		c.WSPerUser = 1000 // BenchmarkThroughput follows each run on a socket of its own
	})
	u := ta.register(b, "bench")
	s := createSession(b, u, "bench")
	return ta, u, s.ID
}

func startIdleContainer(b *testing.B, image string) string {
	b.Helper()
	name := fmt.Sprintf("codecrafter-bench-%d", time.Now().UnixNano())
	if out, err := exec.Command("docker", "run", "-d", "--rm", "--network", "none", "--name", name, "--entrypoint", "sleep", image, "600").CombinedOutput(); err != nil {
		b.Fatalf("docker run: %v: %s", err, out)
	}
	b.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	return name
}

func timeCmd(b *testing.B, name string, args ...string) time.Duration {
	start := time.Now()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return time.Since(start)
}

func sample(b *testing.B, n int, f func() time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = f()
	}
	slices.Sort(out)
	return out
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// waitPool waits (untimed) until the python pool holds n ready containers.
func waitPool(b *testing.B, ta *testApp, n int) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for promtest.Value(b, ta.app.registry, "codecrafter_sandbox_pool_ready", map[string]string{"language": "python"}) < float64(n) {
		if time.Now().After(deadline) {
			b.Fatal("the python pool did not fill within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
