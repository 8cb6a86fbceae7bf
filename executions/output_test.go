package executions_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/events"
	"github.com/codecrafter/codecrafter/executions"
	"github.com/codecrafter/codecrafter/executions/exectest"
	"github.com/codecrafter/codecrafter/inmem"
)

// runner plays a worker: it writes chunks to the store, then the bus.
type runner struct {
	t   *testing.T
	e   *env
	x   *codecrafter.Execution
	pub events.Publisher
}

func start(t *testing.T, e *env, x *codecrafter.Execution) *runner {
	t.Helper()
	claimed, err := e.store.ClaimExecution(testContext(t), x.ID, "w", time.Now(), codecrafter.OutputChunk{Status: codecrafter.StatusRunning}, codecrafter.AnyAttempt)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{t: t, e: e, x: claimed, pub: events.Publisher{Bus: e.bus}}
	if err := r.pub.Status(testContext(t), claimed); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *runner) write(data string) {
	r.t.Helper()
	x, err := r.e.store.Execution(testContext(r.t), r.x.ID)
	if err != nil {
		r.t.Fatal(err)
	}
	c := codecrafter.OutputChunk{Seq: x.NextSeq(), Stream: codecrafter.Stdout, Data: data, Status: codecrafter.StatusRunning}
	if err := r.e.store.AppendOutput(testContext(r.t), r.x.ID, r.x.Attempt, c); err != nil {
		r.t.Fatal(err)
	}
	if err := r.pub.Chunks(testContext(r.t), r.x.ID, c); err != nil {
		r.t.Fatal(err)
	}
}

func (r *runner) finish() {
	r.t.Helper()
	x, err := r.e.store.Execution(testContext(r.t), r.x.ID)
	if err != nil {
		r.t.Fatal(err)
	}
	done, err := r.e.store.FinishExecution(testContext(r.t), r.x.ID, r.x.Attempt,
		codecrafter.Result{Status: codecrafter.StatusSucceeded, Stdout: exectest.Text(codecrafter.CurrentOutput(x.Output), ""), FinishedAt: time.Now()},
		codecrafter.OutputChunk{Seq: x.NextSeq(), Status: codecrafter.StatusSucceeded})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.pub.Status(testContext(r.t), done); err != nil {
		r.t.Fatal(err)
	}
}

func TestOutputLive(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{RecheckInterval: time.Hour}) // only live events
		x := queued(t, e, bob, false)
		live, err := e.svc.Output(as(t, vic), x.ID)
		if err != nil {
			t.Fatal(err)
		}
		r := start(t, e, x)
		for _, s := range []string{"a", "b", "c"} {
			r.write(s)
		}
		r.finish()
		chunks := exectest.Collect(t, live)
		exectest.WantChunks(t, chunks, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
		if got := exectest.Text(chunks, ""); got != "abc" {
			t.Fatalf("output %q, want abc", got)
		}
	})
}

func TestOutputLateSubscriber(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{RecheckInterval: time.Hour})
		x := queued(t, e, bob, false)
		r := start(t, e, x)
		r.write("a")
		r.write("b")
		late, err := e.svc.Output(as(t, alice), x.ID) // mid-run
		if err != nil {
			t.Fatal(err)
		}
		r.write("c")
		r.finish()
		after, err := e.svc.Output(as(t, alice), x.ID) // after the end
		if err != nil {
			t.Fatal(err)
		}
		for name, ch := range map[string]<-chan codecrafter.OutputChunk{"mid-run": late, "finished": after} {
			chunks := exectest.Collect(t, ch)
			exectest.WantChunks(t, chunks, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
			if got := exectest.Text(chunks, ""); got != "abc" {
				t.Fatalf("%s subscriber: output %q, want abc", name, got)
			}
		}
	})
}

