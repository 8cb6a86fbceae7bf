package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/codecrafter/codecrafter"
)

// finishTimeout bounds the final store write and publish of a run.
const finishTimeout = 10 * time.Second

// requeueTimeout bounds putting a job back in the queue on shutdown.
const requeueTimeout = 10 * time.Second

// handle runs one delivered job. nil acknowledges it; an error requeues it.
// hctx ends when the job can no longer be acknowledged; hard ends when the
// shutdown grace is over.
//
// A failure (the store is down, say) is retried here with backoff rather
// than at once through the queue: each return to the queue counts towards
// the delivery limit, so a few quick failures would dead-letter a good
// job. For the same reason a run killed by shutdown goes back as a new
// job (then this one is acknowledged).
//
// A job claims the run only while the run's attempt is at most the job's
// (see codecrafter.Job.Attempt), unless the broker redelivered it.
func (w *Worker) handle(hctx, hard context.Context, d codecrafter.Delivery) error {
	log := w.log.With("execution", d.Job.ExecutionID)
	if w.deferred(hctx, d) {
		return nil
	}
	upTo := d.Job.Attempt
	if d.Redelivered {
		upTo = codecrafter.AnyAttempt // its worker died with the attempt it claimed
	}
	for try := 1; ; try++ {
		claimed, err := w.try(hctx, hard, d, upTo)
		if claimed > 0 {
			upTo = claimed // our own attempt: the next try may supersede it
		}
		switch {
		case err == nil:
			return nil
		case hctx.Err() != nil: // the broker hands it out again
			return err
		case errors.Is(err, errShutdown):
			ctx, cancel := context.WithTimeout(hctx, requeueTimeout)
			defer cancel()
			job := d.Job
			job.Attempt = max(claimed, job.Attempt)
			if qerr := w.queue.Enqueue(ctx, job); qerr != nil {
				log.Warn("requeue a job on shutdown", "err", qerr)
				return err
			}
			return nil
		case try > w.cfg.Retries || hard.Err() != nil:
			return err
		}
		wait := w.retryWait(try)
		log.Warn("run job failed: retrying", "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-hctx.Done():
			return err
		case <-hard.Done():
			return err
		}
	}
}

// try makes one attempt at a job, claiming the run if its attempt is at
// most upTo; it returns the attempt it claimed (0: none).
func (w *Worker) try(hctx, hard context.Context, d codecrafter.Delivery, upTo int) (int, error) {
	id := d.Job.ExecutionID
	log := w.log.With("execution", id)
	runCtx, cancel := context.WithCancelCause(hctx)
	defer cancel(nil)
	defer context.AfterFunc(hard, func() { cancel(errShutdown) })()

	// Register before claiming, so a cancel request cannot slip between.
	r := &run{id: id, cancel: cancel}
	w.register(r)
	defer w.unregister(r)

	// Claim with hctx: a cancel request must not fail the claim itself.
	e, err := w.store.ClaimExecution(hctx, id, w.cfg.ID, w.now(), codecrafter.OutputChunk{Status: codecrafter.StatusRunning}, upTo)
	switch {
	case codecrafter.IsCode(err, codecrafter.ECONFLICT):
		log.Info("run final, or claimed by another job: job skipped", "redelivered", d.Redelivered, "err", err)
		return 0, nil
	case codecrafter.IsCode(err, codecrafter.ENOTFOUND):
		log.Warn("job for an unknown execution: dropped")
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("claim execution %s: %w", id, err)
	}
	w.claimed(id)
	log = log.With("attempt", e.Attempt)
	log.Info("run claimed", "language", e.Language, "redelivered", d.Redelivered)
	if e.Attempt == 1 && e.StartedAt != nil {
		w.metrics.queueWait.WithLabelValues(e.Language).Observe(e.StartedAt.Sub(e.CreatedAt).Seconds())
	}
	w.publishStatus(hctx, log, e)
	if e.CancelRequested {
		cancel(errCancelRequested)
	}

	a := &attempt{w: w, log: log, e: e, next: e.NextSeq(), ctx: hctx, cancel: cancel, started: time.Now()}
	res, runErr := a.execute(runCtx)
	return e.Attempt, a.finish(runCtx, res, runErr)
}

// attempt is one claimed run: its output goes to the store under the
// claimed attempt number, so a newer claim makes this one's writes fail.
type attempt struct {
	w       *Worker
	log     *slog.Logger
	e       *codecrafter.Execution
	next    int             // Seq of the next chunk
	ctx     context.Context // the job's: writes stop when it can't be acked
	cancel  context.CancelCauseFunc
	started time.Time
	output  *batcher
}

