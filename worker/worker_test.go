package worker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/executions"
	"github.com/codecrafter/codecrafter/executions/exectest"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/internal/promtest"
	"github.com/codecrafter/codecrafter/worker"
)

const user = "alice"

// env is a deployment in one process: the service queues runs, workers
// run them in a fake sandbox.
type env struct {
	store   store
	queue   *inmem.Queue
	bus     *exectest.LossyBus
	sandbox *exectest.Sandbox
	svc     *executions.Service
	log     *slog.Logger
}

func setup(t *testing.T, s store) *env {
	t.Helper()
	e := &env{
		store: s, queue: inmem.NewQueue(inmem.QueueOptions{DeliveryLimit: 3}), bus: exectest.NewLossyBus(inmem.NewBus()),
		sandbox: exectest.NewSandbox(), log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	exectest.AddSession(t, s, "s1", map[string]codecrafter.Role{user: codecrafter.RoleOwner})
	e.svc = executions.New(executions.Config{RecheckInterval: 50 * time.Millisecond}, e.store, e.store, e.queue, e.bus, exectest.Runtimes{}, e.log, nil)
	return e
}

// fastConfig keeps housekeeping out of the way unless a test wants it.
func fastConfig(id string) worker.Config {
	return worker.Config{ID: id, Concurrency: 2, ShutdownGrace: 5 * time.Second, ReaperInterval: time.Hour, FlushInterval: time.Millisecond,
		RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond, DispatchInterval: 10 * time.Millisecond}
}

// deps overrides a worker's dependencies.
type deps struct {
	queue codecrafter.Queue
	store codecrafter.ExecutionStore
	reg   prometheus.Registerer
}

// startWorker runs a worker until the returned stop is called (or the test
// ends); stop returns Run's error.
func (e *env) startWorker(t *testing.T, cfg worker.Config, d deps) (stop func() error) {
	t.Helper()
	if d.store == nil {
		d.store = e.store
	}
	if d.queue == nil {
		d.queue = e.queue
	}
	w := worker.New(cfg, d.queue, d.store, e.bus, e.sandbox, e.log, d.reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case err = <-done:
			case <-time.After(exectest.Timeout + cfg.ShutdownGrace):
				t.Fatal("worker did not stop")
			}
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(codecrafter.WithUserID(context.Background(), user), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) execute(t *testing.T) *codecrafter.Execution {
	t.Helper()
	x, err := e.svc.Execute(ctxFor(t), executions.ExecuteInput{
		Language: "python", Code: "print(input())", Stdin: ptr("hi"), SessionID: ptr("s1"), TimeLimitMs: ptr(2000), MemoryLimitMb: ptr(64),
	})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func (e *env) final(t *testing.T, id string) *codecrafter.Execution {
	t.Helper()
	live, err := e.svc.Output(ctxFor(t), id)
	if err != nil {
		t.Fatal(err)
	}
	exectest.Collect(t, live) // closes after the final status
	x, err := e.store.Execution(ctxFor(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// settled waits until the queue holds no job, handed out or not.
func (e *env) settled(t *testing.T) {
	t.Helper()
	exectest.Eventually(t, "an empty queue", func() bool {
		st, _ := e.queue.Stats(context.Background())
		return st.Ready == 0 && st.Unacked == 0
	})
}

// dyingWorker takes the job of x from the queue as a worker would, claims
// the run, lets write add to it, then dies: its queue handle closes, so
// the job goes back, redelivered. It returns the claimed attempt.
func (e *env) dyingWorker(t *testing.T, x *codecrafter.Execution, write func(a *codecrafter.Execution)) *codecrafter.Execution {
	t.Helper()
	conn := e.queue.Open()
	claimed := make(chan *codecrafter.Execution, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn.Consume(context.Background(), 1, func(hctx context.Context, d codecrafter.Delivery) error {
			a, err := e.store.ClaimExecution(hctx, d.Job.ExecutionID, "dying", time.Now(), codecrafter.OutputChunk{Status: codecrafter.StatusRunning}, codecrafter.AnyAttempt)
			if err == nil && write != nil {
				write(a)
			}
			claimed <- a
			<-hctx.Done()
			return hctx.Err()
		})
	}()
	a := exectest.Receive(t, claimed)
	if a == nil || a.ID != x.ID {
		t.Fatalf("the dying worker claimed %+v, want %s", a, x.ID)
	}
	conn.Close()
	<-done
	return a
}

func finalChunks(x *codecrafter.Execution) int {
	n := 0
	for _, c := range x.Output {
		if c.Stream == "" && c.Status.Final() {
			n++
		}
	}
	return n
}

func ptr[T any](v T) *T { return &v }

func TestRunStreamsOutputAndResult(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		ctx := ctxFor(t)
		statuses, err := e.svc.SessionExecutions(ctx, "s1")
		if err != nil {
			t.Fatal(err)
		}
		x := e.execute(t)
		live, err := e.svc.Output(ctx, x.ID)
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		e.startWorker(t, fastConfig("w1"), deps{reg: reg})

		call := exectest.Receive(t, e.sandbox.Calls)
		if n := promtest.Value(t, reg, "codecrafter_runs_in_flight", nil); n != 1 {
			t.Fatalf("runs_in_flight = %v during the run", n)
		}
		want := codecrafter.RunRequest{Language: "python", Code: "print(input())", Stdin: "hi", TimeLimit: 2 * time.Second, MemoryLimitMB: 64}
		if call.Req != want {
			t.Fatalf("sandbox got %+v, want %+v", call.Req, want)
		}
		call.Emit(codecrafter.Stdout, "hello ")
		call.Emit(codecrafter.Stderr, "warn\n")
		call.Emit(codecrafter.Stdout, "world\n")
		call.Return(exectest.Exit(0, "hello world\n", "warn\n"), nil)

		chunks := exectest.Collect(t, live)
		exectest.WantChunks(t, chunks, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
		if got := exectest.Text(chunks, codecrafter.Stdout); got != "hello world\n" {
			t.Fatalf("streamed stdout %q", got)
		}
		if got := exectest.Text(chunks, codecrafter.Stderr); got != "warn\n" {
			t.Fatalf("streamed stderr %q", got)
		}
		done := e.final(t, x.ID)
		if done.Status != codecrafter.StatusSucceeded || *done.ExitCode != 0 || done.Stdout != "hello world\n" ||
			done.Attempt != 1 || done.WorkerID != "w1" || done.FinishedAt == nil {
			t.Fatalf("stored result %+v", done)
		}
		for _, want := range []codecrafter.ExecutionStatus{codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusSucceeded} {
			if got := exectest.Receive(t, statuses); got.ID != x.ID || got.Status != want {
				t.Fatalf("session event %s, want %s", got.Status, want)
			}
		}
		e.settled(t)
		if n := promtest.Value(t, reg, "codecrafter_runs_total", map[string]string{"language": "python", "status": "SUCCEEDED"}); n != 1 {
			t.Fatalf("runs_total = %v, want 1", n)
		}
		if n := promtest.Value(t, reg, "codecrafter_runs_in_flight", nil); n != 0 {
			t.Fatalf("runs_in_flight = %v after the run", n)
		}
	})
}

func TestSandboxOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		res  *codecrafter.RunResult
		err  error
		want codecrafter.ExecutionStatus
	}{
		{"program failed", exectest.Exit(3, "", "boom"), nil, codecrafter.StatusFailed},
		{"timed out", &codecrafter.RunResult{Status: codecrafter.StatusTimedOut}, nil, codecrafter.StatusTimedOut},
		{"compile error", &codecrafter.RunResult{Status: codecrafter.StatusCompileError, CompileOutput: ptr("syntax")}, nil, codecrafter.StatusCompileError},
		{"platform failed", nil, errors.New("docker: no such image"), codecrafter.StatusError},
		{"nonsense result", &codecrafter.RunResult{Status: codecrafter.StatusRunning}, nil, codecrafter.StatusError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, exectest.NewStore()) // the store plays no part here
			e.sandbox.Script = func(_ context.Context, _ codecrafter.RunRequest, out codecrafter.OutputFunc) (*codecrafter.RunResult, error) {
				out(codecrafter.Stdout, []byte("partial"))
				return tt.res, tt.err
			}
			x := e.execute(t)
			e.startWorker(t, fastConfig("w"), deps{})
			done := e.final(t, x.ID)
			if done.Status != tt.want {
				t.Fatalf("status %s, want %s", done.Status, tt.want)
			}
			if tt.err != nil && done.Stdout != "partial" {
				t.Fatalf("ERROR result keeps streamed stdout: got %q", done.Stdout)
			}
			e.settled(t)
		})
	}
}

func TestCancelQueuedNeverRuns(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		x := e.execute(t)
		if _, err := e.svc.Cancel(ctxFor(t), x.ID); err != nil {
			t.Fatal(err)
		}
		e.startWorker(t, fastConfig("w"), deps{})
		e.settled(t) // the job was acknowledged without running
		if n := e.sandbox.Runs(); n != 0 {
			t.Fatalf("sandbox ran %d times", n)
		}
		if done := e.final(t, x.ID); done.Status != codecrafter.StatusCancelled || finalChunks(done) != 1 {
			t.Fatalf("got %s with %d final chunks", done.Status, finalChunks(done))
		}
	})
}

