package inmem

import (
	"context"
	"sync"
	"time"

	"github.com/codecrafter/codecrafter"
)

var _ codecrafter.Limiter = (*Limiter)(nil)

// Limiter counts failures per key in fixed windows, in this process.
type Limiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu        sync.Mutex
	windows   map[string]*window
	sweepSize int // map size that triggers the next sweep of ended windows
}

type window struct {
	count int
	end   time.Time
}

// NewLimiter returns a limiter that blocks a key for the rest of a window
// once max failures fell in it; a window starts at a key's first failure.
func NewLimiter(max int, d time.Duration) *Limiter {
	return &Limiter{max: max, window: d, now: time.Now, windows: make(map[string]*window), sweepSize: 1024}
}

// Blocked returns how long key stays blocked, 0 when it is not.
func (l *Limiter) Blocked(_ context.Context, key string) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.current(key)
	if w == nil || w.count < l.max {
		return 0, nil
	}
	return w.end.Sub(l.now()), nil
}

// Fail counts one failure for key.
func (l *Limiter) Fail(_ context.Context, key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.current(key)
	if w == nil {
		l.sweep()
		w = &window{end: l.now().Add(l.window)}
		l.windows[key] = w
	}
	w.count++
	return nil
}

// Reset forgets key's failures.
func (l *Limiter) Reset(_ context.Context, key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.windows, key)
	return nil
}

// current returns key's window if it has not ended.
func (l *Limiter) current(key string) *window {
	w := l.windows[key]
	if w == nil || !l.now().Before(w.end) {
		return nil
	}
	return w
}

// sweep drops ended windows once the map has doubled since the last sweep,
// which bounds memory at amortized constant cost.
func (l *Limiter) sweep() {
	if len(l.windows) < l.sweepSize {
		return
	}
	now := l.now()
	for k, w := range l.windows {
		if !now.Before(w.end) {
			delete(l.windows, k)
		}
	}
	l.sweepSize = max(1024, 2*len(l.windows))
}
