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

// WatchRevocations subscribes to the logins every replica revokes (the
// FamilyID events on codecrafter.AccessTopic), so that Verify here
// refuses their access tokens too. It returns once subscribed; stop ends
// the subscription and waits for its goroutine. Without a Bus there is
// nothing to watch.
func (s *Service) WatchRevocations(ctx context.Context) (stop func(), err error) {
	if s.cfg.Bus == nil {
		return func() {}, nil
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	events, err := s.cfg.Bus.Subscribe(ctx, codecrafter.AccessTopic)
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for payload := range events { // closes when ctx ends
			c, err := codecrafter.DecodeAccessChange(payload)
			if err != nil {
				s.logger.WarnContext(ctx, "undecodable access change", "err", err)
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
	}()
	return func() { cancel(); <-done }, nil
}