func TestCancelRunningKillsIt(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		x := e.execute(t)
		live, err := e.svc.Output(ctxFor(t), x.ID)
		if err != nil {
			t.Fatal(err)
		}
		e.startWorker(t, fastConfig("w"), deps{})
		call := exectest.Receive(t, e.sandbox.Calls)
		call.Emit(codecrafter.Stdout, "tick\n")
		for c := (codecrafter.OutputChunk{}); c.Data != "tick\n"; { // stored once streamed
			c = exectest.Receive(t, live)
		}
		got, err := e.svc.Cancel(ctxFor(t), x.ID)
		if err != nil || !got.CancelRequested {
			t.Fatalf("cancel: %+v %v", got, err)
		}
		select {
		case <-call.Killed():
		case <-time.After(exectest.Timeout):
			t.Fatal("run not killed")
		}
		done := e.final(t, x.ID)
		if done.Status != codecrafter.StatusCancelled || done.Stdout != "tick\n" {
			t.Fatalf("got %s stdout %q", done.Status, done.Stdout)
		}
		exectest.WantChunks(t, done.Output, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusCancelled)
		e.settled(t)
	})
}

func TestCancelRequestedBeforeClaim(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		x := e.execute(t)
		// A worker claimed it and died; then the user cancelled.
		e.dyingWorker(t, x, nil)
		if _, err := e.svc.Cancel(ctxFor(t), x.ID); err != nil {
			t.Fatal(err)
		}
		e.startWorker(t, fastConfig("w"), deps{})
		done := e.final(t, x.ID)
		if done.Status != codecrafter.StatusCancelled || done.Attempt != 2 || e.sandbox.Runs() != 0 {
			t.Fatalf("got %s attempt %d after %d runs", done.Status, done.Attempt, e.sandbox.Runs())
		}
	})
}

