package access_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/access"
	"github.com/codecrafter/codecrafter/inmem"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newHub(t *testing.T) (*access.Hub, codecrafter.Bus) {
	t.Helper()
	bus := inmem.NewBus()
	h := access.New(bus, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := h.Subscribe(ctx); err != nil {
		t.Fatal(err)
	}
	return h, bus
}

func publish(t *testing.T, bus codecrafter.Bus, c codecrafter.AccessChange) {
	t.Helper()
	if err := bus.Publish(context.Background(), codecrafter.AccessTopic, codecrafter.EncodeAccessChange(c)); err != nil {
		t.Fatal(err)
	}
}

func ended(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end")
	}
}

func TestRemovedParticipantsWatchEnds(t *testing.T) {
	h, bus := newHub(t)
	var mu sync.Mutex
	member := map[string]bool{"ada": true, "bob": true}
	check := func(user string) func(context.Context) error {
		return func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			if !member[user] {
				return codecrafter.Errorf(codecrafter.ENOTFOUND, "session not found")
			}
			return nil
		}
	}
	ada := h.WatchSession(context.Background(), "s1", "ada", check("ada"), nil)
	bob := h.WatchSession(context.Background(), "s1", "bob", check("bob"), nil)

	// A role change names bob but he is still in: nothing ends.
	publish(t, bus, codecrafter.AccessChange{SessionID: "s1", UserID: "bob"})
	mu.Lock()
	member["ada"] = false
	mu.Unlock()
	publish(t, bus, codecrafter.AccessChange{SessionID: "s1", UserID: "ada"})
	ended(t, ada)
	if !codecrafter.IsCode(access.Cause(ada), codecrafter.ENOTFOUND) {
		t.Fatalf("cause %v, want NOT_FOUND", access.Cause(ada))
	}
	if bob.Err() != nil {
		t.Fatal("bob's watch ended though he is still a participant")
	}
	// Deleting the session ends everyone's.
	publish(t, bus, codecrafter.AccessChange{SessionID: "s1"})
	ended(t, bob)
	waitWatches(t, h, 0)
}

func TestRevokedLoginEnds(t *testing.T) {
	h, bus := newHub(t)
	done := make(chan struct{})
	stop1 := h.WatchLogin("fam-1", func() { close(done) })
	other := make(chan struct{}, 1)
	stop2 := h.WatchLogin("fam-2", func() { other <- struct{}{} })
	publish(t, bus, codecrafter.AccessChange{FamilyID: "fam-1"})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("revoked login not ended")
	}
	stop1() // a normal end does not call end
	stop2()
	waitWatches(t, h, 0)
	select {
	case <-other:
		t.Fatal("another login was ended")
	default:
	}
}

func TestWatchGoesWithItsContext(t *testing.T) {
	h, _ := newHub(t)
	ctx, cancel := context.WithCancel(context.Background())
	w := h.WatchSession(ctx, "s1", "ada", func(context.Context) error { return nil }, nil)
	cancel()
	ended(t, w)
	if access.Cause(w) != nil {
		t.Fatalf("cause %v for a normal end", access.Cause(w))
	}
	waitWatches(t, h, 0)
}

func waitWatches(t *testing.T, h *access.Hub, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.Watches() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d watches, want %d", h.Watches(), want)
		}
		time.Sleep(time.Millisecond)
	}
}
