package worker

import (
	"context"
	"strings"
	"time"

	"github.com/codecrafter/codecrafter"
)

// reapLoop fails stuck runs every ReaperInterval until ctx ends.
func (w *Worker) reapLoop(ctx context.Context) {
	for wait(ctx, w.cfg.ReaperInterval) {
		w.reap(ctx)
	}
}

// reap fails runs whose worker must have vanished, RUNNING for more than
// twice their time limit plus the compile allowance, and runs QUEUED for
// more than QueuedTimeout (their job was lost, or the queue stayed down).
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

	pending, err := w.store.PendingExecutions(ctx)
	if err != nil {
		w.log.Warn("list pending executions", "err", err)
		return
	}
	queuedTooLong := func(e *codecrafter.Execution) bool {
		return e.Status == codecrafter.StatusQueued && e.CreatedAt.Before(now.Add(-w.cfg.QueuedTimeout))
	}
	for _, e := range pending {
		if queuedTooLong(e) {
			w.fail(ctx, e.ID, "stuck: queued too long", queuedTooLong)
		}
	}
}

// dispatchTimeout bounds the dispatcher's Enqueue of one job; its lease
// on the run is twice as long.
const dispatchTimeout = 10 * time.Second

// dispatchLoop sends unsent runs now and every DispatchInterval until ctx
// ends.
func (w *Worker) dispatchLoop(ctx context.Context) {
	for {
		w.dispatch(ctx)
		if !wait(ctx, w.cfg.DispatchInterval) {
			return
		}
	}
}

// dispatch enqueues the job of every QUEUED run that is still unsent once
// its lease (Execute's, or another dispatcher's) ended: the outbox that
// makes the store, not the queue, the record of pending work. Taking the
// lease first lets one dispatcher of many send each run.
func (w *Worker) dispatch(ctx context.Context) {
	unsent, err := w.store.UnsentExecutions(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("list unsent executions", "err", err)
		}
		return
	}
	for _, e := range unsent {
		now := w.now()
		if e.DispatchAt.After(now) {
			continue
		}
		log := w.log.With("execution", e.ID)
		lease := now.Add(2 * dispatchTimeout)
		if err := w.store.LeaseDispatch(ctx, e.ID, now, lease); err != nil {
			if !codecrafter.IsCode(err, codecrafter.ECONFLICT) && !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
				log.Warn("lease an unsent run", "err", err)
			}
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, dispatchTimeout)
		err := w.queue.Enqueue(qctx, codecrafter.Job{ExecutionID: e.ID})
		cancel()
		if err != nil {
			log.Warn("dispatch an unsent run: the queue is still unavailable", "err", err)
			// Give the lease back, so the next round (of any dispatcher) retries.
			if err := w.store.LeaseDispatch(ctx, e.ID, lease, w.now()); err != nil && !codecrafter.IsCode(err, codecrafter.ECONFLICT) {
				log.Warn("release the lease of an unsent run", "err", err)
			}
			return
		}
		if err := w.store.MarkSent(ctx, e.ID); err != nil {
			log.Warn("mark a dispatched run sent", "err", err) // a duplicate job at worst
		}
		log.Info("dispatched a run that was stored but not queued")
	}
}

// consumeDead fails the executions of dead-lettered jobs until ctx ends.
// A job whose run cannot be failed (the store is down) goes back to the
// dead-letter queue after a backoff.
func (w *Worker) consumeDead(ctx context.Context) {
	failures := 0
	for {
		err := w.queue.ConsumeDead(ctx, func(hctx context.Context, d codecrafter.Delivery) error {
			if err := w.fail(hctx, d.Job.ExecutionID, "dead-lettered: its job failed too many times", nil); err != nil {
				failures++
				wait(ctx, w.retryWait(failures))
				return err
			}
			failures = 0
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
// afresh, fails check (when given). It returns an error only when the
// store could not be read or written.
func (w *Worker) fail(ctx context.Context, id, reason string, check func(*codecrafter.Execution) bool) error {
	log := w.log.With("execution", id)
	// Re-read it whole: the final chunk's Seq follows its last chunk.
	e, err := w.store.Execution(ctx, id)
	if err != nil {
		if !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
			log.Warn("load execution to fail it", "reason", reason, "err", err)
			return err
		}
		return nil
	}
	if e.Status.Final() || (check != nil && !check(e)) {
		return nil
	}
	// Keep what the current attempt streamed.
	current := codecrafter.CurrentOutput(e.Output)
	r := codecrafter.Result{Status: codecrafter.StatusError, Stdout: text(current, codecrafter.Stdout),
		Stderr: text(current, codecrafter.Stderr), FinishedAt: w.now()}
	if e.StartedAt != nil {
		r.Duration = r.FinishedAt.Sub(*e.StartedAt)
	}
	done, err := w.store.FinishExecution(ctx, id, e.Attempt, r, codecrafter.OutputChunk{Seq: e.NextSeq(), Status: codecrafter.StatusError})
	switch {
	case codecrafter.IsCode(err, codecrafter.ECONFLICT):
		return nil // finished or re-claimed meanwhile
	case err != nil:
		log.Warn("fail execution", "reason", reason, "err", err)
		return err
	}
	log.Warn("execution failed as ERROR", "reason", reason, "attempt", e.Attempt)
	w.metrics.runs.WithLabelValues(e.Language, string(codecrafter.StatusError)).Inc()
	w.publishStatus(ctx, log, done)
	return nil
}

func text(chunks []codecrafter.OutputChunk, stream codecrafter.OutputStream) string {
	var b strings.Builder
	for _, c := range chunks {
		if c.Stream == stream {
			b.WriteString(c.Data)
		}
	}
	return b.String()
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