func TestRedeliveredFinalJobIsSkipped(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		e.sandbox.Script = func(context.Context, codecrafter.RunRequest, codecrafter.OutputFunc) (*codecrafter.RunResult, error) {
			return exectest.Exit(0, "", ""), nil
		}
		x := e.execute(t)
		e.startWorker(t, fastConfig("w"), deps{})
		e.final(t, x.ID)
		e.settled(t)
		if err := e.queue.Enqueue(ctxFor(t), codecrafter.Job{ExecutionID: x.ID}); err != nil { // a duplicate delivery
			t.Fatal(err)
		}
		e.settled(t)
		done := e.final(t, x.ID)
		if e.sandbox.Runs() != 1 || finalChunks(done) != 1 || done.Attempt != 1 {
			t.Fatalf("%d runs, %d final chunks, attempt %d", e.sandbox.Runs(), finalChunks(done), done.Attempt)
		}
	})
}

func TestJobOfDeadWorkerRunsOnceMore(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		x := e.execute(t)
		live, err := e.svc.Output(ctxFor(t), x.ID) // watching from the start
		if err != nil {
			t.Fatal(err)
		}
		// Worker A claimed it, wrote some output and died.
		a := e.dyingWorker(t, x, func(a *codecrafter.Execution) {
			aChunk := codecrafter.OutputChunk{Seq: 3, Stream: codecrafter.Stdout, Data: "from A", Status: codecrafter.StatusRunning}
			if err := e.store.AppendOutput(ctxFor(t), x.ID, a.Attempt, aChunk); err != nil {
				t.Error(err)
			}
		})
		var seen []codecrafter.OutputChunk
		for exectest.Text(seen, "") != "from A" {
			seen = append(seen, exectest.Receive(t, live))
		}
		// The broker hands the job to worker B.
		e.startWorker(t, fastConfig("B"), deps{})
		call := exectest.Receive(t, e.sandbox.Calls)
		call.Emit(codecrafter.Stdout, "from B")
		call.Return(exectest.Exit(0, "from B", ""), nil)
		done := e.final(t, x.ID)
		// Attempt 2's output replaced attempt 1's: a live subscriber is
		// told by the second RUNNING status, a replay has B's alone.
		seen = append(seen, exectest.Collect(t, live)...)
		exectest.WantChunks(t, seen, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
		if got := exectest.AttemptText(seen, codecrafter.Stdout); got != "from B" {
			t.Fatalf("live stream of attempt 2: %q, want from B", got)
		}
		replay, err := e.svc.Output(ctxFor(t), x.ID)
		if err != nil {
			t.Fatal(err)
		}
		chunks := exectest.Collect(t, replay)
		exectest.WantChunks(t, chunks, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
		if got := exectest.Text(chunks, ""); got != "from B" || done.Stdout != "from B" {
			t.Fatalf("replay %q, stdout %q: want only from B", got, done.Stdout)
		}
		if done.Status != codecrafter.StatusSucceeded || done.Attempt != 2 || done.WorkerID != "B" {
			t.Fatalf("got %s attempt %d by %s", done.Status, done.Attempt, done.WorkerID)
		}
		// A wakes up: its writes are refused.
		aLate := codecrafter.OutputChunk{Seq: done.NextSeq(), Stream: codecrafter.Stdout, Data: "late", Status: codecrafter.StatusRunning}
		if err := e.store.AppendOutput(ctxFor(t), x.ID, a.Attempt, aLate); !codecrafter.IsCode(err, codecrafter.ECONFLICT) {
			t.Fatalf("A's late output: %v, want CONFLICT", err)
		}
		_, err = e.store.FinishExecution(ctxFor(t), x.ID, a.Attempt, codecrafter.Result{Status: codecrafter.StatusFailed, FinishedAt: time.Now()},
			codecrafter.OutputChunk{Seq: done.NextSeq(), Status: codecrafter.StatusFailed})
		if !codecrafter.IsCode(err, codecrafter.ECONFLICT) {
			t.Fatalf("A's late result: %v, want CONFLICT", err)
		}
		done = e.final(t, x.ID)
		exectest.WantChunks(t, done.Output, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
	})
}

func TestSupersededRunWritesNoResult(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		x := e.execute(t)
		e.startWorker(t, fastConfig("A"), deps{})
		call := exectest.Receive(t, e.sandbox.Calls)
		// Meanwhile another worker re-claims the run (A looked dead).
		b, err := e.store.ClaimExecution(ctxFor(t), x.ID, "B", time.Now(), codecrafter.OutputChunk{Status: codecrafter.StatusRunning}, codecrafter.AnyAttempt)
		if err != nil {
			t.Fatal(err)
		}
		call.Emit(codecrafter.Stdout, "A's output") // refused: A stops
		select {
		case <-call.Killed():
		case <-time.After(exectest.Timeout):
			t.Fatal("superseded run not stopped")
		}
		e.settled(t) // A acknowledged its job without a result
		got, err := e.store.Execution(ctxFor(t), x.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != codecrafter.StatusRunning || got.Attempt != b.Attempt || len(got.Output) != len(b.Output) {
			t.Fatalf("A changed the run it lost: %+v", got)
		}
	})
}

