package events

import (
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
	out := make([]*codecrafter.Execution, 0, len(queued))
	placed := make([]bool, len(queued))
	for len(out) < len(queued) {
		oldest, lightest := -1, -1
		for i, e := range queued {
			if placed[i] {
				continue
			}
			if oldest < 0 {
				oldest = i
			}
			if lightest < 0 || load[e.UserID] < load[queued[lightest].UserID] {
				lightest = i
			}
		}
		pick := oldest
		if load[queued[lightest].UserID]+FairMargin <= load[queued[oldest].UserID] {
			pick = lightest
		}
		placed[pick] = true
		out = append(out, queued[pick])
	}
	return out
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
