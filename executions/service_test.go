package executions_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/events"
	"github.com/codecrafter/codecrafter/executions"
	"github.com/codecrafter/codecrafter/executions/exectest"
	"github.com/codecrafter/codecrafter/inmem"
)

// Users of session "s1"; eve takes no part in it.
const (
	alice = "alice" // owner
	bob   = "bob"   // editor
	vic   = "vic"   // viewer
	eve   = "eve"
)

type env struct {
	svc   *executions.Service
	store store
	queue *inmem.Queue
	bus   *exectest.LossyBus
}

func setup(t *testing.T, s store, cfg executions.Config) *env {
	t.Helper()
	e := &env{store: s, queue: inmem.NewQueue(inmem.QueueOptions{}), bus: exectest.NewLossyBus(inmem.NewBus())}
	exectest.AddSession(t, s, "s1", map[string]codecrafter.Role{alice: codecrafter.RoleOwner, bob: codecrafter.RoleEditor, vic: codecrafter.RoleViewer})
	e.svc = e.service(cfg, e.queue)
	return e
}

func (e *env) service(cfg executions.Config, queue codecrafter.Queue) *executions.Service {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	return executions.New(cfg, e.store, e.store, queue, e.bus, exectest.Runtimes{}, logger, nil)
}

func as(t *testing.T, user string) context.Context {
	t.Helper()
	return codecrafter.WithUserID(testContext(t), user)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ptr[T any](v T) *T { return &v }

func wantCode(t *testing.T, err error, code, msgPart string) {
	t.Helper()
	if got := codecrafter.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
	if msg := codecrafter.ErrorMessage(err); !strings.Contains(msg, msgPart) {
		t.Fatalf("message %q does not mention %q", msg, msgPart)
	}
}

func TestExecuteValidation(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{MaxTimeLimit: 30 * time.Second, MaxMemoryMB: 1024})
		ok := executions.ExecuteInput{Language: "python", Code: "print(1)"}
		with := func(f func(*executions.ExecuteInput)) executions.ExecuteInput {
			in := ok
			f(&in)
			return in
		}
		tests := []struct {
			name    string
			user    string
			in      executions.ExecuteInput
			code    string
			message string
		}{
			{"no caller", "", ok, codecrafter.EUNAUTHENTICATED, "authentication"},
			{"unknown language", alice, with(func(in *executions.ExecuteInput) { in.Language = "cobol" }), codecrafter.EINVALID, "language"},
			{"empty code", alice, with(func(in *executions.ExecuteInput) { in.Code = "" }), codecrafter.EINVALID, "code"},
			{"blank code", alice, with(func(in *executions.ExecuteInput) { in.Code = " \n\t" }), codecrafter.EINVALID, "code"},
			{"code too long", alice, with(func(in *executions.ExecuteInput) { in.Code = strings.Repeat("x", codecrafter.MaxCodeLen+1) }), codecrafter.EINVALID, "code: at most 65536"},
			{"stdin too long", alice, with(func(in *executions.ExecuteInput) { in.Stdin = ptr(strings.Repeat("x", codecrafter.MaxStdinLen+1)) }), codecrafter.EINVALID, "stdin"},
			{"zero time limit", alice, with(func(in *executions.ExecuteInput) { in.TimeLimitMs = ptr(0) }), codecrafter.EINVALID, "timeLimitMs: must be positive"},
			{"negative time limit", alice, with(func(in *executions.ExecuteInput) { in.TimeLimitMs = ptr(-5) }), codecrafter.EINVALID, "timeLimitMs"},
			{"time limit over max", alice, with(func(in *executions.ExecuteInput) { in.TimeLimitMs = ptr(30001) }), codecrafter.EINVALID, "timeLimitMs: at most 30000"},
			{"zero memory", alice, with(func(in *executions.ExecuteInput) { in.MemoryLimitMb = ptr(0) }), codecrafter.EINVALID, "memoryLimitMb: must be positive"},
			{"memory below the engine's minimum", alice, with(func(in *executions.ExecuteInput) { in.MemoryLimitMb = ptr(5) }), codecrafter.EINVALID, "memoryLimitMb: at least 6"},
			{"memory over max", alice, with(func(in *executions.ExecuteInput) { in.MemoryLimitMb = ptr(1025) }), codecrafter.EINVALID, "memoryLimitMb: at most 1024"},
			{"unknown session", alice, with(func(in *executions.ExecuteInput) { in.SessionID = ptr("nope") }), codecrafter.ENOTFOUND, "session"},
			{"outsider", eve, with(func(in *executions.ExecuteInput) { in.SessionID = ptr("s1") }), codecrafter.ENOTFOUND, "session"},
			{"viewer", vic, with(func(in *executions.ExecuteInput) { in.SessionID = ptr("s1") }), codecrafter.EFORBIDDEN, "VIEWER"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				ctx := testContext(t)
				if tt.user != "" {
					ctx = as(t, tt.user)
				}
				_, err := e.svc.Execute(ctx, tt.in)
				wantCode(t, err, tt.code, tt.message)
			})
		}
		t.Cleanup(func() {
			if st, _ := e.queue.Stats(context.Background()); st.Ready != 0 {
				t.Errorf("rejected runs were queued: %+v", st)
			}
		})
	})
}

