package editing

import "time"

// Queued returns how many of the session's edits wait for its writer
// (not counting a batch being written).
func (s *Service) Queued(sessionID string) int { return s.queues.Waiting(sessionID) }

// AuthCached says whether Edit holds a read of the session.
func (s *Service) AuthCached(sessionID string) bool {
	return s.recent.Holds(sessionID)
}

// SetNow sets the service's clock.
func (s *Service) SetNow(now func() time.Time) { s.now = now; s.recent.SetClock(now) }
