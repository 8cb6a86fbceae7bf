package worker

import (
	"context"
	"time"

	"github.com/codecrafter/codecrafter"
)

// reapLoop fails stuck runs every ReaperInterval until ctx ends.
func (w *Worker) reapLoop(ctx context.Context) {
	for wait(ctx, w.cfg.ReaperInterval) {
		w.reap(ctx)
	}
}

// reap fails RUNNING executions whose worker must have vanished: running
// for more than twice their time limit plus the compile allowance.
func (w *Worker) reap(ctx context.Context) {
	now := w.now()
	// No run may take less than this; each one's own limit is checked below.
	stuck, err := w.store.StuckExecutions(ctx, now.Add(-2*w.cfg.CompileAllowance))
	if err != nil {
		w.log.Warn("list stuck executions", "err", err)
		return
	}
	isStuck := func(e *codecrafter.Execution) bool {
		deadline := now.Add(-2 * (e.TimeLimit + w.cfg.CompileAllowance))
		return e.Status == codecrafter.StatusRunning && (e.StartedAt == nil || e.StartedAt.Before(deadline))
	}
	for _, e := range stuck {
		if isStuck(e) {
			w.fail(ctx, e.ID, "stuck: its worker stopped answering", isStuck)
		}
	}
}

// consumeDead fails the executions of dead-lettered jobs until ctx ends.
func (w *Worker) consumeDead(ctx context.Context) {
	for {
		err := w.queue.ConsumeDead(ctx, func(ctx context.Context, d codecrafter.Delivery) error {
			w.fail(ctx, d.Job.ExecutionID, "dead-lettered: its job failed too many times", nil)
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("consume dead letters", "err", err)
		if !wait(ctx, 5*time.Second) {
			return
		}
	}
}

// fail ends execution id as ERROR unless it is final already or, read
// afresh, fails check (when given).
func (w *Worker) fail(ctx context.Context, id, reason string, check func(*codecrafter.Execution) bool) {
	log := w.log.With("execution", id)
	// Re-read it whole: the final chunk's Seq follows its last chunk.
	e, err := w.store.Execution(ctx, id)
	if err != nil {
		if !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
			log.Warn("load execution to fail it", "reason", reason, "err", err)
		}
		return
	}
	if e.Status.Final() || (check != nil && !check(e)) {
		return
	}
	r := codecrafter.Result{Status: codecrafter.StatusError, Stdout: e.Stdout, Stderr: e.Stderr, FinishedAt: w.now()}
	if e.StartedAt != nil {
		r.Duration = r.FinishedAt.Sub(*e.StartedAt)
	}
	done, err := w.store.FinishExecution(ctx, id, e.Attempt, r, codecrafter.OutputChunk{Seq: e.NextSeq(), Status: codecrafter.StatusError})
	switch {
	case codecrafter.IsCode(err, codecrafter.ECONFLICT):
		return // finished or re-claimed meanwhile
	case err != nil:
		log.Warn("fail execution", "reason", reason, "err", err)
		return
	}
	log.Warn("execution failed as ERROR", "reason", reason, "attempt", e.Attempt)
	w.metrics.runs.WithLabelValues(e.Language, string(codecrafter.StatusError)).Inc()
	w.publishStatus(ctx, log, done)
}

// sampleQueue records the queue's depth every StatsInterval until ctx ends.
func (w *Worker) sampleQueue(ctx context.Context) {
	for {
		if st, err := w.queue.Stats(ctx); err == nil {
			w.metrics.queueDepth.WithLabelValues("ready").Set(float64(st.Ready))
			w.metrics.queueDepth.WithLabelValues("dead").Set(float64(st.Dead))
			if st.Unacked >= 0 {
				w.metrics.queueDepth.WithLabelValues("unacked").Set(float64(st.Unacked))
			}
		} else if ctx.Err() == nil {
			w.log.Warn("queue stats", "err", err)
		}
		if !wait(ctx, w.cfg.StatsInterval) {
			return
		}
	}
}
