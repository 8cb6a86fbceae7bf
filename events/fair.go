package events

import (
	"container/heap"

	"github.com/codecrafter/codecrafter"
)

// FairMargin is how many more runs (queued plus running) a user must have
// than another user with runs waiting before their runs let the other's
// go first. Users about alike keep the queue's order (a crowd each
// running now and then costs nothing), while a burst yields to everyone
// with fewer runs outstanding.
const FairMargin = 2

// FairOrder returns the QUEUED runs of pending (QUEUED and RUNNING runs,
// oldest first, as ExecutionStore.PendingExecutions gives them) in the
// order they are to start: oldest first, except that the oldest run's
// user lets the runs of users with FairMargin fewer runs outstanding go
// first (the lightest user's oldest). The worker defers a job that would
// break this order (Yields, worker/fair.go) and the API reports a run's
// index in it as its queue position, so both sides share it.
func FairOrder(pending []*codecrafter.Execution) []*codecrafter.Execution {
	load, queued := outstanding(pending)
	// The loads do not change while placing, so the lightest user's oldest
	// run is the top of a heap of users by (load, oldest run left), and
	// each placement takes one user's oldest: O(n log users).
	byID := map[string]*userRuns{}
	var h usersByLoad
	for i, e := range queued {
		u := byID[e.UserID]
		if u == nil {
			u = &userRuns{load: load[e.UserID], at: len(h)}
			byID[e.UserID] = u
			h = append(h, u)
		}
		u.runs = append(u.runs, i)
	}
	heap.Init(&h)
	out := make([]*codecrafter.Execution, 0, len(queued))
	placed := make([]bool, len(queued))
	oldest := 0
	for len(out) < len(queued) {
		for placed[oldest] {
			oldest++
		}
		pick, u := oldest, byID[queued[oldest].UserID]
		if lightest := h[0]; lightest.load+FairMargin <= u.load {
			pick, u = lightest.runs[0], lightest
		}
		placed[pick] = true
		out = append(out, queued[pick])
		if u.runs = u.runs[1:]; len(u.runs) == 0 { // pick was u's oldest run left
			heap.Remove(&h, u.at)
		} else {
			heap.Fix(&h, u.at)
		}
	}
	return out
}

// userRuns is one user's runs left to place, oldest first (indexes).
type userRuns struct {
	load int // runs outstanding
	runs []int
	at   int // index in the heap
}

// usersByLoad is a heap of the users with runs left to place: fewest
// runs outstanding first, then the one whose oldest run left is older.
type usersByLoad []*userRuns

func (h usersByLoad) Len() int { return len(h) }
func (h usersByLoad) Less(i, j int) bool {
	if h[i].load != h[j].load {
		return h[i].load < h[j].load
	}
	return h[i].runs[0] < h[j].runs[0]
}
func (h usersByLoad) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = i, j
}
func (h *usersByLoad) Push(x any) { x.(*userRuns).at = len(*h); *h = append(*h, x.(*userRuns)) }
func (h *usersByLoad) Pop() any {
	old := *h
	u := old[len(old)-1]
	*h = old[:len(old)-1]
	return u
}

// Yields reports whether a run of userID should let another user's go
// first: someone else has runs QUEUED in pending and at least FairMargin
// fewer runs outstanding (queued plus running).
func Yields(pending []*codecrafter.Execution, userID string) bool {
	load, queued := outstanding(pending)
	for _, e := range queued {
		if e.UserID != userID && load[e.UserID]+FairMargin <= load[userID] {
			return true
		}
	}
	return false
}

// outstanding counts each user's runs queued or running in pending and
// returns the queued ones, in pending's order.
func outstanding(pending []*codecrafter.Execution) (load map[string]int, queued []*codecrafter.Execution) {
	load = map[string]int{}
	for _, e := range pending {
		switch e.Status {
		case codecrafter.StatusRunning:
			load[e.UserID]++
		case codecrafter.StatusQueued:
			load[e.UserID]++
			queued = append(queued, e)
		}
	}
	return load, queued
}