func TestShutdownRequeuesAfterGrace(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		x := e.execute(t)
		cfg := fastConfig("A")
		cfg.ShutdownGrace = 20 * time.Millisecond
		stopA := e.startWorker(t, cfg, deps{})
		call := exectest.Receive(t, e.sandbox.Calls)
		if err := stopA(); err != nil { // blocks until the run is killed and Run returns
			t.Fatal(err)
		}
		select {
		case <-call.Killed():
		default:
			t.Fatal("Run returned with the run still going")
		}
		if st, _ := e.queue.Stats(context.Background()); st.Ready != 1 {
			t.Fatalf("queue %+v: job not requeued", st)
		}
		if got, _ := e.store.Execution(ctxFor(t), x.ID); got.Status != codecrafter.StatusRunning {
			t.Fatalf("killed run got a result: %s", got.Status)
		}
		// The next worker takes it over.
		e.startWorker(t, fastConfig("B"), deps{})
		exectest.Receive(t, e.sandbox.Calls).Return(exectest.Exit(0, "", ""), nil)
		if done := e.final(t, x.ID); done.Status != codecrafter.StatusSucceeded || done.Attempt != 2 || finalChunks(done) != 1 {
			t.Fatalf("got %s attempt %d", done.Status, done.Attempt)
		}
	})
}

