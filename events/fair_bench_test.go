package events_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/events"
)

// BenchmarkFairOrder: the cost of placing a queue of n runs over n/4
// users, one of whom has a burst of a quarter of them (the API places
// the cached queue at every store read and every run stored), against
// the definition's quadratic loop in the same process.
func BenchmarkFairOrder(b *testing.B) {
	for _, n := range []int{16, 64, 256, 1024} {
		for _, way := range []struct {
			name  string
			order func([]*codecrafter.Execution) []*codecrafter.Execution
		}{{"heap", events.FairOrder}, {"definition", naiveFairOrder}} {
			b.Run(fmt.Sprintf("%s/%d", way.name, n), func(b *testing.B) {
				pending := make([]*codecrafter.Execution, n)
				t0 := time.Now()
				for i := range pending {
					st := codecrafter.StatusQueued
					if i < 4 {
						st = codecrafter.StatusRunning
					}
					user := fmt.Sprint("u", i%max(n/4, 1))
					if i%2 == 0 && i < n/2 {
						user = "burst"
					}
					pending[i] = &codecrafter.Execution{ID: fmt.Sprint(i), UserID: user, Status: st, CreatedAt: t0.Add(time.Duration(i))}
				}
				for b.Loop() {
					way.order(pending)
				}
			})
		}
	}
}
