package executions

import (
	"context"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/events"
)

// Output streams a run's chunks in Seq order from Seq 1, even to a late
// subscriber, and closes the channel after the final status chunk or when
// ctx ends.
//
// It subscribes to the bus before reading the store, so no chunk falls
// between the two; chunks the best-effort bus loses (a Seq gap, or no
// event for a while, or the bus ending the subscription) are re-read from
// the store, which writers fill before they publish.
//
// A retried run (a worker died, the job was handed out again) has one
// RUNNING status chunk per attempt. What Output replays from the store
// holds only the current attempt's output (codecrafter.CurrentOutput: the
// Seqs of superseded output are skipped). A subscriber that was already
// watching has seen the earlier attempt's output and cannot unsee it: the
// second RUNNING status chunk tells it that a new attempt starts and
// what it showed so far is to be replaced.
func (s *Service) Output(ctx context.Context, id string) (<-chan codecrafter.OutputChunk, error) {
	userID, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	live, err := s.bus.Subscribe(ctx, codecrafter.ExecutionTopic(id))
	if err != nil {
		cancel()
		return nil, codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "live output is unavailable; try again shortly")
	}
	e, _, err := s.visible(ctx, id, userID)
	if err != nil {
		cancel()
		return nil, err
	}
	out := make(chan codecrafter.OutputChunk)
	go func() {
		defer cancel() // ends the bus subscription
		defer close(out)
		f := follower{s: s, id: id, out: out}
		f.run(ctx, e.Output, live)
	}()
	return out, nil
}

// follower sends one run's chunks to out, each at most once, in order.
type follower struct {
	s    *Service
	id   string
	out  chan<- codecrafter.OutputChunk
	last int // Seq of the last chunk sent
}

func (f *follower) run(ctx context.Context, stored []codecrafter.OutputChunk, live <-chan []byte) {
	if f.send(ctx, stored) {
		return
	}
	wait := f.s.cfg.RecheckInterval
	recheck := time.NewTimer(wait)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-recheck.C:
			before := f.last
			if f.reread(ctx) {
				return
			}
			if f.last == before { // nothing new: a stuck or quiet run
				wait = min(2*wait, f.s.cfg.MaxRecheckInterval)
			}
			recheck.Reset(wait)
			continue
		case b, ok := <-live:
			if !ok {
				// The bus ended the subscription (fell behind, connection
				// lost): subscribe again, or else let the recheck timer
				// poll, and re-read what it lost.
				live, _ = f.s.bus.Subscribe(ctx, codecrafter.ExecutionTopic(f.id))
				if f.reread(ctx) {
					return
				}
				break
			}
			c, err := events.DecodeChunk(b)
			if err != nil {
				f.s.log.WarnContext(ctx, "bad execution event", "execution", f.id, "err", err)
				break
			}
			switch {
			case c.Seq <= f.last: // already sent
			case c.Seq == f.last+1:
				if f.send(ctx, []codecrafter.OutputChunk{c}) {
					return
				}
			default: // the bus lost some: the store has them (and c)
				if f.reread(ctx) {
					return
				}
			}
		}
		wait = f.s.cfg.RecheckInterval // the run is alive again
		recheck.Reset(wait)
	}
}

// send sends the chunks after the last one sent; it reports whether the
// stream is over (final status sent, or ctx ended). The chunks come from
// the store (or are the next live one): a Seq they skip is superseded
// output, never a loss.
func (f *follower) send(ctx context.Context, chunks []codecrafter.OutputChunk) (over bool) {
	for _, c := range chunks {
		if c.Seq <= f.last {
			continue // already sent
		}
		select {
		case f.out <- c:
			f.last = c.Seq
		case <-ctx.Done():
			return true
		}
		if c.Stream == "" && c.Status.Final() {
			return true
		}
	}
	return false
}