func TestShutdownLetsRunsFinish(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		x := e.execute(t)
		logs := make(chan string, 100)
		e.log = slog.New(notifyHandler{logs})
		stop := e.startWorker(t, fastConfig("A"), deps{}) // 5 s grace
		call := exectest.Receive(t, e.sandbox.Calls)
		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		for msg := ""; msg != "worker stopping: draining in-flight runs"; {
			msg = exectest.Receive(t, logs)
		}
		// Stopping does not kill the run; it finishes within the grace.
		call.Emit(codecrafter.Stdout, "still here")
		call.Return(exectest.Exit(0, "still here", ""), nil)
		if err := exectest.Receive(t, stopped); err != nil {
			t.Fatal(err)
		}
		if done := e.final(t, x.ID); done.Status != codecrafter.StatusSucceeded {
			t.Fatalf("got %s", done.Status)
		}
		e.settled(t)
	})
}

func TestLostQueueConnectionAbandonsRun(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		x := e.execute(t)
		conn := e.queue.Open()
		e.startWorker(t, fastConfig("A"), deps{queue: conn}) // retries its closed queue until the test ends
		first := exectest.Receive(t, e.sandbox.Calls)
		conn.Close()
		select {
		case <-first.Killed():
		case <-time.After(exectest.Timeout):
			t.Fatal("run kept going without its job")
		}
		if got, _ := e.store.Execution(ctxFor(t), x.ID); got.Status != codecrafter.StatusRunning {
			t.Fatalf("abandoned run got a result: %s", got.Status)
		}
		// The broker hands the job out again; the new attempt finishes it.
		e.startWorker(t, fastConfig("B"), deps{})
		second := exectest.Receive(t, e.sandbox.Calls)
		second.Return(exectest.Exit(0, "", ""), nil)
		done := e.final(t, x.ID)
		if done.Status != codecrafter.StatusSucceeded || done.Attempt != 2 || done.WorkerID != "B" || finalChunks(done) != 1 {
			t.Fatalf("got %s attempt %d by %s with %d final chunks", done.Status, done.Attempt, done.WorkerID, finalChunks(done))
		}
	})
}

func TestReaperFailsStuckRuns(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		stuck, fresh := e.execute(t), e.execute(t)
		claim := func(id string, at time.Time) {
			if _, err := e.store.ClaimExecution(ctxFor(t), id, "gone", at, codecrafter.OutputChunk{Status: codecrafter.StatusRunning}, codecrafter.AnyAttempt); err != nil {
				t.Fatal(err)
			}
		}
		claim(stuck.ID, time.Now().Add(-time.Hour)) // 2 s limit: long overdue
		claim(fresh.ID, time.Now())
		cfg := fastConfig("reaper")
		cfg.ReaperInterval, cfg.CompileAllowance = 10*time.Millisecond, 10*time.Second
		q := inmem.NewQueue(inmem.QueueOptions{}) // an empty queue: the jobs above are not consumed
		w := worker.New(cfg, q, e.store, e.bus, e.sandbox, e.log, nil)
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		go func() { stopped <- w.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-stopped })

		done := e.final(t, stuck.ID)
		if done.Status != codecrafter.StatusError || finalChunks(done) != 1 {
			t.Fatalf("stuck run: %s", done.Status)
		}
		exectest.WantChunks(t, done.Output, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusError)
		// The reaper looked at both in the same pass: the fresh one stays.
		if got, _ := e.store.Execution(ctxFor(t), fresh.ID); got.Status != codecrafter.StatusRunning {
			t.Fatalf("fresh run reaped: %s", got.Status)
		}
	})
}

// flakyStore fails every claim, so jobs are retried until dead-lettered.
type flakyStore struct{ codecrafter.ExecutionStore }

func (flakyStore) ClaimExecution(context.Context, string, string, time.Time, codecrafter.OutputChunk, int) (*codecrafter.Execution, error) {
	return nil, codecrafter.Errorf(codecrafter.EUNAVAILABLE, "database down")
}

func TestDeadLetteredJobFailsItsRun(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		x := e.execute(t)
		e.startWorker(t, fastConfig("w"), deps{store: flakyStore{e.store}})
		done := e.final(t, x.ID)
		if done.Status != codecrafter.StatusError || done.Attempt != 0 || e.sandbox.Runs() != 0 {
			t.Fatalf("got %s attempt %d", done.Status, done.Attempt)
		}
		exectest.WantChunks(t, done.Output, codecrafter.StatusQueued, codecrafter.StatusError)
		exectest.Eventually(t, "the dead letter consumed", func() bool {
			st, _ := e.queue.Stats(context.Background())
			return st.Ready == 0 && st.Unacked == 0 && st.Dead == 0
		})
	})
}

// notifyHandler sends log messages to a channel (dropping them when full).
type notifyHandler struct{ msgs chan string }

