package sessions_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/executions/exectest"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
	"github.com/codecrafter/codecrafter/sessions"
)

var storeURI string

func TestMain(m *testing.M) { os.Exit(mongotest.Main(m, &storeURI)) }

// setup returns a service on a fresh store and an in-process bus, and the
// AccessTopic events it publishes.
func setup(t *testing.T) (*sessions.Service, <-chan []byte) {
	t.Helper()
	bus := inmem.NewBus()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	events, err := bus.Subscribe(ctx, codecrafter.AccessTopic)
	if err != nil {
		t.Fatal(err)
	}
	return sessions.New(mongotest.Open(t, storeURI), bus, exectest.Runtimes{}, slog.New(slog.DiscardHandler)), events
}

func as(user string) context.Context {
	return codecrafter.WithUserID(context.Background(), user)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := codecrafter.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

// create makes a session of owner that the others have joined.
func create(t *testing.T, svc *sessions.Service, owner string, others ...string) *codecrafter.Session {
	t.Helper()
	s, err := svc.Create(as(owner), "t", "python", nil)
	must(t, err)
	for _, u := range others {
		_, err := svc.Join(as(u), s.InviteCode)
		must(t, err)
	}
	return s
}

// nextEvent waits for the next access change.
func nextEvent(t *testing.T, events <-chan []byte) codecrafter.AccessChange {
	t.Helper()
	select {
	case b := <-events:
		c, err := codecrafter.DecodeAccessChange(b)
		must(t, err)
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no access change published")
		return codecrafter.AccessChange{}
	}
}

func TestAccessChangesPublished(t *testing.T) {
	t.Parallel()
	svc, events := setup(t)
	s := create(t, svc, "owner", "ed", "vw")
	want := func(what string, c codecrafter.AccessChange) {
		t.Helper()
		if got := nextEvent(t, events); got != c {
			t.Errorf("%s: event %+v, want %+v", what, got, c)
		}
	}

	// Refused operations change nothing and publish nothing: the next
	// event is the next change that is made.
	wantCode(t, svc.Remove(as("ed"), s.ID, "vw"), codecrafter.EFORBIDDEN)
	wantCode(t, svc.Leave(as("owner"), s.ID), codecrafter.EFORBIDDEN)
	_, err := svc.SetRole(as("owner"), s.ID, "owner", codecrafter.RoleOwner) // already: no change
	must(t, err)

	_, err = svc.SetRole(as("owner"), s.ID, "vw", codecrafter.RoleViewer)
	must(t, err)
	want("demotion", codecrafter.AccessChange{SessionID: s.ID, UserID: "vw"})

	must(t, svc.Leave(as("ed"), s.ID))
	want("leaving", codecrafter.AccessChange{SessionID: s.ID, UserID: "ed"})
	_, err = svc.Join(as("ed"), s.InviteCode)
	must(t, err)

	// Handing over changes two roles: one event each.
	_, err = svc.SetRole(as("owner"), s.ID, "ed", codecrafter.RoleOwner)
	must(t, err)
	want("hand-over, new owner", codecrafter.AccessChange{SessionID: s.ID, UserID: "ed"})
	want("hand-over, old owner", codecrafter.AccessChange{SessionID: s.ID, UserID: "owner"})

	must(t, svc.Remove(as("ed"), s.ID, "vw"))
	want("removal", codecrafter.AccessChange{SessionID: s.ID, UserID: "vw"})

	must(t, svc.Delete(as("ed"), s.ID))
	want("deletion", codecrafter.AccessChange{SessionID: s.ID})
	select {
	case b := <-events:
		t.Errorf("unexpected event %s", b)
	default:
	}
}

// failingBus refuses every publish.
type failingBus struct{ *inmem.Bus }

func (failingBus) Publish(context.Context, string, []byte) error { return errors.New("bus down") }

// Publishing is best effort: a change made stays made when the bus fails.
func TestPublishFailureKeepsChange(t *testing.T) {
	t.Parallel()
	svc := sessions.New(mongotest.Open(t, storeURI), failingBus{inmem.NewBus()}, exectest.Runtimes{}, slog.New(slog.DiscardHandler))
	s := create(t, svc, "owner", "ed")
	must(t, svc.Remove(as("owner"), s.ID, "ed"))
	_, err := svc.Get(as("ed"), s.ID)
	wantCode(t, err, codecrafter.ENOTFOUND)
}

func TestRejoinKeepsRole(t *testing.T) {
	t.Parallel()
	svc, _ := setup(t)
	s := create(t, svc, "owner", "vw", "ed")
	_, err := svc.SetRole(as("owner"), s.ID, "vw", codecrafter.RoleViewer)
	must(t, err)
	for _, u := range []string{"vw", "ed"} {
		must(t, svc.Leave(as(u), s.ID))
		_, err := svc.Join(as(u), s.InviteCode)
		must(t, err)
	}
	got, err := svc.Get(as("owner"), s.ID)
	must(t, err)
	for u, role := range map[string]codecrafter.Role{"vw": codecrafter.RoleViewer, "ed": codecrafter.RoleEditor} {
		if p, _ := got.Participant(u); p.Role != role {
			t.Errorf("%s rejoined as %q, want %s", u, p.Role, role)
		}
	}
	if len(got.Former) != 0 {
		t.Errorf("former participants %+v after they rejoined, want none", got.Former)
	}
}

func TestRemovalSticks(t *testing.T) {
	t.Parallel()
	svc, _ := setup(t)
	s := create(t, svc, "owner", "ed")
	must(t, svc.Remove(as("owner"), s.ID, "ed"))
	after, err := svc.Get(as("owner"), s.ID)
	must(t, err)
	if after.InviteCode == s.InviteCode {
		t.Error("removal kept the invite code")
	}
	_, err = svc.Join(as("ed"), s.InviteCode)
	wantCode(t, err, codecrafter.ENOTFOUND)
	_, err = svc.Join(as("ed"), after.InviteCode)
	wantCode(t, err, codecrafter.EFORBIDDEN)
	// Turning the invite off and on or rotating it does not let them back.
	_, err = svc.RotateInviteCode(as("owner"), s.ID)
	must(t, err)
	after, err = svc.Get(as("owner"), s.ID)
	must(t, err)
	_, err = svc.Join(as("ed"), after.InviteCode)
	wantCode(t, err, codecrafter.EFORBIDDEN)
	_, err = svc.SetRole(as("owner"), s.ID, "ed", codecrafter.RoleEditor)
	wantCode(t, err, codecrafter.ENOTFOUND)
	// Others still join with the current code.
	_, err = svc.Join(as("new"), after.InviteCode)
	must(t, err)
}

func TestInviteSwitch(t *testing.T) {
	t.Parallel()
	svc, _ := setup(t)
	s := create(t, svc, "owner", "ed")
	for _, u := range []string{"ed", "stranger"} {
		_, err := svc.SetInviteEnabled(as(u), s.ID, false)
		wantCode(t, err, map[string]string{"ed": codecrafter.EFORBIDDEN, "stranger": codecrafter.ENOTFOUND}[u])
		_, err = svc.RotateInviteCode(as(u), s.ID)
		wantCode(t, err, map[string]string{"ed": codecrafter.EFORBIDDEN, "stranger": codecrafter.ENOTFOUND}[u])
	}
	off, err := svc.SetInviteEnabled(as("owner"), s.ID, false)
	must(t, err)
	if on := sessions.InviteEnabled(as("owner"), off); on == nil || *on {
		t.Errorf("InviteEnabled for the owner = %v, want false", on)
	}
	if on := sessions.InviteEnabled(as("ed"), off); on != nil {
		t.Errorf("InviteEnabled for an editor = %v, want nil", *on)
	}
	_, err = svc.Join(as("late"), s.InviteCode)
	wantCode(t, err, codecrafter.EFORBIDDEN)
	// A participant opening the link again is still in.
	_, err = svc.Join(as("ed"), s.InviteCode)
	must(t, err)
	_, err = svc.SetInviteEnabled(as("owner"), s.ID, true)
	must(t, err)
	_, err = svc.Join(as("late"), s.InviteCode)
	must(t, err)
}