func TestExecuteQueues(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{})
		ctx := as(t, bob)
		updates, err := e.bus.Subscribe(ctx, codecrafter.SessionExecutionsTopic("s1"))
		if err != nil {
			t.Fatal(err)
		}
		x, err := e.svc.Execute(ctx, executions.ExecuteInput{
			Language: "PY", Code: "print(input())", Stdin: ptr("hi"), SessionID: ptr("s1"),
			TimeLimitMs: ptr(1500), MemoryLimitMb: ptr(64),
		})
		if err != nil {
			t.Fatal(err)
		}
		stored, err := e.store.Execution(ctx, x.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := codecrafter.Execution{
			ID: x.ID, SessionID: "s1", UserID: bob, Language: "python", Code: "print(input())", Stdin: "hi",
			TimeLimit: 1500 * time.Millisecond, MemoryLimitMB: 64, Status: codecrafter.StatusQueued,
		}
		got := *stored
		got.CreatedAt, got.Output = time.Time{}, nil
		if got.ID != want.ID || got.SessionID != want.SessionID || got.UserID != want.UserID || got.Language != want.Language ||
			got.Code != want.Code || got.Stdin != want.Stdin || got.TimeLimit != want.TimeLimit ||
			got.MemoryLimitMB != want.MemoryLimitMB || got.Status != want.Status {
			t.Fatalf("stored %+v, want %+v", got, want)
		}
		if len(stored.Output) != 1 || stored.Output[0] != (codecrafter.OutputChunk{Seq: 1, Status: codecrafter.StatusQueued}) {
			t.Fatalf("output %+v, want the QUEUED chunk", stored.Output)
		}
		if st, _ := e.queue.Stats(ctx); st.Ready != 1 {
			t.Fatalf("queue %+v, want one job", st)
		}
		if stored.Unsent {
			t.Fatal("a queued run is still marked unsent")
		}
		ev := exectest.Receive(t, updates)
		if ex, err := events.DecodeExecution(ev); err != nil || ex.ID != x.ID || ex.Status != codecrafter.StatusQueued {
			t.Fatalf("session event %+v, %v", ex, err)
		}
	})
}

func TestExecuteDefaults(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{DefaultTimeLimit: 3 * time.Second, DefaultMemoryMB: 128})
		x, err := e.svc.Execute(as(t, eve), executions.ExecuteInput{Language: "go", Code: "package main"})
		if err != nil {
			t.Fatal(err)
		}
		if x.TimeLimit != 3*time.Second || x.MemoryLimitMB != 128 || x.SessionID != "" {
			t.Fatalf("got limits %v %d session %q", x.TimeLimit, x.MemoryLimitMB, x.SessionID)
		}
	})
}