func (h notifyHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h notifyHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h notifyHandler) WithGroup(string) slog.Handler            { return h }
func (h notifyHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.msgs <- r.Message:
	default:
	}
	return nil
}

func TestBurstRunsEachExactlyOnce(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		e.sandbox.Script = func(ctx context.Context, req codecrafter.RunRequest, out codecrafter.OutputFunc) (*codecrafter.RunResult, error) {
			for range 5 {
				out(codecrafter.Stdout, []byte("line\n"))
			}
			return exectest.Exit(0, "", ""), nil
		}
		var ids []string
		for range 30 {
			ids = append(ids, e.execute(t).ID)
		}
		e.startWorker(t, fastConfig("A"), deps{})
		e.startWorker(t, fastConfig("B"), deps{})
		for _, id := range ids {
			done := e.final(t, id)
			exectest.WantChunks(t, done.Output, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
			if got := exectest.Text(done.Output, codecrafter.Stdout); got != strings.Repeat("line\n", 5) {
				t.Fatalf("run %s streamed %q", id, got)
			}
		}
		e.settled(t)
		if n := e.sandbox.Runs(); n != len(ids) {
			t.Fatalf("%d sandbox runs for %d jobs", n, len(ids))
		}
	})
}

// brokenOnce fails its first Consume, as a broker restart does.
type brokenOnce struct {
	*inmem.Queue
	failed atomic.Bool
}

func (q *brokenOnce) Consume(ctx context.Context, n int, h func(context.Context, codecrafter.Delivery) error) error {
	if !q.failed.Swap(true) {
		return errors.New("connection reset")
	}
	return q.Queue.Consume(ctx, n, h)
}

func TestWorkerSurvivesQueueFailure(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		e.sandbox.Script = func(context.Context, codecrafter.RunRequest, codecrafter.OutputFunc) (*codecrafter.RunResult, error) {
			return exectest.Exit(0, "", ""), nil
		}
		x := e.execute(t)
		e.startWorker(t, fastConfig("w"), deps{queue: &brokenOnce{Queue: e.queue}})
		if done := e.final(t, x.ID); done.Status != codecrafter.StatusSucceeded {
			t.Fatalf("got %s", done.Status)
		}
	})
}

// claimFails fails the first n claims, as a store does while it restarts.
type claimFails struct {
	codecrafter.ExecutionStore
	n atomic.Int32
}

func (s *claimFails) ClaimExecution(ctx context.Context, id, w string, now time.Time, c codecrafter.OutputChunk, upTo int) (*codecrafter.Execution, error) {
	if s.n.Add(-1) >= 0 {
		return nil, codecrafter.Errorf(codecrafter.EUNAVAILABLE, "database restarting")
	}
	return s.ExecutionStore.ClaimExecution(ctx, id, w, now, c, upTo)
}

// More quick failures than the delivery limit (3) do not dead-letter a
// good job: the worker retries with backoff before returning it.
func TestQuickFailuresDoNotDeadLetter(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		x := e.execute(t)
		flaky := &claimFails{ExecutionStore: e.store}
		flaky.n.Store(5)
		e.startWorker(t, fastConfig("w"), deps{store: flaky})
		exectest.Receive(t, e.sandbox.Calls).Return(exectest.Exit(0, "", ""), nil)
		if done := e.final(t, x.ID); done.Status != codecrafter.StatusSucceeded || done.Attempt != 1 {
			t.Fatalf("got %s attempt %d", done.Status, done.Attempt)
		}
		if st, _ := e.queue.Stats(context.Background()); st.Dead != 0 {
			t.Fatalf("queue %+v: the job was dead-lettered", st)
		}
	})
}

// Shutdowns that kill a run requeue it as a new job: more of them than the
// delivery limit (3) do not dead-letter it.
func TestShutdownRequeuesDoNotDeadLetter(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		x := e.execute(t)
		for i := range 4 {
			cfg := fastConfig(fmt.Sprint("stopping-", i))
			cfg.ShutdownGrace = time.Millisecond
			stop := e.startWorker(t, cfg, deps{})
			call := exectest.Receive(t, e.sandbox.Calls)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			<-call.Killed()
		}
		e.startWorker(t, fastConfig("last"), deps{})
		exectest.Receive(t, e.sandbox.Calls).Return(exectest.Exit(0, "", ""), nil)
		if done := e.final(t, x.ID); done.Status != codecrafter.StatusSucceeded || done.Attempt != 5 || finalChunks(done) != 1 {
			t.Fatalf("got %s attempt %d", done.Status, done.Attempt)
		}
		if st, _ := e.queue.Stats(context.Background()); st.Dead != 0 {
			t.Fatalf("queue %+v: the job was dead-lettered", st)
		}
	})
}

