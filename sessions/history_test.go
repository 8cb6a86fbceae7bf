package sessions_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/executions/exectest"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
	"github.com/codecrafter/codecrafter/sessions"
)

// TestMembershipHistory: every membership change is recorded, in order,
// once, and announced on MembersTopic; a change that changes nothing is not.
func TestMembershipHistory(t *testing.T) {
	t.Parallel()
	bus := inmem.NewBus()
	db := mongotest.Open(t, storeURI)
	svc := sessions.New(db, bus, exectest.Runtimes{}, slog.New(slog.DiscardHandler)).WithHistory(db)

	s := create(t, svc, "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bell, err := bus.Subscribe(ctx, codecrafter.MembersTopic(s.ID))
	must(t, err)
	_, err = svc.Join(as("b"), s.InviteCode)
	must(t, err)
	_, err = svc.Join(as("b"), s.InviteCode) // already in: nothing
	must(t, err)
	_, err = svc.Join(as("c"), s.InviteCode)
	must(t, err)
	_, err = svc.SetRole(as("a"), s.ID, "b", codecrafter.RoleViewer)
	must(t, err)
	_, err = svc.SetRole(as("a"), s.ID, "b", codecrafter.RoleViewer) // no change
	must(t, err)
	must(t, svc.Leave(as("b"), s.ID))
	sess, err := svc.Get(as("a"), s.ID)
	must(t, err)
	_, err = svc.Join(as("b"), sess.InviteCode) // back as the VIEWER they were
	must(t, err)
	must(t, svc.Remove(as("a"), s.ID, "c"))
	_, err = svc.SetRole(as("a"), s.ID, "b", codecrafter.RoleOwner) // hand over
	must(t, err)

	want := []string{
		"JOINED a OWNER", "JOINED b EDITOR", "JOINED c EDITOR", "ROLE_CHANGED b VIEWER",
		"LEFT b VIEWER", "JOINED b VIEWER", "REMOVED c EDITOR", "ROLE_CHANGED b OWNER", "ROLE_CHANGED a EDITOR",
	}
	evs, err := db.MemberEvents(t.Context(), s.ID, 0, 100)
	must(t, err)
	var got []string
	for i, e := range evs {
		got = append(got, fmt.Sprintf("%s %s %s", e.Kind, e.UserID, e.Role))
		if e.Seq != i+1 || e.At.IsZero() || (i > 0 && e.At.Before(evs[i-1].At)) {
			t.Errorf("event %d: %+v", i+1, e)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("history:\n%q\nwant\n%q", got, want)
	}
	for seq := 2; seq <= len(want); seq++ { // every one after the subscription rang the bell
		select {
		case b := <-bell:
			e, err := codecrafter.DecodeMemberEvent(s.ID, b)
			must(t, err)
			if e.Seq != seq || e.Kind != evs[seq-1].Kind || e.UserID != evs[seq-1].UserID {
				t.Fatalf("doorbell %d: %+v", seq, e)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no doorbell for event %d", seq)
		}
	}
}