// A queue outage does not fail Execute: the run is stored QUEUED and
// unsent, for the dispatcher (the worker tests check it gets sent).
func TestExecuteEnqueueFailure(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{})
		gone := e.queue.Open()
		gone.Close() // the broker connection is lost
		svc := e.service(executions.Config{EnqueueTimeout: time.Second}, gone)
		ctx := as(t, alice)
		updates, err := e.bus.Subscribe(ctx, codecrafter.SessionExecutionsTopic("s1"))
		if err != nil {
			t.Fatal(err)
		}
		x, err := svc.Execute(ctx, executions.ExecuteInput{Language: "python", Code: "1", SessionID: ptr("s1")})
		if err != nil {
			t.Fatalf("Execute during a queue outage: %v", err)
		}
		stored, err := e.store.Execution(ctx, x.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Status != codecrafter.StatusQueued || !stored.Unsent || !stored.DispatchAt.After(stored.CreatedAt) {
			t.Fatalf("unqueued run stored as %+v, want QUEUED, unsent, leased to Execute for a while", stored)
		}
		if ex, _ := events.DecodeExecution(exectest.Receive(t, updates)); ex.Status != codecrafter.StatusQueued {
			t.Fatalf("session event %s, want QUEUED", ex.Status)
		}
	})
}

// limiter refuses every attempt past max.
type limiter struct {
	max   int
	takes map[string]int
}

func (l *limiter) Take(_ context.Context, key string) (time.Duration, error) {
	l.takes[key]++
	if l.takes[key] > l.max {
		return 42 * time.Second, nil
	}
	return 0, nil
}

func TestExecuteRateLimited(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		lim := &limiter{max: 2, takes: map[string]int{}}
		e := setup(t, s, executions.Config{Limiter: lim})
		queued(t, e, alice, true)
		queued(t, e, alice, true)
		_, err := e.svc.Execute(as(t, alice), executions.ExecuteInput{Language: "python", Code: "print(1)"})
		wantCode(t, err, codecrafter.ERATELIMITED, "too many runs")
		var ce *codecrafter.Error
		if !errors.As(err, &ce) || ce.RetryAfter != 42*time.Second {
			t.Fatalf("error %#v, want RetryAfter from the limiter", err)
		}
		queued(t, e, bob, true) // per user
		if st, _ := e.queue.Stats(testContext(t)); st.Ready != 3 {
			t.Fatalf("queue %+v, want the 3 admitted runs", st)
		}
	})
}

func TestExecuteActiveCap(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{MaxActivePerUser: 2})
		first := queued(t, e, alice, true)
		queued(t, e, alice, false)
		_, err := e.svc.Execute(as(t, alice), executions.ExecuteInput{Language: "python", Code: "print(1)"})
		wantCode(t, err, codecrafter.ERATELIMITED, "2 runs queued or running")
		var ce *codecrafter.Error
		if !errors.As(err, &ce) || ce.RetryAfter <= 0 {
			t.Fatalf("error %#v, want a RetryAfter", err)
		}
		queued(t, e, bob, true) // another user is not capped
		// A finished run frees a place.
		if _, err := e.svc.Cancel(as(t, alice), first.ID); err != nil {
			t.Fatal(err)
		}
		queued(t, e, alice, true)
	})
}

// queued stores a QUEUED run of user, in session s1 unless private.
func queued(t *testing.T, e *env, user string, private bool) *codecrafter.Execution {
	t.Helper()
	in := executions.ExecuteInput{Language: "python", Code: "print(1)"}
	if !private {
		in.SessionID = ptr("s1")
	}
	x, err := e.svc.Execute(as(t, user), in)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestVisibility(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{})
		shared := queued(t, e, bob, false)
		private := queued(t, e, bob, true)
		tests := []struct {
			user    string
			id      string
			visible bool
		}{
			{bob, shared.ID, true}, {alice, shared.ID, true}, {vic, shared.ID, true}, {eve, shared.ID, false},
			{bob, private.ID, true}, {alice, private.ID, false}, {eve, private.ID, false},
			{bob, "missing", false},
		}
		for _, tt := range tests {
			got, err := e.svc.Execution(as(t, tt.user), tt.id)
			if tt.visible {
				if err != nil || got.ID != tt.id {
					t.Errorf("%s reading %s: %v", tt.user, tt.id, err)
				}
				continue
			}
			wantCode(t, err, codecrafter.ENOTFOUND, "execution not found")
			if _, err := e.svc.Output(as(t, tt.user), tt.id); codecrafter.ErrorCode(err) != codecrafter.ENOTFOUND {
				t.Errorf("%s streaming %s: %v, want NOT_FOUND", tt.user, tt.id, err)
			}
		}
		_, err := e.svc.Execution(testContext(t), shared.ID)
		wantCode(t, err, codecrafter.EUNAUTHENTICATED, "")
	})
}