// readsFail fails reads of executions while down is set.
type readsFail struct {
	codecrafter.ExecutionStore
	down  atomic.Bool
	tries atomic.Int32
}

func (s *readsFail) Execution(ctx context.Context, id string) (*codecrafter.Execution, error) {
	if s.down.Load() {
		s.tries.Add(1)
		return nil, codecrafter.Errorf(codecrafter.EUNAVAILABLE, "database down")
	}
	return s.ExecutionStore.Execution(ctx, id)
}

// A dead letter whose run cannot be failed (the store is down) is kept and
// retried, not acknowledged and lost with the run left QUEUED.
func TestDeadLetterKeptWhileStoreDown(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		e.queue = inmem.NewQueue(inmem.QueueOptions{DeliveryLimit: 1})
		x, err := e.store.Execution(ctxFor(t), e.execute(t).ID)
		if err != nil {
			t.Fatal(err)
		}
		// Its job is dead-lettered (one failed delivery).
		if err := e.queue.Enqueue(ctxFor(t), codecrafter.Job{ExecutionID: x.ID}); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(context.Background())
		e.queue.Consume(cctx, 1, func(context.Context, codecrafter.Delivery) error {
			cancel()
			return errors.New("fails")
		})
		exectest.Eventually(t, "a dead letter", func() bool {
			st, _ := e.queue.Stats(context.Background())
			return st.Dead == 1
		})

		down := &readsFail{ExecutionStore: e.store}
		down.down.Store(true)
		q := &deadOnly{e.queue}
		cfg := fastConfig("w")
		w := worker.New(cfg, q, down, e.bus, e.sandbox, e.log, nil)
		ctx, stopW := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		go func() { stopped <- w.Run(ctx) }()
		t.Cleanup(func() { stopW(); <-stopped })

		exectest.Eventually(t, "retries of the dead letter", func() bool { return down.tries.Load() >= 3 })
		if got, _ := e.store.Execution(ctxFor(t), x.ID); got.Status != codecrafter.StatusQueued {
			t.Fatalf("run %s while the store was down", got.Status)
		}
		down.down.Store(false)
		done := e.final(t, x.ID)
		if done.Status != codecrafter.StatusError || finalChunks(done) != 1 {
			t.Fatalf("got %s", done.Status)
		}
		exectest.Eventually(t, "the dead letter acknowledged", func() bool {
			st, _ := e.queue.Stats(context.Background())
			return st.Dead == 0 && st.Unacked == 0
		})
	})
}

// deadOnly consumes only dead letters (Consume idles until ctx ends).
type deadOnly struct{ *inmem.Queue }

func (q *deadOnly) Consume(ctx context.Context, _ int, _ func(context.Context, codecrafter.Delivery) error) error {
	<-ctx.Done()
	return nil
}

// A run stored but never queued (the API crashed in between) is sent by
// the dispatcher once its lease ends, exactly once though two workers
// dispatch.
func TestUnsentRunIsDispatchedOnce(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		now := time.Now().UTC().Truncate(time.Millisecond)
		x := &codecrafter.Execution{
			ID: codecrafter.NewID(), SessionID: "s1", UserID: user, Language: "python", Code: "print(1)",
			TimeLimit: time.Second, MemoryLimitMB: 64, Status: codecrafter.StatusQueued, CreatedAt: now,
			Output: []codecrafter.OutputChunk{{Seq: 1, Status: codecrafter.StatusQueued}},
			Unsent: true, DispatchAt: now,
		}
		if err := e.store.CreateExecution(ctxFor(t), x); err != nil {
			t.Fatal(err)
		}
		e.sandbox.Script = func(context.Context, codecrafter.RunRequest, codecrafter.OutputFunc) (*codecrafter.RunResult, error) {
			return exectest.Exit(0, "", ""), nil
		}
		e.startWorker(t, fastConfig("A"), deps{})
		e.startWorker(t, fastConfig("B"), deps{})
		done := e.final(t, x.ID)
		if done.Status != codecrafter.StatusSucceeded || done.Attempt != 1 || done.Unsent {
			t.Fatalf("got %s attempt %d unsent %v", done.Status, done.Attempt, done.Unsent)
		}
		e.settled(t)
		if n := e.sandbox.Runs(); n != 1 {
			t.Fatalf("%d sandbox runs", n)
		}
	})
}

