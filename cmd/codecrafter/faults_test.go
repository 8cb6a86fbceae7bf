package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/gqltest"
	"github.com/codecrafter/codecrafter/internal/testenv"
)

// buildBinary builds the codecrafter command once per test process.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "codecrafter-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "codecrafter")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// startWorkerProcess runs `codecrafter worker` against the app's store,
// Redis and RabbitMQ, and returns the process (killed at cleanup).
func startWorkerProcess(t testing.TB, ta *testApp, name string) *exec.Cmd {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "worker",
		"-worker-id", name, "-worker-concurrency", "2", "-pool-size", "0", "-metrics-addr", "127.0.0.1:0", "-log-format", "json", "-log-level", "debug")
	cmd.Env = append(os.Environ(),
		"MONGO_URI="+ta.app.mongoURI, "REDIS_URL="+ta.cfg.RedisURL, "AMQP_URL="+ta.cfg.AMQPURL,
		"CODECRAFTER_QUEUE="+ta.cfg.QueueName, "CODECRAFTER_REDIS_PREFIX="+ta.cfg.RedisPrefix,
		"CODECRAFTER_SANDBOX_INSTANCE="+ta.cfg.SandboxInstance, "CODECRAFTER_MONGO_DB="+ta.cfg.MongoDB,
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := newTestLog(t)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintf(logs, "[%s] %s", name, sc.Text())
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	})
	return cmd
}

// brokerApp is the API alone (no in-process worker) on the embedded store,
// real Redis and the given RabbitMQ, with names of its own on both.
func brokerApp(t testing.TB, amqpURL string, worker bool) *testApp {
	t.Helper()
	redisURL := testenv.RedisURL(t)
	testenv.Docker(t)
	id := codecrafter.RandomToken(6)
	queue := "cmdtest.jobs." + id
	testenv.DeleteQueues(t, amqpURL, queue) // at cleanup, after the app stopped
	ta := startApp(t, func(c *config) {
		c.RedisURL, c.AMQPURL = redisURL, amqpURL
		c.QueueName = queue
		c.RedisPrefix = "cmdtest:" + id + ":"
		c.SandboxInstance = "cmdtest-" + id
		c.Worker = map[bool]string{true: "on", false: "off"}[worker]
	})
	if !worker {
		// Runs after the cleanups of worker processes started later (the
		// app's own check covers its in-process worker).
		t.Cleanup(func() { assertNoContainers(t, ta.cfg.SandboxInstance) })
	}
	return ta
}

// TestWorkerKilledMidRun kills a worker daemon (SIGKILL) while it runs a
// program; RabbitMQ hands the job to another worker, and the run ends with
// exactly one final result holding the whole output.
func TestWorkerKilledMidRun(t *testing.T) {
	t.Parallel()
	ta := brokerApp(t, testenv.AMQPURL(t), false)
	u := ta.register(t, "victim")
	first := startWorkerProcess(t, ta, "worker-a")

	code := "import time\nprint('begin', flush=True)\ntime.sleep(3)\nprint('end', flush=True)\n"
	run := execute(t, u.Client, map[string]any{"language": "python", "code": code, "timeLimitMs": 20000})
	sub := u.Subscribe(t, outputQ, map[string]any{"id": run.ID})
	var events []outputEvent
	for { // wait until worker A's run has printed
		r, ok := sub.Next(t, 90*time.Second)
		if !ok {
			t.Fatalf("output ended early: %+v", events)
		}
		var ev struct{ ExecutionOutput outputEvent }
		r.Decode(t, &ev)
		events = append(events, ev.ExecutionOutput)
		if ev.ExecutionOutput.Data != nil && strings.Contains(*ev.ExecutionOutput.Data, "begin") {
			break
		}
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	startWorkerProcess(t, ta, "worker-b")

	sub.Collect(t, 120*time.Second, func(r *gqltest.Response) {
		var ev struct{ ExecutionOutput outputEvent }
		r.Decode(t, &ev)
		events = append(events, ev.ExecutionOutput)
	})
	// Attempt 2's output replaced attempt 1's: live, after the second
	// RUNNING status; in a replay, alone.
	if got := checkRun(t, events, "SUCCEEDED"); got != "begin\nend\n" {
		t.Errorf("live stream of the last attempt: stdout %q, want B's whole output", got)
	}
	replay := collectOutput(t, u.Client, run.ID)
	checkRun(t, replay, "SUCCEEDED")
	var replayed strings.Builder
	for _, ev := range replay {
		if ev.Data != nil {
			replayed.WriteString(*ev.Data)
		}
	}
	if replayed.String() != "begin\nend\n" {
		t.Errorf("replay carries %q, want only B's output", replayed.String())
	}
	running := 0
	for _, ev := range events {
		if ev.Stream == nil && ev.Status == "RUNNING" {
			running++
		}
	}
	if running != 2 {
		t.Errorf("want two RUNNING status events (worker A, then B's retry), got %d: %+v", running, events)
	}
	var got struct{ Execution execOut }
	u.Do(t, execQ, map[string]any{"id": run.ID}, &got)
	if got.Execution.Status != "SUCCEEDED" || got.Execution.Stdout != "begin\nend\n" {
		t.Errorf("final execution = %+v, want B's whole output", got.Execution)
	}
}

// TestBrokerRestartDuringBurst restarts RabbitMQ (a private node) while a
// burst of runs is being queued and executed: every execute succeeds (a
// run the broker cannot take yet is dispatched once it is back), every
// run ends SUCCEEDED with its own output, none lost, none with two
// results. Nothing here depends on how long the restart takes.
func TestBrokerRestartDuringBurst(t *testing.T) {
	t.Parallel()
	rabbit := testenv.StartRabbit(t)
	ta := brokerApp(t, rabbit.URL, true)
	u := ta.register(t, "burst")

	const n = 16
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if i == n/2 {
				if err := rabbit.Restart(testenv.Context(t, 2*time.Minute)); err != nil {
					t.Errorf("restart: %v", err)
				}
			}
			ids[i] = execute(t, u.Client, map[string]any{"language": "python", "code": fmt.Sprintf("print(%d)", i)}).ID
		})
	}
	wg.Wait()
	for i, id := range ids {
		if id == "" {
			t.Fatalf("run %d was not accepted", i)
		}
		if got := checkRun(t, collectOutput(t, u.Client, id), "SUCCEEDED"); got != fmt.Sprintf("%d\n", i) {
			t.Errorf("run %d printed %q", i, got)
		}
	}
}