// A retried run (the job of a dead worker handed out again) replaces its
// output: a replay, and the stdout of the run while it goes, hold only the
// last attempt's; a subscriber that watched the first attempt sees the
// second RUNNING status, which starts the new attempt, then its output.
func TestOutputRetryReplacesOutput(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{RecheckInterval: time.Hour})
		x := queued(t, e, bob, false)
		live, err := e.svc.Output(as(t, vic), x.ID)
		if err != nil {
			t.Fatal(err)
		}
		start(t, e, x).write("from A") // then worker A dies
		var seen []codecrafter.OutputChunk
		for exectest.Text(seen, "") != "from A" {
			seen = append(seen, exectest.Receive(t, live))
		}

		b := start(t, e, x) // attempt 2
		b.write("from B")
		mid, err := e.svc.Execution(as(t, alice), x.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got := exectest.Text(mid.Output, codecrafter.Stdout); got != "from B" {
			t.Fatalf("output of the running run %q, want only attempt 2's", got)
		}
		b.finish()

		seen = append(seen, exectest.Collect(t, live)...)
		exectest.WantChunks(t, seen, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
		if got := exectest.AttemptText(seen, codecrafter.Stdout); got != "from B" {
			t.Fatalf("live subscriber: attempt 2 streamed %q, want from B", got)
		}
		replay, err := e.svc.Output(as(t, alice), x.ID)
		if err != nil {
			t.Fatal(err)
		}
		chunks := exectest.Collect(t, replay)
		exectest.WantChunks(t, chunks, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
		if got := exectest.Text(chunks, ""); got != "from B" {
			t.Fatalf("replay carries %q, want only from B", got)
		}
		done, err := e.svc.Execution(as(t, alice), x.ID)
		if err != nil {
			t.Fatal(err)
		}
		if done.Stdout != "from B" {
			t.Fatalf("final stdout %q", done.Stdout)
		}
	})
}

// countingStore counts reads of whole executions.
type countingStore struct {
	store
	reads atomic.Int64
}

func (s *countingStore) Execution(ctx context.Context, id string) (*codecrafter.Execution, error) {
	s.reads.Add(1)
	return s.store.Execution(ctx, id)
}

// A subscriber to a run that makes no progress re-reads it less and less
// often, instead of every RecheckInterval forever.
func TestOutputBacksOffOnStuckRun(t *testing.T) {
	t.Parallel()
	cs := &countingStore{store: exectest.NewStore()}
	e := setup(t, cs, executions.Config{RecheckInterval: 2 * time.Millisecond, MaxRecheckInterval: time.Hour})
	x := queued(t, e, bob, false) // never runs
	began := time.Now()
	live, err := e.svc.Output(as(t, bob), x.ID)
	if err != nil {
		t.Fatal(err)
	}
	exectest.Receive(t, live) // QUEUED; nothing more comes
	const rechecks = 8
	exectest.Eventually(t, "rechecks", func() bool { return cs.reads.Load() >= 1+rechecks })
	// Waits of 2, 4, ... 256 ms: at least this long (a lower bound, which
	// load cannot break); without backoff 8 rechecks take some 16 ms.
	if least := 2 * time.Millisecond * (1<<rechecks - 1); time.Since(began) < least {
		t.Fatalf("%d re-reads within %v, want them at least %v apart in total", rechecks, time.Since(began), least)
	}
}

func TestOutputFillsGaps(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{RecheckInterval: time.Hour}) // only gap detection recovers
		x := queued(t, e, bob, false)
		live, err := e.svc.Output(as(t, bob), x.ID)
		if err != nil {
			t.Fatal(err)
		}
		// The bus loses the RUNNING chunk and the 2nd and 3rd output chunks,
		// and delivers another one twice.
		e.bus.SetDrop(func(topic string, payload []byte) bool {
			c, err := events.DecodeChunk(payload)
			return err == nil && (c.Seq == 2 || c.Seq == 4 || c.Seq == 5)
		})
		r := start(t, e, x)
		for _, s := range []string{"1", "2", "3", "4"} {
			r.write(s)
		}
		dup, _ := e.store.Execution(testContext(t), x.ID)
		if err := r.pub.Chunks(testContext(t), x.ID, dup.Output[len(dup.Output)-1]); err != nil {
			t.Fatal(err)
		}
		r.finish()
		chunks := exectest.Collect(t, live)
		exectest.WantChunks(t, chunks, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
		if got := exectest.Text(chunks, ""); got != "1234" {
			t.Fatalf("output %q, want 1234", got)
		}
	})
}

func TestOutputRecoversLostFinalEvent(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{RecheckInterval: 20 * time.Millisecond})
		x := queued(t, e, bob, false)
		live, err := e.svc.Output(as(t, bob), x.ID)
		if err != nil {
			t.Fatal(err)
		}
		e.bus.SetDrop(func(topic string, _ []byte) bool { return topic == codecrafter.ExecutionTopic(x.ID) })
		r := start(t, e, x)
		r.write("only in the store")
		r.finish()
		chunks := exectest.Collect(t, live) // would hang without the recheck
		exectest.WantChunks(t, chunks, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
	})
}

