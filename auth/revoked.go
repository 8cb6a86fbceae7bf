package auth

import (
	"context"
	"sync"
	"time"

	"github.com/codecrafter/codecrafter"
)

// revokedSet remembers revoked logins (refresh families) for as long as
// their access tokens can live, so Verify refuses those tokens without a
// read per request. It is fed by this process's revocations and, through
// WatchRevocations, by every replica's. A restarted process starts empty:
// a revoked login's access tokens then pass until they expire (at most
// MaxAccessTTL), as they did before the set existed.
type revokedSet struct {
	mu        sync.Mutex
	until     map[string]time.Time
	sweepSize int // map size that triggers the next sweep of ended entries
}

func (r *revokedSet) add(family string, until, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.until == nil {
		r.until, r.sweepSize = make(map[string]time.Time), 1024
	}
	if len(r.until) >= r.sweepSize {
		// Dropping ended entries once the map has doubled bounds memory
		// at amortized constant cost.
		for f, u := range r.until {
			if now.After(u) {
				delete(r.until, f)
			}
		}
		r.sweepSize = max(1024, 2*len(r.until))
	}
	if until.After(r.until[family]) {
		r.until[family] = until
	}
}

func (r *revokedSet) has(family string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.until[family]
	return ok && !now.After(u)
}

// WatchRevocations makes Verify refuse the access tokens of logins
// revoked elsewhere: on other replicas (the FamilyID events on
// codecrafter.AccessTopic, when there is a Bus) and before this process
// started (read from the store once subscribed, so none falls between).
// Call it once at start; stop ends the subscription and waits for its
// goroutine.
func (s *Service) WatchRevocations(ctx context.Context) (stop func(), err error) {
	stop = func() {}
	if s.cfg.Bus != nil {
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		events, err := s.cfg.Bus.Subscribe(wctx, codecrafter.AccessTopic)
		if err != nil {
			cancel()
			return nil, err
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for events != nil {
				for payload := range events { // closes when wctx ends, or the bus ends it
					c, err := codecrafter.DecodeAccessChange(payload)
					if err != nil {
						s.logger.WarnContext(wctx, "undecodable access change", "err", err)
						continue
					}
					if c.FamilyID != "" {
						now := s.now()
						s.revoked.add(c.FamilyID, now.Add(s.accessLife()), now)
						if s.onRevoked != nil {
							s.onRevoked(c.FamilyID)
						}
					}
				}
				// The bus ended the subscription (fell behind, connection
				// lost): take it up again, then read what was missed.
				if events = s.resubscribe(wctx); events != nil {
					s.loadRevoked(wctx)
				}
			}
		}()
		stop = func() { cancel(); <-done }
	}
	s.loadRevoked(ctx)
	return stop, nil
}

// loadRevoked adds the logins the store says were revoked recently.
func (s *Service) loadRevoked(ctx context.Context) {
	now := s.now()
	families, err := s.tokens.RevokedFamiliesSince(ctx, now.Add(-s.accessLife()))
	if err != nil {
		// Not fatal: those tokens then pass until they expire.
		s.logger.WarnContext(ctx, "loading recently revoked logins", "err", err)
	}
	for _, f := range families {
		s.revoked.add(f, now.Add(s.accessLife()), now)
		if s.onRevoked != nil {
			s.onRevoked(f)
		}
	}
}

// resubscribe subscribes to access changes again, with backoff; nil once
// ctx ended.
func (s *Service) resubscribe(ctx context.Context) <-chan []byte {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		events, err := s.cfg.Bus.Subscribe(ctx, codecrafter.AccessTopic)
		if err == nil {
			return events
		}
		s.logger.WarnContext(ctx, "access changes: re-subscribe", "err", err)
	}
}
