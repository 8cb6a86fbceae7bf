package editing

// Queued returns how many of the session's edits wait for its writer
// (not counting a batch being written).
func (s *Service) Queued(sessionID string) int {
	v, ok := s.queues.Load(sessionID)
	if !ok {
		return 0
	}
	q := v.(*queue)
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}
