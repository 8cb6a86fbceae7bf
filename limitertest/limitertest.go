// Package limitertest is the conformance suite every codecrafter.Limiter
// passes.
package limitertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
)

// NewLimiter returns a limiter for one test that blocks a key once max
// failures fell in a window; its keys must not be shared with other tests.
type NewLimiter func(t *testing.T, max int, window time.Duration) codecrafter.Limiter

// Test runs the suite against the limiters newLimiter makes.
func Test(t *testing.T, newLimiter NewLimiter) {
	t.Run("UnderLimit", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, 3, time.Minute)
		fail(t, l, "k", 2)
		wantBlocked(t, l, "k", false)
	})

	t.Run("AtLimitBlocksUntilWindowEnds", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, 3, time.Minute)
		fail(t, l, "k", 3)
		d := blocked(t, l, "k")
		if d <= 50*time.Second || d > time.Minute {
			t.Fatalf("Blocked = %v, want the rest of a 1m window", d)
		}
		fail(t, l, "k", 1)
		if d2 := blocked(t, l, "k"); d2 > d {
			t.Fatalf("a failure while blocked extended the window: %v then %v", d, d2)
		}
	})

	t.Run("KeysAreIndependent", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, 2, time.Minute)
		fail(t, l, "a", 2)
		fail(t, l, "b", 1)
		wantBlocked(t, l, "a", true)
		wantBlocked(t, l, "b", false)
		wantBlocked(t, l, "never-failed", false)
	})

	t.Run("ResetForgets", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, 2, time.Minute)
		fail(t, l, "k", 2)
		if err := l.Reset(ctx(t), "k"); err != nil {
			t.Fatalf("Reset: %v", err)
		}
		wantBlocked(t, l, "k", false)
		fail(t, l, "k", 1)
		wantBlocked(t, l, "k", false)
		if err := l.Reset(ctx(t), "unknown"); err != nil {
			t.Fatalf("Reset of an unknown key: %v", err)
		}
	})

	t.Run("WindowEnds", func(t *testing.T) {
		t.Parallel()
		const window = 300 * time.Millisecond
		l := newLimiter(t, 2, window)
		start := time.Now()
		fail(t, l, "k", 2)
		wantBlocked(t, l, "k", true)
		// Nothing signals the window's end: poll, with a deadline.
		deadline := time.Now().Add(5 * time.Second)
		for blocked(t, l, "k") > 0 {
			if time.Now().After(deadline) {
				t.Fatal("still blocked long after the window")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if elapsed := time.Since(start); elapsed < window-20*time.Millisecond {
			t.Fatalf("unblocked after %v, before the %v window ended", elapsed, window)
		}
		// A new window starts from zero.
		fail(t, l, "k", 1)
		wantBlocked(t, l, "k", false)
	})

	t.Run("ConcurrentFailuresAllCount", func(t *testing.T) {
		t.Parallel()
		const n = 25
		for _, tc := range []struct {
			max     int
			blocked bool
		}{{n, true}, {n + 1, false}} {
			t.Run(fmt.Sprint("max=", tc.max), func(t *testing.T) {
				l := newLimiter(t, tc.max, time.Minute)
				var wg sync.WaitGroup
				errs := make(chan error, n)
				for range n {
					wg.Go(func() { errs <- l.Fail(ctx(t), "k") })
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("Fail: %v", err)
					}
				}
				wantBlocked(t, l, "k", tc.blocked)
			})
		}
	})
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func fail(t *testing.T, l codecrafter.Limiter, key string, n int) {
	t.Helper()
	for range n {
		if err := l.Fail(ctx(t), key); err != nil {
			t.Fatalf("Fail(%q): %v", key, err)
		}
	}
}

func blocked(t *testing.T, l codecrafter.Limiter, key string) time.Duration {
	t.Helper()
	d, err := l.Blocked(ctx(t), key)
	if err != nil {
		t.Fatalf("Blocked(%q): %v", key, err)
	}
	if d < 0 {
		t.Fatalf("Blocked(%q) = %v, negative", key, d)
	}
	return d
}

func wantBlocked(t *testing.T, l codecrafter.Limiter, key string, want bool) {
	t.Helper()
	if d := blocked(t, l, key); (d > 0) != want {
		t.Fatalf("Blocked(%q) = %v, want blocked=%v", key, d, want)
	}
}