// outage is a queue whose Enqueue fails while down, as a broker that
// restarts does.
type outage struct {
	*inmem.Queue
	down atomic.Bool
}

func (q *outage) Enqueue(ctx context.Context, job codecrafter.Job) error {
	if q.down.Load() {
		return codecrafter.Errorf(codecrafter.EUNAVAILABLE, "job queue unavailable")
	}
	return q.Queue.Enqueue(ctx, job)
}

// Execute during a queue outage succeeds; the run reaches the queue and
// runs once when the queue is back.
func TestExecuteDuringQueueOutage(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		q := &outage{Queue: e.queue}
		q.down.Store(true)
		e.svc = executions.New(executions.Config{RecheckInterval: 50 * time.Millisecond, EnqueueTimeout: 10 * time.Millisecond},
			e.store, e.store, q, e.bus, exectest.Runtimes{}, e.log, nil)
		x := e.execute(t)
		logs := make(chan string, 100)
		e.log = slog.New(notifyHandler{logs})
		e.startWorker(t, fastConfig("w"), deps{queue: q})
		for msg := ""; msg != "dispatch an unsent run: the queue is still unavailable"; {
			msg = exectest.Receive(t, logs)
		}
		q.down.Store(false)
		call := exectest.Receive(t, e.sandbox.Calls)
		call.Emit(codecrafter.Stdout, "late but once")
		call.Return(exectest.Exit(0, "late but once", ""), nil)
		done := e.final(t, x.ID)
		if done.Status != codecrafter.StatusSucceeded || done.Attempt != 1 || done.Stdout != "late but once" {
			t.Fatalf("got %s attempt %d stdout %q", done.Status, done.Attempt, done.Stdout)
		}
		e.settled(t)
		if n := e.sandbox.Runs(); n != 1 {
			t.Fatalf("%d sandbox runs", n)
		}
	})
}

// The reaper fails runs QUEUED too long (their job was lost), not others.
func TestReaperFailsStuckQueuedRuns(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		mk := func(created time.Time) *codecrafter.Execution {
			x := &codecrafter.Execution{
				ID: codecrafter.NewID(), SessionID: "s1", UserID: user, Language: "python", Code: "print(1)",
				TimeLimit: time.Second, MemoryLimitMB: 64, Status: codecrafter.StatusQueued, CreatedAt: created,
				Output: []codecrafter.OutputChunk{{Seq: 1, Status: codecrafter.StatusQueued}},
			}
			if err := e.store.CreateExecution(ctxFor(t), x); err != nil {
				t.Fatal(err)
			}
			return x
		}
		lost, fresh := mk(time.Now().Add(-time.Hour)), mk(time.Now())
		cfg := fastConfig("reaper")
		cfg.ReaperInterval, cfg.QueuedTimeout = 10*time.Millisecond, 10*time.Minute
		w := worker.New(cfg, inmem.NewQueue(inmem.QueueOptions{}), e.store, e.bus, e.sandbox, e.log, nil)
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		go func() { stopped <- w.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-stopped })

		done := e.final(t, lost.ID)
		exectest.WantChunks(t, done.Output, codecrafter.StatusQueued, codecrafter.StatusError)
		if got, _ := e.store.Execution(ctxFor(t), fresh.ID); got.Status != codecrafter.StatusQueued {
			t.Fatalf("fresh queued run reaped: %s", got.Status)
		}
	})
}

// A duplicate of a job (a publish retried after a lost confirm) does not
// claim the run another job is running: it is skipped.
func TestDuplicateJobDoesNotRerun(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s)
		x := e.execute(t)
		if err := e.queue.Enqueue(ctxFor(t), codecrafter.Job{ExecutionID: x.ID}); err != nil {
			t.Fatal(err)
		}
		e.startWorker(t, fastConfig("w"), deps{}) // concurrency 2: both jobs at once
		call := exectest.Receive(t, e.sandbox.Calls)
		exectest.Eventually(t, "the duplicate acknowledged", func() bool {
			st, _ := e.queue.Stats(context.Background())
			return st.Ready == 0 && st.Unacked == 1
		})
		call.Return(exectest.Exit(0, "", ""), nil)
		done := e.final(t, x.ID)
		if done.Status != codecrafter.StatusSucceeded || done.Attempt != 1 || e.sandbox.Runs() != 1 {
			t.Fatalf("got %s attempt %d after %d runs", done.Status, done.Attempt, e.sandbox.Runs())
		}
		e.settled(t)
	})
}
