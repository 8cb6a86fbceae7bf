package storetest

import (
	"fmt"
	"testing"

	"github.com/codecrafter/codecrafter"
)

// TestMemberEvents runs the MemberEventStore conformance suite.
func TestMemberEvents(t *testing.T, newStore func(t *testing.T) codecrafter.MemberEventStore) {
	t.Run("SeqFromOneInOrder", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		sid := codecrafter.NewID()
		const n = 70 // more than a page or two of any paged layout
		for i := range n {
			e := &codecrafter.MemberEvent{SessionID: sid, Kind: codecrafter.MemberJoined, UserID: fmt.Sprint("u", i+1), Role: codecrafter.RoleEditor, At: now()}
			noErr(t, s.AppendMemberEvent(t.Context(), e))
			if e.Seq != i+1 {
				t.Fatalf("event %d: seq %d", i+1, e.Seq)
			}
		}
		noErr(t, s.AppendMemberEvent(t.Context(), &codecrafter.MemberEvent{SessionID: sid, Kind: codecrafter.MemberLeft, UserID: "u1", At: now()}))
		all, err := s.MemberEvents(t.Context(), sid, 0, 100)
		noErr(t, err)
		if len(all) != n+1 {
			t.Fatalf("%d events, want %d", len(all), n+1)
		}
		for i, e := range all[:n] {
			if e.Seq != i+1 || e.UserID != fmt.Sprint("u", i+1) || e.SessionID != sid || e.Kind != codecrafter.MemberJoined || e.Role != codecrafter.RoleEditor {
				t.Fatalf("event %d: %+v", i+1, e)
			}
		}
		if last := all[n]; last.Kind != codecrafter.MemberLeft || last.Role != "" || last.UserID != "u1" {
			t.Fatalf("last event: %+v", last)
		}
		for _, c := range []struct{ after, limit, first, count int }{
			{0, 10, 1, 10}, {30, 5, 31, 5}, {31, 40, 32, 40}, {65, 50, 66, 6}, {71, 10, 0, 0},
		} {
			got, err := s.MemberEvents(t.Context(), sid, c.after, c.limit)
			noErr(t, err)
			if len(got) != c.count || (c.count > 0 && got[0].Seq != c.first) {
				t.Fatalf("after %d limit %d: %d events from %v", c.after, c.limit, len(got), got)
			}
		}
		other, err := s.MemberEvents(t.Context(), codecrafter.NewID(), 0, 10)
		noErr(t, err)
		if len(other) != 0 {
			t.Fatalf("another session has %d events", len(other))
		}
	})
	t.Run("ConcurrentAppendsNoGapNoDuplicate", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		sid := codecrafter.NewID()
		const n = 3 * racers
		evs := make([]*codecrafter.MemberEvent, n)
		errs := race(n, func(i int) error {
			evs[i] = &codecrafter.MemberEvent{SessionID: sid, Kind: codecrafter.MemberJoined, UserID: fmt.Sprint(i), At: now()}
			return s.AppendMemberEvent(t.Context(), evs[i])
		})
		bySeq := map[int]string{}
		for i, err := range errs {
			noErr(t, err)
			bySeq[evs[i].Seq] = evs[i].UserID
		}
		all, err := s.MemberEvents(t.Context(), sid, 0, 100)
		noErr(t, err)
		if len(all) != n || len(bySeq) != n {
			t.Fatalf("%d stored, %d seqs given, want %d", len(all), len(bySeq), n)
		}
		for i, e := range all {
			if e.Seq != i+1 || e.UserID != bySeq[e.Seq] {
				t.Fatalf("stored event %d is %+v, its append got %q", i+1, e, bySeq[e.Seq])
			}
		}
	})
}
