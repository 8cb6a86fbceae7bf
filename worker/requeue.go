package worker

import (
	"context"
	"log/slog"

	"github.com/codecrafter/codecrafter"
)

// RequeuePending enqueues a job for every QUEUED or RUNNING execution
// (but unsent ones: the dispatcher sends those). An
// in-process queue loses its jobs when the process stops; run this at
// start, before workers consume, so those runs still happen. (A RUNNING
// one is claimed again with a new attempt; its old attempt died with the
// process.) A durable broker keeps its jobs and needs none of this.
func RequeuePending(ctx context.Context, store codecrafter.ExecutionStore, queue codecrafter.Queue, log *slog.Logger) (int, error) {
	pending, err := store.PendingExecutions(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range pending {
		if e.Unsent {
			continue // the dispatcher sends it
		}
		if err := queue.Enqueue(ctx, codecrafter.Job{ExecutionID: e.ID, Attempt: e.Attempt}); err != nil {
			return 0, err
		}
		log.InfoContext(ctx, "requeued a run left by an earlier process", "execution", e.ID, "status", e.Status)
		n++
	}
	return n, nil
}
