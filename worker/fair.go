package worker

import (
	"context"
	"sync"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/events"
)

// Fairness across users. Queues hand out jobs in arrival order, so one
// user's burst would otherwise run before anyone else's next run. Before
// claiming a new run, a worker reads the store's QUEUED and RUNNING runs:
// when another user is behind this run's user (events.Yields: fewer
// running, or as many and fewer queued), the job goes back to the end of
// the queue (a new job, then this one is acknowledged) and the worker
// takes the next. The others' jobs come round and run first; the bursting
// user's resume when nobody is behind them. Users alike keep the queue's
// order, so a crowd of light users costs no deferrals. (So a
// user's own runs may start out of submission order.) It works alike with
// the in-process queue and RabbitMQ, and over several workers, since the
// store holds every worker's runs.
//
// Bounds, so fairness never costs progress: a run is deferred at most
// maxDeferrals times by a worker, never once it waited maxDeferAge, and
// only when the queue has other jobs ready (nobody is behind otherwise).
const (
	maxDeferrals = 8
	maxDeferAge  = 30 * time.Second
)

// deferred reports whether the job was put back for fairness (then the
// delivery is to be acknowledged without running it).
func (w *Worker) deferred(ctx context.Context, d codecrafter.Delivery) bool {
	id := d.Job.ExecutionID
	if d.Redelivered || d.Job.Attempt > 0 {
		return false // an attempt was claimed already: finish it
	}
	w.mu.Lock()
	n := w.deferrals[id]
	w.mu.Unlock()
	if n >= maxDeferrals {
		return false
	}
	st, err := w.queue.Stats(ctx)
	if err != nil || st.Ready == 0 {
		return false
	}
	pending, err := w.pendingView(ctx)
	if err != nil {
		return false // the claim that follows meets the store's trouble
	}
	var e *codecrafter.Execution
	for _, p := range pending {
		if p.ID == id {
			e = p
			break
		}
	}
	if e == nil || e.Status != codecrafter.StatusQueued || w.now().Sub(e.CreatedAt) > maxDeferAge {
		return false
	}
	if !events.Yields(pending, e.UserID) {
		return false
	}
	if err := w.queue.Enqueue(ctx, d.Job); err != nil {
		return false
	}
	w.mu.Lock()
	if len(w.deferrals) > 10_000 { // forget old counts rather than grow
		clear(w.deferrals)
	}
	w.deferrals[id] = n + 1
	w.mu.Unlock()
	w.metrics.deferred.Inc()
	w.log.Debug("run deferred: other users' runs go first", "execution", id, "user", e.UserID)
	return true
}

// claimed forgets a run's deferrals, and counts it as running in the
// pending view until the next read.
func (w *Worker) claimed(id string) {
	w.mu.Lock()
	delete(w.deferrals, id)
	w.mu.Unlock()
	w.view.mu.Lock()
	if w.view.list != nil {
		w.view.claimed[id] = true
	}
	w.view.mu.Unlock()
}

// fairRefresh bounds how often a worker reads the pending runs for
// fairness: on the embedded store the read decodes every pending run,
// too much for every job of a burst, and slower the longer the queue
// (so reads are also ten times their own duration apart). Runs queued
// since the read are not deferred, and wait their turn in the queue's
// order.
const fairRefresh = time.Second

// pendingView is the worker's recent read of the pending runs.
type pendingView struct {
	mu      sync.Mutex
	at      time.Time
	list    []*codecrafter.Execution
	claimed map[string]bool // by this worker since the read
	took    time.Duration   // the read: the next is at least 10 times as late
}

// pendingView returns the pending runs as of at most fairRefresh ago,
// with the runs this worker claimed since counted as RUNNING.
func (w *Worker) pendingView(ctx context.Context) ([]*codecrafter.Execution, error) {
	v := &w.view
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.list == nil || w.now().Sub(v.at) >= max(fairRefresh, 10*v.took) {
		began := time.Now()
		list, err := w.store.PendingExecutions(ctx)
		if err != nil {
			return nil, err
		}
		v.at, v.list, v.claimed, v.took = w.now(), list, map[string]bool{}, time.Since(began)
	}
	out := v.list
	if len(v.claimed) > 0 {
		out = make([]*codecrafter.Execution, len(v.list))
		for i, e := range v.list {
			if v.claimed[e.ID] {
				c := *e
				c.Status = codecrafter.StatusRunning
				e = &c
			}
			out[i] = e
		}
	}
	return out, nil
}
