package worker_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
	"github.com/codecrafter/codecrafter/worker"
)

func TestRequeuePending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := mongotest.New(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	mk := func() *codecrafter.Execution {
		e := &codecrafter.Execution{ID: codecrafter.NewID(), UserID: "u", Language: "python", Code: "x",
			Status: codecrafter.StatusQueued, CreatedAt: now, Output: []codecrafter.OutputChunk{{Seq: 1, Status: codecrafter.StatusQueued}}}
		if err := db.CreateExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	queued, running, done := mk(), mk(), mk()
	if _, err := db.ClaimExecution(ctx, running.ID, "gone", now, codecrafter.OutputChunk{Status: codecrafter.StatusRunning}, codecrafter.AnyAttempt); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ClaimExecution(ctx, done.ID, "w", now, codecrafter.OutputChunk{Status: codecrafter.StatusRunning}, codecrafter.AnyAttempt); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FinishExecution(ctx, done.ID, 1, codecrafter.Result{Status: codecrafter.StatusSucceeded, FinishedAt: now}, codecrafter.OutputChunk{Status: codecrafter.StatusSucceeded}); err != nil {
		t.Fatal(err)
	}

	q := inmem.NewQueue(inmem.QueueOptions{})
	t.Cleanup(func() { q.Close() })
	n, err := worker.RequeuePending(ctx, db, q, slog.New(slog.DiscardHandler))
	if err != nil || n != 2 {
		t.Fatalf("RequeuePending = %d, %v; want 2", n, err)
	}
	got := map[string]bool{}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	q.Consume(cctx, 1, func(_ context.Context, d codecrafter.Delivery) error {
		got[d.Job.ExecutionID] = true
		if len(got) == 2 {
			cancel()
		}
		return nil
	})
	if !got[queued.ID] || !got[running.ID] || got[done.ID] {
		t.Errorf("jobs = %v, want the queued and the running run", got)
	}
}
