package inmem

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestLimiterForgetsEndedWindows checks memory stays bounded: ended
// windows are dropped as new keys arrive.
func TestLimiterForgetsEndedWindows(t *testing.T) {
	now := time.Now()
	l := NewLimiter(3, time.Minute)
	l.now = func() time.Time { return now }
	ctx := context.Background()
	for i := range 5000 {
		l.Take(ctx, fmt.Sprint("old-", i))
	}
	now = now.Add(2 * time.Minute)
	for i := range 5000 {
		l.Take(ctx, fmt.Sprint("new-", i))
	}
	if n := len(l.windows); n > 5000+1024 {
		t.Fatalf("%d windows kept, want ended ones dropped", n)
	}
}