// execute runs the code in the sandbox, streaming its output.
func (a *attempt) execute(runCtx context.Context) (*codecrafter.RunResult, error) {
	a.output = newBatcher(a.w.cfg.FlushInterval, a.w.cfg.FlushBytes, a.w.cfg.MaxOutputBytes)
	if runCtx.Err() != nil {
		return nil, context.Cause(runCtx) // cancelled before it started
	}
	stop := make(chan struct{})
	flushed := make(chan error, 1)
	go func() { flushed <- a.output.loop(stop, a.write) }()
	res, err := a.w.sandbox.Run(runCtx, codecrafter.RunRequest{
		Language: a.e.Language, Code: a.e.Code, Stdin: a.e.Stdin,
		TimeLimit: a.e.TimeLimit, MemoryLimitMB: a.e.MemoryLimitMB,
	}, a.output.add)
	close(stop)
	if ferr := <-flushed; ferr != nil {
		return nil, ferr
	}
	return res, err
}

// write stores chunks, then publishes them. CONFLICT means a newer attempt
// owns the run; any write error stops the run.
func (a *attempt) write(chunks []codecrafter.OutputChunk) error {
	for _, c := range chunks {
		c.Seq = a.next
		if err := a.w.store.AppendOutput(a.ctx, a.e.ID, a.e.Attempt, c); err != nil {
			if codecrafter.IsCode(err, codecrafter.ECONFLICT) {
				a.cancel(errSuperseded)
				return errSuperseded
			}
			err = fmt.Errorf("store output of %s: %w", a.e.ID, err)
			a.cancel(err)
			return err
		}
		a.next++
		if err := a.w.publish.Chunks(a.ctx, a.e.ID, c); err != nil {
			a.log.Warn("publish output", "err", err)
		}
	}
	return nil
}

// finish writes the run's one final result, unless this attempt lost the
// run (superseded, queue connection lost) or the worker is shutting down:
// then another attempt will finish it. nil acknowledges the job.
func (a *attempt) finish(runCtx context.Context, res *codecrafter.RunResult, runErr error) error {
	cause := context.Cause(runCtx)
	stdout, stderr := a.output.streamed()
	r := codecrafter.Result{Stdout: stdout, Stderr: stderr, Duration: time.Since(a.started)}
	switch {
	case a.ctx.Err() != nil:
		a.log.Warn("queue connection lost: run abandoned to its redelivery")
		return fmt.Errorf("run %s abandoned: %w", a.e.ID, a.ctx.Err())
	case errors.Is(runErr, errSuperseded) || errors.Is(cause, errSuperseded):
		a.log.Warn("run superseded by a newer attempt: no result written")
		return nil
	case runErr == nil && res != nil && res.Status.Final():
		r = codecrafter.Result{
			Status: res.Status, ExitCode: res.ExitCode, Stdout: res.Stdout, Stderr: res.Stderr,
			CompileOutput: res.CompileOutput, Duration: res.Duration,
		}
	case errors.Is(cause, errCancelRequested):
		r.Status = codecrafter.StatusCancelled
	case errors.Is(cause, errShutdown):
		a.log.Warn("run killed by shutdown: job requeued")
		return errShutdown
	case cause != nil: // storing output failed
		a.log.Error("run stopped", "err", cause)
		return cause
	default:
		a.log.Error("sandbox failed", "err", runErr, "result", res)
		r.Status = codecrafter.StatusError
	}
	r.FinishedAt = a.w.now()

	ctx, cancel := context.WithTimeout(a.ctx, finishTimeout)
	defer cancel()
	done, err := a.w.store.FinishExecution(ctx, a.e.ID, a.e.Attempt, r, codecrafter.OutputChunk{Seq: a.next, Status: r.Status})
	switch {
	case codecrafter.IsCode(err, codecrafter.ECONFLICT):
		a.log.Warn("run finished elsewhere: result dropped", "status", r.Status)
		return nil
	case err != nil:
		return fmt.Errorf("store result of %s: %w", a.e.ID, err)
	}
	a.w.metrics.runs.WithLabelValues(a.e.Language, string(r.Status)).Inc()
	a.w.metrics.duration.WithLabelValues(a.e.Language).Observe(time.Since(a.started).Seconds())
	a.log.Info("run finished", "status", r.Status, "duration", r.Duration)
	a.w.publishStatus(ctx, a.log, done)
	return nil
}

func (w *Worker) publishStatus(ctx context.Context, log *slog.Logger, e *codecrafter.Execution) {
	if err := w.publish.Status(ctx, e); err != nil {
		log.Warn("publish status", "status", e.Status, "err", err)
	}
}
