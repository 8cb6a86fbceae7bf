package auth

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/codecrafter/codecrafter"
)

// hashGate bounds the argon2id hashes that run at once, each holding its
// memory cost (19 MiB by default), and how many requests may queue for
// one and for how long; the rest are refused with RATE_LIMITED, so a
// burst of logins or registrations cannot exhaust memory.
type hashGate struct {
	slots   chan struct{} // one per running hash
	queue   chan struct{} // one per running or waiting request
	maxWait time.Duration

	running atomic.Int64
	waiting atomic.Int64
	// Test hooks: onWait as a request starts waiting for a slot, onHash
	// as a hash starts, each with the count then.
	onWait, onHash func(n int)
}

func newHashGate(slots, waiters int, maxWait time.Duration) *hashGate {
	return &hashGate{
		slots:   make(chan struct{}, slots),
		queue:   make(chan struct{}, slots+waiters),
		maxWait: maxWait,
	}
}

// errBusy is the answer when no hash slot is free in time.
func errBusy() error {
	return &codecrafter.Error{
		Code:       codecrafter.ERATELIMITED,
		Message:    "the server is busy: try again shortly",
		RetryAfter: time.Second,
	}
}

// do runs hash once a slot is free.
func (g *hashGate) do(ctx context.Context, hash func()) error {
	select {
	case g.queue <- struct{}{}:
	default:
		return errBusy()
	}
	defer func() { <-g.queue }()

	if n := g.waiting.Add(1); g.onWait != nil {
		g.onWait(int(n))
	}
	t := time.NewTimer(g.maxWait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		g.waiting.Add(-1)
	case <-t.C:
		g.waiting.Add(-1)
		return errBusy()
	case <-ctx.Done():
		g.waiting.Add(-1)
		if ctx.Err() == context.DeadlineExceeded {
			return codecrafter.Wrap(ctx.Err(), codecrafter.EUNAVAILABLE, "the request timed out; try again")
		}
		return codecrafter.Wrap(ctx.Err(), codecrafter.EUNAVAILABLE, "the request was cancelled")
	}
	defer func() { <-g.slots }()

	n := g.running.Add(1)
	defer g.running.Add(-1)
	if g.onHash != nil {
		g.onHash(int(n))
	}
	hash()
	return nil
}