// TestOutputResubscribesWhenEnded: a subscriber that falls behind has its
// bus subscription ended; it subscribes again and re-reads the store, so
// it gets every chunk without waiting for the (hourly) recheck.
func TestOutputResubscribesWhenEnded(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{RecheckInterval: time.Hour})
		e.bus = exectest.NewLossyBus(inmem.NewBusWithBuffer(4))
		e.svc = e.service(executions.Config{RecheckInterval: time.Hour}, e.queue)
		x := queued(t, e, bob, false)
		live, err := e.svc.Output(as(t, bob), x.ID)
		if err != nil {
			t.Fatal(err)
		}
		r := start(t, e, x)
		const n = 20 // unread meanwhile: the bus ends the subscription
		for range n {
			r.write("x")
		}
		r.finish()
		chunks := exectest.Collect(t, live)
		exectest.WantChunks(t, chunks, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
		if got := exectest.Text(chunks, ""); got != strings.Repeat("x", n) {
			t.Fatalf("output has %d chunks' worth, want %d", len(got), n)
		}
	})
}

func TestOutputEndsWithContext(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{})
		x := queued(t, e, bob, false)
		ctx, cancel := context.WithCancel(as(t, bob))
		live, err := e.svc.Output(ctx, x.ID)
		if err != nil {
			t.Fatal(err)
		}
		if c := exectest.Receive(t, live); c.Seq != 1 {
			t.Fatalf("first chunk %+v", c)
		}
		cancel()
		if rest := exectest.Collect(t, live); len(rest) != 0 {
			t.Fatalf("chunks after cancel: %+v", rest)
		}
	})
}

func TestSessionExecutions(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{})
		ctx, cancel := context.WithCancel(as(t, vic))
		events, err := e.svc.SessionExecutions(ctx, "s1")
		if err != nil {
			t.Fatal(err)
		}
		x := queued(t, e, bob, false)
		queued(t, e, bob, true) // private: not on the session topic
		start(t, e, x)
		for _, want := range []codecrafter.ExecutionStatus{codecrafter.StatusQueued, codecrafter.StatusRunning} {
			got := exectest.Receive(t, events)
			if got.ID != x.ID || got.Status != want || got.Code != x.Code || got.UserID != bob {
				t.Fatalf("event %+v, want %s of %s", got, want, x.ID)
			}
		}
		cancel()
		if rest := exectest.Collect(t, events); len(rest) != 0 {
			t.Fatalf("events after cancel: %+v", rest)
		}

		_, err = e.svc.SessionExecutions(as(t, eve), "s1")
		wantCode(t, err, codecrafter.ENOTFOUND, "session")
		_, err = e.svc.SessionExecutions(testContext(t), "s1")
		wantCode(t, err, codecrafter.EUNAUTHENTICATED, "")
	})
}

func TestEventsRoundTrip(t *testing.T) {
	t.Parallel()
	code, d, now := 3, 1500*time.Millisecond, time.Now().UTC().Truncate(time.Millisecond)
	x := &codecrafter.Execution{
		ID: "x1", SessionID: "s1", UserID: "u", Language: "go", Code: "c", Stdin: "in",
		TimeLimit: 2 * time.Second, MemoryLimitMB: 64, Status: codecrafter.StatusFailed, ExitCode: &code,
		Stdout: "o", Stderr: "e", CompileOutput: ptr("warn"), Duration: &d, CreatedAt: now, StartedAt: &now,
		FinishedAt: &now, Attempt: 2, WorkerID: "w", CancelRequested: true,
	}
	got, err := events.DecodeExecution(events.EncodeExecution(x))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != x.ID || *got.ExitCode != code || *got.Duration != d || *got.CompileOutput != "warn" ||
		!got.StartedAt.Equal(now) || got.TimeLimit != x.TimeLimit || !got.CancelRequested || got.Attempt != 2 {
		t.Fatalf("round trip: %+v", got)
	}
	c := codecrafter.OutputChunk{Seq: 7, Stream: codecrafter.Stderr, Data: "é\n", Status: codecrafter.StatusRunning}
	if got, err := events.DecodeChunk(events.EncodeChunk(c)); err != nil || got != c {
		t.Fatalf("chunk round trip: %+v %v", got, err)
	}
	for _, bad := range []string{`{}`, `not json`, `{"seq":0,"status":"RUNNING"}`} {
		if _, err := events.DecodeChunk([]byte(bad)); err == nil {
			t.Errorf("DecodeChunk(%s) accepted", bad)
		}
	}
	if _, err := events.DecodeCancel([]byte(`{}`)); err == nil {
		t.Error("DecodeCancel accepted an empty id")
	}
}
