package access_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/access"
	"github.com/codecrafter/codecrafter/bustest"
	"github.com/codecrafter/codecrafter/inmem"
)

// sessionsFake holds one session whose roles a test changes; it counts
// reads.
type sessionsFake struct {
	mu    sync.Mutex
	roles map[string]codecrafter.Role
	reads int
}

func (f *sessionsFake) Session(_ context.Context, id string) (*codecrafter.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if id != "s1" {
		return nil, codecrafter.Errorf(codecrafter.ENOTFOUND, "no such session")
	}
	s := &codecrafter.Session{ID: id}
	for u, r := range f.roles {
		s.Participants = append(s.Participants, codecrafter.Participant{UserID: u, Role: r})
	}
	return s, nil
}

func (f *sessionsFake) set(user string, r codecrafter.Role) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r == "" {
		delete(f.roles, user)
	} else {
		f.roles[user] = r
	}
}

func (f *sessionsFake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

type recentEnv struct {
	store  *sessionsFake
	bus    codecrafter.Bus
	recent *access.Recent
	now    time.Time
}

func newRecent(t *testing.T, bus codecrafter.Bus, watch bool) *recentEnv {
	t.Helper()
	e := &recentEnv{store: &sessionsFake{roles: map[string]codecrafter.Role{"ada": codecrafter.RoleEditor}}, bus: bus, now: time.Now()}
	e.recent = access.NewRecent(e.store, bus, slog.New(slog.DiscardHandler))
	e.recent.SetClock(func() time.Time { return e.now }) // stands still unless moved
	if watch {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		if err := e.recent.Watch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *recentEnv) authorize(t *testing.T, user string, action codecrafter.Action) error {
	t.Helper()
	_, got, err := e.recent.Authorize(codecrafter.WithUserID(context.Background(), user), "s1", action)
	if err == nil && got != user {
		t.Fatalf("user %q, want %q", got, user)
	}
	return err
}

func TestRecentReadsOncePerTTL(t *testing.T) {
	e := newRecent(t, inmem.NewBus(), true)
	for range 10 {
		if err := e.authorize(t, "ada", codecrafter.ActionEdit); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.store.count(); n != 1 {
		t.Fatalf("%d reads for 10 authorizations within the TTL, want 1", n)
	}
	e.now = e.now.Add(access.RecentTTL)
	if err := e.authorize(t, "ada", codecrafter.ActionEdit); err != nil {
		t.Fatal(err)
	}
	if n := e.store.count(); n != 2 {
		t.Fatalf("%d reads once the read expired, want 2", n)
	}
}

func TestRecentDropsTheReadOnAccessChange(t *testing.T) {
	e := newRecent(t, inmem.NewBus(), true)
	if err := e.authorize(t, "ada", codecrafter.ActionEdit); err != nil {
		t.Fatal(err)
	}
	e.store.set("ada", codecrafter.RoleViewer)
	if err := e.authorize(t, "ada", codecrafter.ActionEdit); err != nil {
		t.Fatalf("before the change is announced the read stands (%v)", err)
	}
	// Announced as the sessions service does, once stored: refused at once.
	publish(t, e.bus, codecrafter.AccessChange{SessionID: "s1", UserID: "ada"})
	if err := e.authorize(t, "ada", codecrafter.ActionEdit); !codecrafter.IsCode(err, codecrafter.EFORBIDDEN) {
		t.Fatalf("an editor made viewer: %v, want FORBIDDEN", err)
	}
	if err := e.authorize(t, "ada", codecrafter.ActionChat); err != nil {
		t.Fatalf("a viewer chats: %v", err)
	}
	e.store.set("ada", "")
	publish(t, e.bus, codecrafter.AccessChange{SessionID: "s1", UserID: "ada"})
	if err := e.authorize(t, "ada", codecrafter.ActionChat); !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		t.Fatalf("removed: %v, want NOT_FOUND", err)
	}
}

// A refusal is never taken from a held read: someone who just joined is
// let in at once.
func TestRecentRereadsBeforeRefusing(t *testing.T) {
	e := newRecent(t, inmem.NewBus(), true)
	if err := e.authorize(t, "ada", codecrafter.ActionEdit); err != nil {
		t.Fatal(err)
	}
	e.store.set("bob", codecrafter.RoleEditor)
	if err := e.authorize(t, "bob", codecrafter.ActionEdit); err != nil {
		t.Fatalf("a new editor: %v", err)
	}
	if err := e.authorize(t, "eve", codecrafter.ActionRead); !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		t.Fatalf("an outsider: %v, want NOT_FOUND", err)
	}
	_, _, err := e.recent.Authorize(codecrafter.WithUserID(context.Background(), "ada"), "nope", codecrafter.ActionRead)
	if !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		t.Fatalf("a session that does not exist: %v, want NOT_FOUND", err)
	}
}

func TestRecentWithoutWatchReadsEveryTime(t *testing.T) {
	e := newRecent(t, inmem.NewBus(), false)
	for range 3 {
		if err := e.authorize(t, "ada", codecrafter.ActionEdit); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.store.count(); n != 3 {
		t.Fatalf("%d reads, want 3: nothing is held while changes are not followed", n)
	}
}

// While the access subscription is down a change could be missed: every
// call reads, and once subscribed again reads are held again.
func TestRecentReadsEveryTimeWhileTheBusIsDown(t *testing.T) {
	flaky := bustest.NewFlaky(inmem.NewBus())
	e := newRecent(t, flaky, true)
	if err := e.authorize(t, "ada", codecrafter.ActionEdit); err != nil {
		t.Fatal(err)
	}
	flaky.Drop()
	select {
	case <-flaky.Refused: // the watcher saw the end and tried again
	case <-time.After(10 * time.Second):
		t.Fatal("no re-subscribe")
	}
	e.store.set("ada", codecrafter.RoleViewer)
	if err := e.authorize(t, "ada", codecrafter.ActionEdit); !codecrafter.IsCode(err, codecrafter.EFORBIDDEN) {
		t.Fatalf("with the bus down: %v, want FORBIDDEN from a fresh read", err)
	}
	before := e.store.count()
	for range 3 {
		if err := e.authorize(t, "ada", codecrafter.ActionChat); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.store.count() - before; n != 3 {
		t.Fatalf("%d reads for 3 calls with the bus down, want 3", n)
	}
	flaky.Up()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := e.authorize(t, "ada", codecrafter.ActionChat); err != nil {
			t.Fatal(err)
		}
		if e.recent.Holds("s1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no read held after the bus came back")
		}
		time.Sleep(20 * time.Millisecond) // polls the watcher's re-subscribe
	}
}
