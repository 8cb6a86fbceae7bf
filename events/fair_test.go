package events_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/events"
)

func TestFairOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	run := func(user string, status codecrafter.ExecutionStatus) *codecrafter.Execution {
		n++
		return &codecrafter.Execution{ID: user + string(rune('0'+n)), UserID: user, Status: status, CreatedAt: t0.Add(time.Duration(n) * time.Second)}
	}
	users := func(es []*codecrafter.Execution) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.UserID)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		pending []*codecrafter.Execution
		want    []string // users, in start order
	}{
		{"empty", nil, nil},
		{"one user keeps its order", []*codecrafter.Execution{run("a", "QUEUED"), run("a", "QUEUED")}, []string{"a", "a"}},
		{"a burst yields to a run queued after it",
			[]*codecrafter.Execution{run("a", "QUEUED"), run("a", "QUEUED"), run("a", "QUEUED"), run("b", "QUEUED")},
			[]string{"b", "a", "a", "a"}},
		{"running runs count",
			[]*codecrafter.Execution{run("a", "RUNNING"), run("a", "RUNNING"), run("a", "QUEUED"), run("b", "QUEUED")},
			[]string{"b", "a"}},
		{"users about alike keep the queue's order",
			[]*codecrafter.Execution{run("a", "QUEUED"), run("a", "QUEUED"), run("b", "QUEUED"), run("c", "QUEUED"), run("c", "RUNNING")},
			[]string{"a", "a", "b", "c"}},
		{"the lightest goes first",
			[]*codecrafter.Execution{run("a", "QUEUED"), run("a", "QUEUED"), run("a", "QUEUED"), run("a", "QUEUED"),
				run("b", "QUEUED"), run("b", "QUEUED"), run("c", "QUEUED")},
			[]string{"c", "b", "b", "a", "a", "a", "a"}},
		{"finished runs do not count",
			[]*codecrafter.Execution{run("a", "SUCCEEDED"), run("a", "SUCCEEDED"), run("a", "QUEUED"), run("b", "QUEUED")},
			[]string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := events.FairOrder(tc.pending)
			if !slices.Equal(users(got), tc.want) {
				t.Errorf("order %v, want %v", users(got), tc.want)
			}
			// Each user's own runs keep their creation order.
			last := map[string]time.Time{}
			for _, e := range got {
				if e.CreatedAt.Before(last[e.UserID]) {
					t.Errorf("%s's runs out of order: %v", e.UserID, got)
				}
				last[e.UserID] = e.CreatedAt
			}
			// The worker lets the first start's run through.
			if len(got) > 0 && events.Yields(tc.pending, got[0].UserID) {
				t.Errorf("the first start is %s's, but its runs yield", got[0].UserID)
			}
		})
	}
}

func TestYields(t *testing.T) {
	r := func(user string, status codecrafter.ExecutionStatus) *codecrafter.Execution {
		return &codecrafter.Execution{UserID: user, Status: status}
	}
	for _, tc := range []struct {
		name    string
		pending []*codecrafter.Execution
		want    bool // a yields
	}{
		{"alone", []*codecrafter.Execution{r("a", "RUNNING"), r("a", "QUEUED"), r("a", "QUEUED")}, false},
		{"alike", []*codecrafter.Execution{r("a", "QUEUED"), r("b", "QUEUED")}, false},
		{"one more", []*codecrafter.Execution{r("a", "RUNNING"), r("a", "QUEUED"), r("b", "RUNNING"), r("b", "QUEUED"), r("a", "QUEUED")}, false},
		{"two more", []*codecrafter.Execution{r("a", "RUNNING"), r("a", "QUEUED"), r("a", "QUEUED"), r("b", "QUEUED")}, true},
		{"b is ahead", []*codecrafter.Execution{r("a", "QUEUED"), r("b", "RUNNING"), r("b", "QUEUED"), r("b", "QUEUED")}, false},
		{"b has nothing queued", []*codecrafter.Execution{r("a", "RUNNING"), r("a", "QUEUED"), r("a", "QUEUED"), r("b", "SUCCEEDED")}, false},
	} {
		if got := events.Yields(tc.pending, "a"); got != tc.want {
			t.Errorf("%s: Yields = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// naiveFairOrder is FairOrder as first written, by its definition: each
// time, the oldest run left, or the lightest user's oldest when that user
// has FairMargin fewer runs outstanding.
func naiveFairOrder(pending []*codecrafter.Execution) []*codecrafter.Execution {
	load := map[string]int{}
	var queued []*codecrafter.Execution
	for _, e := range pending {
		if e.Status == codecrafter.StatusRunning || e.Status == codecrafter.StatusQueued {
			load[e.UserID]++
		}
		if e.Status == codecrafter.StatusQueued {
			queued = append(queued, e)
		}
	}
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
		if load[queued[lightest].UserID]+events.FairMargin <= load[queued[oldest].UserID] {
			pick = lightest
		}
		placed[pick] = true
		out = append(out, queued[pick])
	}
	return out
}

// TestFairOrderMatchesDefinition: the heap's order is the definition's,
// on random queues of up to 200 runs over 1 to 30 users.
func TestFairOrderMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	statuses := []codecrafter.ExecutionStatus{codecrafter.StatusQueued, codecrafter.StatusQueued, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusSucceeded}
	for round := range 500 {
		n, users := rng.IntN(200), 1+rng.IntN(30)
		pending := make([]*codecrafter.Execution, n)
		for i := range pending {
			pending[i] = &codecrafter.Execution{ID: fmt.Sprint(i), UserID: fmt.Sprint("u", rng.IntN(users)), Status: statuses[rng.IntN(len(statuses))]}
		}
		got, want := events.FairOrder(pending), naiveFairOrder(pending)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d (%d runs, %d users): order differs from the definition's", round, n, users)
		}
	}
}
