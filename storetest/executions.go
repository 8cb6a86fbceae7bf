package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
)

// TestExecutions checks an ExecutionStore.
func TestExecutions(t *testing.T, newStore func(t *testing.T) codecrafter.ExecutionStore) {
	ctx := context.Background()
	running := codecrafter.OutputChunk{Status: codecrafter.StatusRunning}
	stdout := func(seq int, data string) codecrafter.OutputChunk {
		return codecrafter.OutputChunk{Seq: seq, Stream: codecrafter.Stdout, Data: data, Status: codecrafter.StatusRunning}
	}
	queued := func(session string, created time.Time) *codecrafter.Execution {
		return &codecrafter.Execution{
			ID: codecrafter.NewID(), SessionID: session, UserID: "u1", Language: "python",
			Code: "print(input())", Stdin: "hi\n", TimeLimit: 5 * time.Second, MemoryLimitMB: 128,
			Status: codecrafter.StatusQueued, CreatedAt: created,
			Output: []codecrafter.OutputChunk{{Seq: 1, Status: codecrafter.StatusQueued}},
		}
	}
	create := func(t *testing.T, s codecrafter.ExecutionStore, session string, created time.Time) *codecrafter.Execution {
		t.Helper()
		e := queued(session, created)
		noErr(t, s.CreateExecution(ctx, e))
		return e
	}
	claim := func(t *testing.T, s codecrafter.ExecutionStore, id string, at time.Time) *codecrafter.Execution {
		t.Helper()
		e, err := s.ClaimExecution(ctx, id, "w1", at, running, codecrafter.AnyAttempt)
		noErr(t, err)
		return e
	}
	// seqs checks the output is numbered 1..n, in order.
	seqs := func(t *testing.T, e *codecrafter.Execution, n int) {
		t.Helper()
		if len(e.Output) != n {
			t.Fatalf("%d chunks, want %d: %+v", len(e.Output), n, e.Output)
		}
		for i, c := range e.Output {
			if c.Seq != i+1 {
				t.Fatalf("chunk %d has Seq %d: %+v", i, c.Seq, e.Output)
			}
		}
	}

	t.Run("CreateAndRead", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		want := create(t, s, "s1", now())
		got, err := s.Execution(ctx, want.ID)
		noErr(t, err)
		if got.ID != want.ID || got.SessionID != want.SessionID || got.UserID != want.UserID ||
			got.Language != want.Language || got.Code != want.Code || got.Stdin != want.Stdin ||
			got.TimeLimit != want.TimeLimit || got.MemoryLimitMB != want.MemoryLimitMB ||
			got.Status != codecrafter.StatusQueued || got.Attempt != 0 || got.CancelRequested ||
			got.ExitCode != nil || got.Duration != nil || got.StartedAt != nil || got.FinishedAt != nil {
			t.Errorf("got %+v, want %+v", got, want)
		}
		sameTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
		if !slices.Equal(got.Output, want.Output) {
			t.Errorf("Output = %+v, want %+v", got.Output, want.Output)
		}
		wantCode(t, s.CreateExecution(ctx, want), codecrafter.ECONFLICT)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		create(t, s, "s1", now())
		id := codecrafter.NewID()
		_, err := s.Execution(ctx, id)
		wantCode(t, err, codecrafter.ENOTFOUND)
		_, err = s.ClaimExecution(ctx, id, "w1", now(), running, codecrafter.AnyAttempt)
		wantCode(t, err, codecrafter.ENOTFOUND)
		wantCode(t, s.AppendOutput(ctx, id, 1, stdout(2, "x")), codecrafter.ENOTFOUND)
		_, err = s.FinishExecution(ctx, id, 1, codecrafter.Result{Status: codecrafter.StatusSucceeded, FinishedAt: now()}, codecrafter.OutputChunk{Status: codecrafter.StatusSucceeded})
		wantCode(t, err, codecrafter.ENOTFOUND)
		_, err = s.CancelQueued(ctx, id, now(), codecrafter.OutputChunk{Status: codecrafter.StatusCancelled})
		wantCode(t, err, codecrafter.ENOTFOUND)
		_, err = s.RequestCancel(ctx, id)
		wantCode(t, err, codecrafter.ENOTFOUND)
	})

	t.Run("List", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		a1 := create(t, s, "s1", t0)
		a3 := create(t, s, "s1", t0.Add(2*time.Second))
		a2 := create(t, s, "s1", t0.Add(time.Second))
		create(t, s, "s2", t0.Add(3*time.Second))
		noErr(t, s.AppendOutput(ctx, claim(t, s, a3.ID, t0).ID, 1, stdout(3, "out")))

		ids := func(limit int) []string {
			list, err := s.ListExecutions(ctx, "s1", limit)
			noErr(t, err)
			var ids []string
			for _, e := range list {
				ids = append(ids, e.ID)
				if len(e.Output) != 0 {
					t.Errorf("listed execution %s has %d output chunks, want none", e.ID, len(e.Output))
				}
				if e.Code == "" || e.Status == "" {
					t.Errorf("listed execution lacks fields: %+v", e)
				}
			}
			return ids
		}
		if got, want := ids(10), []string{a3.ID, a2.ID, a1.ID}; !slices.Equal(got, want) {
			t.Errorf("ListExecutions = %v, want %v (newest first)", got, want)
		}
		if got, want := ids(2), []string{a3.ID, a2.ID}; !slices.Equal(got, want) {
			t.Errorf("ListExecutions limit 2 = %v, want %v", got, want)
		}
		none, err := s.ListExecutions(ctx, "s-none", 10)
		noErr(t, err)
		if len(none) != 0 {
			t.Errorf("ListExecutions of an empty session = %d executions", len(none))
		}
	})

	// More runs than fit one small document, some created out of order.
	t.Run("ListMany", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		const n = 41
		want := make([]string, n) // newest first
		// An odd number first, for a swapped pair to straddle any page
		// boundary at an even count.
		want[n-1] = create(t, s, "s1", t0.Add(-time.Second)).ID
		for i := 0; i < n-1; i += 2 {
			// Run i+1 is created before run i, though after it in time.
			later := create(t, s, "s1", t0.Add(time.Duration(i+1)*time.Second))
			earlier := create(t, s, "s1", t0.Add(time.Duration(i)*time.Second))
			want[n-2-i], want[n-3-i] = earlier.ID, later.ID
			if i%10 == 0 {
				create(t, s, "s2", t0.Add(time.Duration(i)*time.Second))
			}
		}
		// 9 and 10: the cut at the edge of a page of 32 (the mongo store's).
		for _, limit := range []int{1, 2, 8, 9, 10, 20, n - 1, n, n + 1} {
			list, err := s.ListExecutions(ctx, "s1", limit)
			noErr(t, err)
			var got []string
			for _, e := range list {
				got = append(got, e.ID)
			}
			if w := want[:min(limit, n)]; !slices.Equal(got, w) {
				t.Errorf("ListExecutions limit %d = %v, want %v", limit, got, w)
			}
		}
	})

	t.Run("ClaimAppendFinish", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		e := create(t, s, "s1", t0)
		// Output needs a claim first.
		wantCode(t, s.AppendOutput(ctx, e.ID, 0, stdout(2, "early")), codecrafter.ECONFLICT)

		started := t0.Add(time.Second)
		c, err := s.ClaimExecution(ctx, e.ID, "w1", started, running, codecrafter.AnyAttempt)
		noErr(t, err)
		if c.Status != codecrafter.StatusRunning || c.Attempt != 1 || c.WorkerID != "w1" || c.StartedAt == nil || !c.StartedAt.Equal(started) {
			t.Errorf("claimed: %+v", c)
		}
		seqs(t, c, 2)
		if ch := c.Output[1]; ch.Status != codecrafter.StatusRunning || ch.Stream != "" {
			t.Errorf("claim chunk = %+v, want a RUNNING status change", ch)
		}

		noErr(t, s.AppendOutput(ctx, e.ID, 1, stdout(3, "hello ")))
		wantCode(t, s.AppendOutput(ctx, e.ID, 1, stdout(3, "again")), codecrafter.ECONFLICT)
		wantCode(t, s.AppendOutput(ctx, e.ID, 1, stdout(5, "gap")), codecrafter.ECONFLICT)
		wantCode(t, s.AppendOutput(ctx, e.ID, 2, stdout(4, "no such attempt")), codecrafter.ECONFLICT)
		errChunk := codecrafter.OutputChunk{Seq: 4, Stream: codecrafter.Stderr, Data: "warn", Status: codecrafter.StatusRunning}
		noErr(t, s.AppendOutput(ctx, e.ID, 1, errChunk))

		exit := 0
		compile := "ok"
		res := codecrafter.Result{
			Status: codecrafter.StatusSucceeded, ExitCode: &exit, Stdout: "hello ", Stderr: "warn",
			CompileOutput: &compile, Duration: 1500 * time.Millisecond, FinishedAt: t0.Add(3 * time.Second),
		}
		f, err := s.FinishExecution(ctx, e.ID, 1, res, codecrafter.OutputChunk{Status: codecrafter.StatusSucceeded})
		noErr(t, err)
		stored, err := s.Execution(ctx, e.ID)
		noErr(t, err)
		for _, x := range []*codecrafter.Execution{f, stored} {
			if x.Status != res.Status || x.ExitCode == nil || *x.ExitCode != 0 || x.Stdout != res.Stdout || x.Stderr != res.Stderr ||
				x.CompileOutput == nil || *x.CompileOutput != compile || x.Duration == nil || *x.Duration != res.Duration ||
				x.Attempt != 1 || x.WorkerID != "w1" {
				t.Errorf("finished: %+v", x)
			}
			sameTimePtr(t, "FinishedAt", x.FinishedAt, &res.FinishedAt)
			sameTimePtr(t, "StartedAt", x.StartedAt, &started)
			seqs(t, x, 5)
			want := []codecrafter.OutputChunk{
				{Seq: 1, Status: codecrafter.StatusQueued},
				{Seq: 2, Status: codecrafter.StatusRunning},
				stdout(3, "hello "),
				errChunk,
				{Seq: 5, Status: codecrafter.StatusSucceeded},
			}
			if !slices.Equal(x.Output, want) {
				t.Errorf("Output = %+v, want %+v", x.Output, want)
			}
		}

		// A final run takes nothing more.
		_, err = s.FinishExecution(ctx, e.ID, 1, res, codecrafter.OutputChunk{Status: codecrafter.StatusSucceeded})
		wantCode(t, err, codecrafter.ECONFLICT)
		wantCode(t, s.AppendOutput(ctx, e.ID, 1, stdout(6, "late")), codecrafter.ECONFLICT)
		_, err = s.ClaimExecution(ctx, e.ID, "w2", t0, running, codecrafter.AnyAttempt)
		wantCode(t, err, codecrafter.ECONFLICT)
		_, err = s.RequestCancel(ctx, e.ID)
		wantCode(t, err, codecrafter.ECONFLICT)
		_, err = s.CancelQueued(ctx, e.ID, t0, codecrafter.OutputChunk{Status: codecrafter.StatusCancelled})
		wantCode(t, err, codecrafter.ECONFLICT)
		stored, err = s.Execution(ctx, e.ID)
		noErr(t, err)
		seqs(t, stored, 5)
	})

	t.Run("ReclaimSupersedes", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		e := create(t, s, "s1", t0)
		claim(t, s, e.ID, t0)
		noErr(t, s.AppendOutput(ctx, e.ID, 1, stdout(3, "first try")))
		c, err := s.ClaimExecution(ctx, e.ID, "w2", t0.Add(time.Minute), running, codecrafter.AnyAttempt)
		noErr(t, err)
		if c.Attempt != 2 || c.WorkerID != "w2" || !c.StartedAt.Equal(t0.Add(time.Minute)) {
			t.Errorf("second claim: %+v", c)
		}
		seqs(t, c, 4)
		// The first worker is out; the second goes on.
		wantCode(t, s.AppendOutput(ctx, e.ID, 1, stdout(5, "stale")), codecrafter.ECONFLICT)
		_, err = s.FinishExecution(ctx, e.ID, 1, codecrafter.Result{Status: codecrafter.StatusFailed, FinishedAt: t0}, codecrafter.OutputChunk{Status: codecrafter.StatusFailed})
		wantCode(t, err, codecrafter.ECONFLICT)
		noErr(t, s.AppendOutput(ctx, e.ID, 2, stdout(5, "second try")))
		f, err := s.FinishExecution(ctx, e.ID, 2, codecrafter.Result{Status: codecrafter.StatusFailed, FinishedAt: t0}, codecrafter.OutputChunk{Status: codecrafter.StatusFailed})
		noErr(t, err)
		if f.Status != codecrafter.StatusFailed || f.ExitCode != nil || f.CompileOutput != nil {
			t.Errorf("finished: %+v", f)
		}
		seqs(t, f, 6)
	})

	t.Run("ClaimIfAttemptAtMost", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		e := create(t, s, "s1", now())
		c, err := s.ClaimExecution(ctx, e.ID, "w1", now(), running, 0)
		noErr(t, err)
		if c.Attempt != 1 {
			t.Fatalf("attempt %d", c.Attempt)
		}
		// A duplicate job (queued at attempt 0) does not supersede attempt 1.
		_, err = s.ClaimExecution(ctx, e.ID, "w2", now(), running, 0)
		wantCode(t, err, codecrafter.ECONFLICT)
		c, err = s.ClaimExecution(ctx, e.ID, "w2", now(), running, 1) // requeued at attempt 1
		noErr(t, err)
		if c.Attempt != 2 || c.WorkerID != "w2" {
			t.Fatalf("claim: %+v", c)
		}
		c, err = s.ClaimExecution(ctx, e.ID, "w3", now(), running, codecrafter.AnyAttempt) // redelivered
		noErr(t, err)
		if c.Attempt != 3 {
			t.Fatalf("attempt %d", c.Attempt)
		}
		got, err := s.Execution(ctx, e.ID)
		noErr(t, err)
		seqs(t, got, 4)
	})

	// A worker passes the Seq it counted for the final chunk and claims a
	// new run at attempt 0: the store may take either as a guess, never
	// as the truth.
	t.Run("FinishWithSeq", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		done := func(seq int) codecrafter.OutputChunk {
			return codecrafter.OutputChunk{Seq: seq, Status: codecrafter.StatusSucceeded}
		}
		res := codecrafter.Result{Status: codecrafter.StatusSucceeded, FinishedAt: t0}

		right := create(t, s, "s1", t0)
		c, err := s.ClaimExecution(ctx, right.ID, "w1", t0, running, 0)
		noErr(t, err)
		noErr(t, s.AppendOutput(ctx, right.ID, c.Attempt, stdout(3, "out")))
		f, err := s.FinishExecution(ctx, right.ID, c.Attempt, res, done(4))
		noErr(t, err)
		seqs(t, f, 4)

		// A Seq behind the run's (a chunk the worker did not count).
		stale := create(t, s, "s1", t0)
		claim(t, s, stale.ID, t0)
		noErr(t, s.AppendOutput(ctx, stale.ID, 1, stdout(3, "out")))
		f, err = s.FinishExecution(ctx, stale.ID, 1, res, done(3))
		noErr(t, err)
		seqs(t, f, 4)
		if f.Status != codecrafter.StatusSucceeded || f.Output[3].Status != codecrafter.StatusSucceeded {
			t.Errorf("finished: %+v", f)
		}

		// A superseded attempt whose Seq is the run's next.
		gone := create(t, s, "s1", t0)
		claim(t, s, gone.ID, t0)
		claim(t, s, gone.ID, t0) // attempt 2, next Seq 4
		_, err = s.FinishExecution(ctx, gone.ID, 1, res, done(4))
		wantCode(t, err, codecrafter.ECONFLICT)

		// A first claim of a run cancelled meanwhile.
		cancelled := create(t, s, "s1", t0)
		_, err = s.CancelQueued(ctx, cancelled.ID, t0, codecrafter.OutputChunk{Status: codecrafter.StatusCancelled})
		noErr(t, err)
		_, err = s.ClaimExecution(ctx, cancelled.ID, "w1", t0, running, 0)
		wantCode(t, err, codecrafter.ECONFLICT)
	})

	t.Run("FinishUnclaimed", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		e := create(t, s, "s1", now())
		f, err := s.FinishExecution(ctx, e.ID, 0, codecrafter.Result{Status: codecrafter.StatusError, FinishedAt: now()}, codecrafter.OutputChunk{Status: codecrafter.StatusError})
		noErr(t, err)
		if f.Status != codecrafter.StatusError {
			t.Errorf("status %s, want ERROR", f.Status)
		}
		seqs(t, f, 2)
	})

	t.Run("CancelQueued", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		e := create(t, s, "s1", t0)
		at := t0.Add(time.Second)
		c, err := s.CancelQueued(ctx, e.ID, at, codecrafter.OutputChunk{Status: codecrafter.StatusCancelled})
		noErr(t, err)
		if c.Status != codecrafter.StatusCancelled {
			t.Errorf("status %s, want CANCELLED", c.Status)
		}
		sameTimePtr(t, "FinishedAt", c.FinishedAt, &at)
		seqs(t, c, 2)
		if c.Output[1].Status != codecrafter.StatusCancelled {
			t.Errorf("cancel chunk %+v", c.Output[1])
		}
		_, err = s.CancelQueued(ctx, e.ID, at, codecrafter.OutputChunk{Status: codecrafter.StatusCancelled})
		wantCode(t, err, codecrafter.ECONFLICT)
		_, err = s.ClaimExecution(ctx, e.ID, "w1", at, running, codecrafter.AnyAttempt)
		wantCode(t, err, codecrafter.ECONFLICT)

		claimed := create(t, s, "s1", t0)
		claim(t, s, claimed.ID, t0)
		_, err = s.CancelQueued(ctx, claimed.ID, at, codecrafter.OutputChunk{Status: codecrafter.StatusCancelled})
		wantCode(t, err, codecrafter.ECONFLICT)
	})

	t.Run("RequestCancel", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		e := create(t, s, "s1", now())
		_, err := s.RequestCancel(ctx, e.ID)
		wantCode(t, err, codecrafter.ECONFLICT)
		claim(t, s, e.ID, now())
		r, err := s.RequestCancel(ctx, e.ID)
		noErr(t, err)
		if !r.CancelRequested || r.Status != codecrafter.StatusRunning {
			t.Errorf("after RequestCancel: %+v", r)
		}
		// The flag stays and the run goes on.
		noErr(t, s.AppendOutput(ctx, e.ID, 1, stdout(3, "still running")))
		stored, err := s.Execution(ctx, e.ID)
		noErr(t, err)
		if !stored.CancelRequested {
			t.Error("CancelRequested not stored")
		}
		f, err := s.FinishExecution(ctx, e.ID, 1, codecrafter.Result{Status: codecrafter.StatusCancelled, FinishedAt: now()}, codecrafter.OutputChunk{Status: codecrafter.StatusCancelled})
		noErr(t, err)
		seqs(t, f, 4)
	})

	t.Run("Stuck", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		old := create(t, s, "s1", t0)
		claim(t, s, old.ID, t0.Add(-time.Hour))
		noErr(t, s.AppendOutput(ctx, old.ID, 1, stdout(3, "x")))
		recent := create(t, s, "s1", t0)
		claim(t, s, recent.ID, t0)
		create(t, s, "s1", t0.Add(-2*time.Hour)) // queued, never started
		done := create(t, s, "s1", t0)
		claim(t, s, done.ID, t0.Add(-time.Hour))
		_, err := s.FinishExecution(ctx, done.ID, 1, codecrafter.Result{Status: codecrafter.StatusSucceeded, FinishedAt: t0}, codecrafter.OutputChunk{Status: codecrafter.StatusSucceeded})
		noErr(t, err)

		stuck, err := s.StuckExecutions(ctx, t0.Add(-time.Minute))
		noErr(t, err)
		if len(stuck) != 1 || stuck[0].ID != old.ID {
			t.Fatalf("StuckExecutions = %+v, want only %s", stuck, old.ID)
		}
		if stuck[0].Attempt != 1 || stuck[0].Status != codecrafter.StatusRunning || len(stuck[0].Output) != 0 {
			t.Errorf("stuck execution: %+v, want attempt 1, RUNNING, no output", stuck[0])
		}
	})

	t.Run("Pending", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		running := create(t, s, "s1", t0.Add(-time.Hour))
		claim(t, s, running.ID, t0)
		noErr(t, s.AppendOutput(ctx, running.ID, 1, stdout(3, "x")))
		queued := create(t, s, "s1", t0)
		done := create(t, s, "s1", t0.Add(-2*time.Hour))
		claim(t, s, done.ID, t0)
		_, err := s.FinishExecution(ctx, done.ID, 1, codecrafter.Result{Status: codecrafter.StatusSucceeded, FinishedAt: t0}, codecrafter.OutputChunk{Status: codecrafter.StatusSucceeded})
		noErr(t, err)
		cancelled := create(t, s, "s1", t0.Add(-3*time.Hour))
		_, err = s.CancelQueued(ctx, cancelled.ID, t0, codecrafter.OutputChunk{Status: codecrafter.StatusCancelled})
		noErr(t, err)
		reclaimed := create(t, s, "s1", t0.Add(time.Hour))
		claim(t, s, reclaimed.ID, t0)
		claim(t, s, reclaimed.ID, t0)
		errored := create(t, s, "s1", t0.Add(-4*time.Hour))
		_, err = s.FinishExecution(ctx, errored.ID, 0, codecrafter.Result{Status: codecrafter.StatusError, FinishedAt: t0}, codecrafter.OutputChunk{Status: codecrafter.StatusError})
		noErr(t, err)

		pending, err := s.PendingExecutions(ctx)
		noErr(t, err)
		if len(pending) != 3 || pending[0].ID != running.ID || pending[1].ID != queued.ID || pending[2].ID != reclaimed.ID {
			t.Fatalf("PendingExecutions = %+v, want %s, %s then %s", pending, running.ID, queued.ID, reclaimed.ID)
		}
		if len(pending[0].Output) != 0 {
			t.Errorf("pending executions come with output: %+v", pending[0].Output)
		}
	})

	t.Run("ManyChunks", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		e := create(t, s, "s1", now())
		claim(t, s, e.ID, now())
		const n = 50
		for i := range n {
			noErr(t, s.AppendOutput(ctx, e.ID, 1, stdout(3+i, fmt.Sprintf("line %d\n", i))))
		}
		got, err := s.Execution(ctx, e.ID)
		noErr(t, err)
		seqs(t, got, n+2)
		if c := got.Output[n+1]; c.Data != fmt.Sprintf("line %d\n", n-1) {
			t.Errorf("last chunk %+v", c)
		}
	})

	t.Run("RacingClaims", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		e := create(t, s, "s1", now())
		attempts := make([]int, racers)
		errs := race(racers, func(i int) error {
			c, err := s.ClaimExecution(ctx, e.ID, fmt.Sprint("w", i), now(), running, codecrafter.AnyAttempt)
			if err == nil {
				attempts[i] = c.Attempt
			}
			return err
		})
		if c := countCodes(errs); c[""] != racers {
			t.Fatalf("racing claims: %v (%v), want all to succeed", c, errs)
		}
		slices.Sort(attempts)
		for i, a := range attempts {
			if a != i+1 {
				t.Fatalf("claim attempts %v, want each of 1..%d once", attempts, racers)
			}
		}
		got, err := s.Execution(ctx, e.ID)
		noErr(t, err)
		if got.Attempt != racers {
			t.Errorf("Attempt = %d, want %d", got.Attempt, racers)
		}
		seqs(t, got, racers+1)
	})

	t.Run("RacingAppends", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		e := create(t, s, "s1", now())
		claim(t, s, e.ID, now())
		errs := race(racers, func(i int) error {
			return s.AppendOutput(ctx, e.ID, 1, stdout(3, fmt.Sprint("racer ", i)))
		})
		if c := countCodes(errs); c[""] != 1 || c[codecrafter.ECONFLICT] != racers-1 {
			t.Errorf("racing appends of one Seq: %v, want 1 success and %d CONFLICT", c, racers-1)
		}
		got, err := s.Execution(ctx, e.ID)
		noErr(t, err)
		seqs(t, got, 3)
	})

	t.Run("RacingClaimAndCancel", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for range 5 { // exactly one of them wins, each time
			e := create(t, s, "s1", now())
			errs := race(2, func(i int) error {
				var err error
				if i == 0 {
					_, err = s.ClaimExecution(ctx, e.ID, "w1", now(), running, codecrafter.AnyAttempt)
				} else {
					_, err = s.CancelQueued(ctx, e.ID, now(), codecrafter.OutputChunk{Status: codecrafter.StatusCancelled})
				}
				return err
			})
			got, err := s.Execution(ctx, e.ID)
			noErr(t, err)
			switch {
			case errs[0] == nil && errs[1] == nil:
				t.Fatalf("both claim and cancel succeeded: %+v", got)
			case errs[1] == nil:
				wantCode(t, errs[0], codecrafter.ECONFLICT)
				if got.Status != codecrafter.StatusCancelled {
					t.Errorf("cancel won but status is %s", got.Status)
				}
			case errs[0] == nil:
				wantCode(t, errs[1], codecrafter.ECONFLICT)
				if got.Status != codecrafter.StatusRunning {
					t.Errorf("claim won but status is %s", got.Status)
				}
			default:
				t.Fatalf("claim: %v; cancel: %v", errs[0], errs[1])
			}
			seqs(t, got, 2)
		}
	})

	t.Run("Outbox", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		e := queued("s1", t0)
		e.Unsent, e.DispatchAt = true, t0.Add(time.Minute)
		noErr(t, s.CreateExecution(ctx, e))
		got, err := s.Execution(ctx, e.ID)
		noErr(t, err)
		if !got.Unsent {
			t.Fatal("Unsent not stored")
		}
		sameTime(t, "DispatchAt", got.DispatchAt, e.DispatchAt)
		pending, err := s.PendingExecutions(ctx)
		noErr(t, err)
		if len(pending) != 1 || !pending[0].Unsent || !pending[0].DispatchAt.Equal(e.DispatchAt) {
			t.Fatalf("PendingExecutions = %+v, want the unsent run with its DispatchAt", pending)
		}

		create(t, s, "s1", t0) // sent: not in the outbox
		unsent, err := s.UnsentExecutions(ctx)
		noErr(t, err)
		if len(unsent) != 1 || unsent[0].ID != e.ID || len(unsent[0].Output) != 0 {
			t.Fatalf("UnsentExecutions = %+v, want only %s, without output", unsent, e.ID)
		}

		// Execute's lease holds until DispatchAt.
		wantCode(t, s.LeaseDispatch(ctx, e.ID, t0, t0.Add(time.Hour)), codecrafter.ECONFLICT)
		// Then one dispatcher of two takes it.
		at := t0.Add(2 * time.Minute)
		errs := race(2, func(int) error { return s.LeaseDispatch(ctx, e.ID, at, at.Add(time.Minute)) })
		if c := countCodes(errs); c[""] != 1 || c[codecrafter.ECONFLICT] != 1 {
			t.Fatalf("racing leases: %v, want one success and one CONFLICT", errs)
		}
		got, err = s.Execution(ctx, e.ID)
		noErr(t, err)
		sameTime(t, "leased DispatchAt", got.DispatchAt, at.Add(time.Minute))
		// A lease that ended can be taken again (the dispatcher crashed).
		noErr(t, s.LeaseDispatch(ctx, e.ID, at.Add(time.Hour), at.Add(2*time.Hour)))

		noErr(t, s.MarkSent(ctx, e.ID))
		got, err = s.Execution(ctx, e.ID)
		noErr(t, err)
		if got.Unsent || got.Status != codecrafter.StatusQueued || len(got.Output) != 1 {
			t.Fatalf("after MarkSent: %+v", got)
		}
		wantCode(t, s.LeaseDispatch(ctx, e.ID, at.Add(3*time.Hour), at.Add(4*time.Hour)), codecrafter.ECONFLICT)
		unsent, err = s.UnsentExecutions(ctx)
		noErr(t, err)
		if len(unsent) != 0 {
			t.Fatalf("UnsentExecutions after MarkSent = %+v", unsent)
		}
		wantCode(t, s.MarkSent(ctx, codecrafter.NewID()), codecrafter.ENOTFOUND)
		wantCode(t, s.LeaseDispatch(ctx, codecrafter.NewID(), at, at), codecrafter.ENOTFOUND)

		// A claimed run is no longer the dispatcher's.
		claimed := queued("s1", t0)
		claimed.Unsent = true
		noErr(t, s.CreateExecution(ctx, claimed))
		claim(t, s, claimed.ID, t0)
		wantCode(t, s.LeaseDispatch(ctx, claimed.ID, at, at), codecrafter.ECONFLICT)
		unsent, err = s.UnsentExecutions(ctx)
		noErr(t, err)
		if len(unsent) != 0 {
			t.Fatalf("UnsentExecutions lists a claimed run: %+v", unsent)
		}
		noErr(t, s.MarkSent(ctx, claimed.ID)) // after the claim: still fine
	})

	t.Run("CountActive", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		mine := func() *codecrafter.Execution {
			e := queued("s1", t0)
			e.UserID = "counted"
			noErr(t, s.CreateExecution(ctx, e))
			return e
		}
		q, r, d := mine(), mine(), mine()
		claim(t, s, r.ID, t0)
		claim(t, s, d.ID, t0)
		_, err := s.FinishExecution(ctx, d.ID, 1, codecrafter.Result{Status: codecrafter.StatusSucceeded, FinishedAt: t0}, codecrafter.OutputChunk{Status: codecrafter.StatusSucceeded})
		noErr(t, err)
		create(t, s, "s1", t0) // another user's
		n, err := s.CountActive(ctx, "counted")
		noErr(t, err)
		if n != 2 {
			t.Fatalf("CountActive = %d, want 2 (queued %s and running %s)", n, q.ID, r.ID)
		}
		n, err = s.CountActive(ctx, "nobody")
		noErr(t, err)
		if n != 0 {
			t.Fatalf("CountActive of a user without runs = %d", n)
		}
	})
}
