package realtime

// Waiting returns how many of the session's messages wait for its writer
// (not counting a batch being written).
func (s *Service) Waiting(sessionID string) int { return s.sends.Waiting(sessionID) }
