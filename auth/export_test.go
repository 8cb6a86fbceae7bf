package auth

// Test hooks; set them before the service is used.

// OnHashWait calls f as a request starts waiting for a hash slot, with
// how many wait then.
func OnHashWait(s *Service, f func(waiting int)) { s.gate.onWait = f }

// OnHash calls f as a password hash starts, with how many run then.
func OnHash(s *Service, f func(running int)) { s.gate.onHash = f }

// OnRevoked calls f once WatchRevocations took in a revoked family.
func OnRevoked(s *Service, f func(family string)) { s.onRevoked = f }
