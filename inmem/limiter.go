package inmem

import (
	"context"
	"sync"
	"time"

	"github.com/codecrafter/codecrafter"
)

var _ codecrafter.Limiter = (*Limiter)(nil)

// Limiter counts attempts per key in fixed windows, in this process.
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

// NewLimiter returns a limiter that allows max attempts per key in a
// window and refuses the rest until it ends.
func NewLimiter(max int, d time.Duration) *Limiter {
	return &Limiter{max: max, window: d, now: time.Now, windows: make(map[string]*window), sweepSize: 1024}
}

// Take counts one attempt for key and returns how long it stays refused,
// 0 when the attempt is within the limit.
func (l *Limiter) Take(_ context.Context, key string) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.current(key)
	if w == nil {
		l.sweep()
		w = &window{end: l.now().Add(l.window)}
		l.windows[key] = w
	}
	w.count++
	if w.count <= l.max {
		return 0, nil
	}
	return w.end.Sub(l.now()), nil
}

// Refund gives back one attempt of key.
func (l *Limiter) Refund(_ context.Context, key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w := l.current(key); w != nil && w.count > 0 {
		w.count--
	}
	return nil
}

// Reset forgets key's attempts.
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
