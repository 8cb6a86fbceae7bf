package executions

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/events"
)

// Queue positions. A run's position is its index in events.FairOrder of
// the store's QUEUED and RUNNING runs: creation order, interleaved
// round-robin across users, the order the workers keep (worker/fair.go).
// So it is the same on every replica, with the in-process queue and with
// RabbitMQ, whatever the broker holds. Each replica reads the store for
// it at most once per QueueRefresh, however many ask, and live
// subscriptions re-read it at that pace only while their run is queued
// and send a change when there is one: updates are bounded in rate. (A
// long queue makes the read slow on the embedded store, so reads are at
// least five times their own duration apart: they never take more than
// a fifth of a core, and a backlog cannot feed on itself.)
//
// The estimate: position+1 runs must end before this one starts, at the
// pace runs end — the RUNNING count (when runs queue, the workers' slots
// are full) per moving average of the runs' time from claim to finish,
// as seen between two reads.

// QueueInfo is a QUEUED run's place.
type QueueInfo struct {
	Position       int           // runs to start before it (0: next)
	EstimatedStart time.Duration // until it starts
}

// defaultRunTime is the run time assumed before one was seen.
const defaultRunTime = time.Second

// maxNoted is the most cached runs a new run is placed among before the
// next read (each time the whole order again: ~0.1 ms at 256, `go test
// -bench FairOrder ./events/`); past it, its place shows from the read.
const maxNoted = 256

type queueView struct {
	mu      sync.Mutex
	at      time.Time                // of the last read
	pending []*codecrafter.Execution // as read, with the runs noted since
	info    map[string]QueueInfo
	running map[string]time.Time // RUNNING at the last read: their start
	runTime time.Duration        // moving average of claim to finish
	took    time.Duration        // the last read: reads are 5 times as far apart at least
}

// QueueInfo returns e's place in the queue, or nil when e is not QUEUED.
func (s *Service) QueueInfo(ctx context.Context, e *codecrafter.Execution) (*QueueInfo, error) {
	if e.Status != codecrafter.StatusQueued {
		return nil, nil
	}
	infos, _, err := s.queueInfos(ctx)
	if err != nil {
		return nil, err
	}
	if qi, ok := infos[e.ID]; ok {
		return &qi, nil
	}
	// Created or finished since the last read; not worth another.
	return nil, nil
}

// queueInfos returns every queued run's place, read at most once per
// QueueRefresh, and when it was read.
func (s *Service) queueInfos(ctx context.Context) (map[string]QueueInfo, time.Time, error) {
	q := &s.places
	q.mu.Lock()
	defer q.mu.Unlock()
	now := s.now()
	if q.info != nil && now.Sub(q.at) < max(s.cfg.QueueRefresh, 5*q.took) {
		return q.info, q.at, nil
	}
	began := time.Now()
	pending, err := s.store.PendingExecutions(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	q.took = time.Since(began)
	if q.runTime == 0 {
		q.runTime = defaultRunTime
	}
	running := map[string]time.Time{}
	for _, e := range pending {
		if e.Status == codecrafter.StatusRunning && e.StartedAt != nil {
			running[e.ID] = *e.StartedAt
		}
	}
	for id, started := range q.running {
		if _, still := running[id]; !still && now.Sub(q.at) < 10*time.Second { // finished between the reads
			took := now.Sub(started) - now.Sub(q.at)/2 // it ended between the reads
			if took > 0 {
				q.runTime = (3*q.runTime + took) / 4
			}
		}
	}
	q.at, q.pending, q.running = now, pending, running
	q.index()
	return q.info, now, nil
}

// index places the cached runs.
func (q *queueView) index() {
	slots := max(len(q.running), 1)
	order := events.FairOrder(q.pending)
	q.info = make(map[string]QueueInfo, len(order))
	for i, e := range order {
		q.info[e.ID] = QueueInfo{Position: i, EstimatedStart: time.Duration(i+1) * q.runTime / time.Duration(slots)}
	}
}

// noteQueued places a run this replica has just stored among the cached
// ones, so that the execute mutation's answer and the run's first events
// carry its place without another read. Other replicas' new runs are
// placed from the next read on.
func (s *Service) noteQueued(e *codecrafter.Execution) {
	q := &s.places
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.info == nil || len(q.pending) >= maxNoted {
		return // the next read places it
	}
	if slices.ContainsFunc(q.pending, func(p *codecrafter.Execution) bool { return p.ID == e.ID }) {
		return // read after it was stored
	}
	c := *e // the caller goes on setting fields of e
	q.pending = append(q.pending, &c)
	q.index()
}

// OutputEvent is one executionOutput event: a chunk, and while the run is
// QUEUED its place (with the last status chunk again when only the place
// changed).
type OutputEvent struct {
	codecrafter.OutputChunk
	Queue *QueueInfo
}

// OutputQueued is Output with, when places is set, the run's place in
// the queue while it is QUEUED: on its QUEUED status chunk, and again
// (that chunk repeated) each time the place changes, checked every
// QueueRefresh.
func (s *Service) OutputQueued(ctx context.Context, id string, places bool) (<-chan OutputEvent, error) {
	chunks, err := s.Output(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make(chan OutputEvent)
	go func() {
		defer close(out)
		var (
			last  codecrafter.OutputChunk
			place *QueueInfo
			tick  *time.Ticker
			tc    <-chan time.Time
		)
		defer func() {
			if tick != nil {
				tick.Stop()
			}
		}()
		send := func(ev OutputEvent) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case c, ok := <-chunks:
				if !ok {
					return
				}
				last = c
				ev := OutputEvent{OutputChunk: c}
				if places && c.Stream == "" && c.Status == codecrafter.StatusQueued {
					place = s.place(ctx, id)
					ev.Queue = place
					if tick == nil {
						tick = time.NewTicker(s.cfg.QueueRefresh)
						tc = tick.C
					}
				} else if c.Status != codecrafter.StatusQueued && tick != nil {
					tick.Stop()
					tick, tc, place = nil, nil, nil
				}
				if !send(ev) {
					return
				}
			case <-tc:
				p := s.place(ctx, id)
				if p == nil || place != nil && *p == *place {
					continue
				}
				place = p
				if !send(OutputEvent{OutputChunk: last, Queue: p}) {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// place is run id's QueueInfo, nil when unknown (not queued, or the store
// failed: the next tick tries again).
func (s *Service) place(ctx context.Context, id string) *QueueInfo {
	infos, _, err := s.queueInfos(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.WarnContext(ctx, "read the queue", "err", err)
		}
		return nil
	}
	if qi, ok := infos[id]; ok {
		return &qi
	}
	return nil
}