// reread sends what the store has beyond the last chunk sent.
func (f *follower) reread(ctx context.Context) (over bool) {
	e, err := f.s.store.Execution(ctx, f.id)
	switch {
	case ctx.Err() != nil:
		return true
	case codecrafter.IsCode(err, codecrafter.ENOTFOUND):
		return true // deleted: nothing more will come
	case err != nil:
		f.s.log.WarnContext(ctx, "re-read execution output", "execution", f.id, "err", err)
		return false // the recheck timer tries again
	}
	return f.send(ctx, codecrafter.CurrentOutput(e.Output))
}

// SessionExecutions streams each status change of any run in a session to
// its participants, until ctx ends. Status changes are not replayed, so
// when the bus ends the subscription (fell behind, connection lost) the
// channel closes although ctx lives: the caller reports UNAVAILABLE and
// its client subscribes again (and re-reads the runs).
func (s *Service) SessionExecutions(ctx context.Context, sessionID string) (<-chan *codecrafter.Execution, error) {
	return s.sessionStream(ctx, sessionID, false)
}

// SessionExecutionsQueued is SessionExecutions that also sends a QUEUED
// run again each time its place in the queue changes (checked every
// QueueRefresh), for subscribers that show the place.
func (s *Service) SessionExecutionsQueued(ctx context.Context, sessionID string) (<-chan *codecrafter.Execution, error) {
	return s.sessionStream(ctx, sessionID, true)
}

func (s *Service) sessionStream(ctx context.Context, sessionID string, places bool) (<-chan *codecrafter.Execution, error) {
	userID, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorize(ctx, sessionID, userID, codecrafter.ActionRead); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	updates, err := s.bus.Subscribe(ctx, codecrafter.SessionExecutionsTopic(sessionID))
	if err != nil {
		cancel()
		return nil, codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "live updates are unavailable; try again shortly")
	}
	out := make(chan *codecrafter.Execution)
	go func() {
		defer cancel()
		defer close(out)
		s.sessionExecutions(ctx, sessionID, updates, out, places)
	}()
	return out, nil
}

// sessionExecutions forwards a session's status changes, and with places,
// while some of its runs are QUEUED, sends such a run again each time its
// place in the queue changes (checked every QueueRefresh).
func (s *Service) sessionExecutions(ctx context.Context, sessionID string, updates <-chan []byte, out chan<- *codecrafter.Execution, places bool) {
	queued := map[string]*codecrafter.Execution{}
	seen := map[string]QueueInfo{}
	tick := time.NewTicker(s.cfg.QueueRefresh)
	defer tick.Stop()
	send := func(e *codecrafter.Execution) bool {
		select {
		case out <- e:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		var tc <-chan time.Time
		if len(queued) > 0 {
			tc = tick.C
		}
		select {
		case <-ctx.Done():
			return
		case b, ok := <-updates:
			if !ok {
				return
			}
			e, err := events.DecodeExecution(b)
			if err != nil {
				s.log.WarnContext(ctx, "bad session execution event", "session", sessionID, "err", err)
				continue
			}
			if e.Status == codecrafter.StatusQueued && places {
				queued[e.ID] = e
				if qi := s.place(ctx, e.ID); qi != nil {
					seen[e.ID] = *qi
				}
			} else {
				delete(queued, e.ID)
				delete(seen, e.ID)
			}
			if !send(e) {
				return
			}
		case <-tc:
			infos, at, err := s.queueInfos(ctx)
			if err != nil {
				continue // the next tick tries again
			}
			for id, e := range queued {
				qi, ok := infos[id]
				if !ok && !at.After(e.CreatedAt) {
					continue // read before the run was made
				}
				if !ok { // started or ended, its event lost: not queued any more
					delete(queued, id)
					delete(seen, id)
					continue
				}
				if old, ok := seen[id]; ok && old == qi {
					continue
				}
				seen[id] = qi
				if !send(e) {
					return
				}
			}
		}
	}
}