func TestList(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{})
		first, second := queued(t, e, bob, false), queued(t, e, alice, false)
		queued(t, e, alice, true) // private: not listed
		list, err := e.svc.List(as(t, vic), "s1", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].ID != second.ID || list[1].ID != first.ID {
			t.Fatalf("list %v, want newest first [%s %s]", ids(list), second.ID, first.ID)
		}
		if list, _ := e.svc.List(as(t, vic), "s1", 1); len(list) != 1 {
			t.Fatalf("limit 1 gave %d", len(list))
		}
		for _, limit := range []int{0, -1, 101} {
			_, err := e.svc.List(as(t, alice), "s1", limit)
			wantCode(t, err, codecrafter.EINVALID, "limit")
		}
		_, err = e.svc.List(as(t, eve), "s1", 10)
		wantCode(t, err, codecrafter.ENOTFOUND, "session")
	})
}

func ids(list []*codecrafter.Execution) []string {
	var out []string
	for _, x := range list {
		out = append(out, x.ID)
	}
	return out
}

func TestCancelQueued(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{})
		x := queued(t, e, bob, false)
		ctx := as(t, alice) // owner, not the requester
		live, err := e.svc.Output(ctx, x.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.svc.Cancel(ctx, x.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != codecrafter.StatusCancelled {
			t.Fatalf("status %s, want CANCELLED", got.Status)
		}
		chunks := exectest.Collect(t, live)
		exectest.WantChunks(t, chunks, codecrafter.StatusQueued, codecrafter.StatusCancelled)
		// Idempotent: a second cancel returns the run unchanged.
		again, err := e.svc.Cancel(as(t, bob), x.ID)
		if err != nil || again.Status != codecrafter.StatusCancelled || len(again.Output) != 2 {
			t.Fatalf("second cancel: %+v %v", again, err)
		}
	})
}

func TestCancelRunning(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{})
		x := queued(t, e, bob, false)
		ctx := as(t, bob)
		if _, err := e.store.ClaimExecution(ctx, x.ID, "w1", time.Now(), codecrafter.OutputChunk{Status: codecrafter.StatusRunning}, codecrafter.AnyAttempt); err != nil {
			t.Fatal(err)
		}
		cancels, err := e.bus.Subscribe(ctx, codecrafter.CancelTopic)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.svc.Cancel(ctx, x.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != codecrafter.StatusRunning || !got.CancelRequested {
			t.Fatalf("got %s cancelRequested=%v", got.Status, got.CancelRequested)
		}
		if id, err := events.DecodeCancel(exectest.Receive(t, cancels)); err != nil || id != x.ID {
			t.Fatalf("cancel event %q %v", id, err)
		}
	})
}

func TestCancelPermissions(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{})
		shared, private := queued(t, e, bob, false), queued(t, e, bob, true)
		_, err := e.svc.Cancel(as(t, vic), shared.ID)
		wantCode(t, err, codecrafter.EFORBIDDEN, "cancel")
		_, err = e.svc.Cancel(as(t, eve), shared.ID)
		wantCode(t, err, codecrafter.ENOTFOUND, "execution")
		_, err = e.svc.Cancel(as(t, alice), private.ID)
		wantCode(t, err, codecrafter.ENOTFOUND, "execution")
		_, err = e.svc.Cancel(testContext(t), shared.ID)
		wantCode(t, err, codecrafter.EUNAUTHENTICATED, "")
		if got, err := e.svc.Cancel(as(t, bob), private.ID); err != nil || got.Status != codecrafter.StatusCancelled {
			t.Fatalf("requester cancelling a private run: %v %v", got, err)
		}
	})
}

func TestViewerOwnRunStaysCancellable(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		e := setup(t, s, executions.Config{})
		x := queued(t, e, bob, false)
		// bob is demoted to viewer after queueing: still the requester.
		_, err := e.store.UpdateSession(testContext(t), "s1", func(sess *codecrafter.Session) error {
			for i := range sess.Participants {
				if sess.Participants[i].UserID == bob {
					sess.Participants[i].Role = codecrafter.RoleViewer
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := e.svc.Cancel(as(t, bob), x.ID); err != nil || got.Status != codecrafter.StatusCancelled {
			t.Fatalf("requester cancel: %v %v", got, err)
		}
	})
}
