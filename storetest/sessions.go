package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
)

// TestSessions checks a SessionStore.
func TestSessions(t *testing.T, newStore func(t *testing.T) codecrafter.SessionStore) {
	ctx := context.Background()
	session := func(owner string, updated time.Time) *codecrafter.Session {
		return &codecrafter.Session{
			ID: codecrafter.NewID(), Title: "Pair on " + owner, Language: "python", Code: "print(1)\n",
			Revision: 3, OwnerID: owner, InviteCode: codecrafter.RandomToken(9),
			Participants: []codecrafter.Participant{{UserID: owner, Role: codecrafter.RoleOwner, JoinedAt: updated}},
			CreatedAt:    updated, UpdatedAt: updated,
		}
	}
	same := func(t *testing.T, got, want *codecrafter.Session) {
		t.Helper()
		if got.ID != want.ID || got.Title != want.Title || got.Language != want.Language || got.Code != want.Code ||
			got.Revision != want.Revision || got.OwnerID != want.OwnerID || got.InviteCode != want.InviteCode ||
			got.InviteDisabled != want.InviteDisabled {
			t.Errorf("got %+v, want %+v", got, want)
		}
		if len(got.Former) != len(want.Former) {
			t.Fatalf("former participants %+v, want %+v", got.Former, want.Former)
		}
		for i, f := range got.Former {
			w := want.Former[i]
			if f.UserID != w.UserID || f.Role != w.Role || f.Removed != w.Removed || !f.LeftAt.Equal(w.LeftAt) {
				t.Errorf("former participant %d = %+v, want %+v", i, f, w)
			}
		}
		sameTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
		sameTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
		if len(got.Participants) != len(want.Participants) {
			t.Fatalf("participants %+v, want %+v", got.Participants, want.Participants)
		}
		for i, p := range got.Participants {
			w := want.Participants[i]
			if p.UserID != w.UserID || p.Role != w.Role || !p.JoinedAt.Equal(w.JoinedAt) {
				t.Errorf("participant %d = %+v, want %+v", i, p, w)
			}
		}
	}

	t.Run("CreateAndRead", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		want := session("u1", now())
		noErr(t, s.CreateSession(ctx, want))
		got, err := s.Session(ctx, want.ID)
		noErr(t, err)
		same(t, got, want)
		if got.Version <= 0 {
			t.Errorf("Version = %d, want > 0", got.Version)
		}
		byCode, err := s.SessionByInviteCode(ctx, want.InviteCode)
		noErr(t, err)
		same(t, byCode, want)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		noErr(t, s.CreateSession(ctx, session("u1", now())))
		_, err := s.Session(ctx, codecrafter.NewID())
		wantCode(t, err, codecrafter.ENOTFOUND)
		_, err = s.SessionByInviteCode(ctx, "no-such-code")
		wantCode(t, err, codecrafter.ENOTFOUND)
		_, err = s.UpdateSession(ctx, codecrafter.NewID(), func(*codecrafter.Session) error { return nil })
		wantCode(t, err, codecrafter.ENOTFOUND)
		wantCode(t, s.DeleteSession(ctx, codecrafter.NewID()), codecrafter.ENOTFOUND)
	})

	t.Run("InviteCodeTaken", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		a := session("u1", now())
		noErr(t, s.CreateSession(ctx, a))
		b := session("u2", now())
		b.InviteCode = a.InviteCode
		wantCode(t, s.CreateSession(ctx, b), codecrafter.ECONFLICT)

		c := session("u3", now())
		noErr(t, s.CreateSession(ctx, c))
		_, err := s.UpdateSession(ctx, c.ID, func(s *codecrafter.Session) error {
			s.InviteCode = a.InviteCode
			return nil
		})
		wantCode(t, err, codecrafter.ECONFLICT)
		got, err := s.Session(ctx, c.ID)
		noErr(t, err)
		if got.InviteCode != c.InviteCode {
			t.Errorf("invite code changed to %q despite the conflict", got.InviteCode)
		}
	})

	t.Run("SessionsForUser", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		older := session("u1", t0)
		newer := session("u1", t0.Add(time.Minute))
		other := session("u2", t0.Add(2*time.Minute))
		shared := session("u2", t0.Add(-time.Minute))
		shared.Participants = append(shared.Participants, codecrafter.Participant{UserID: "u1", Role: codecrafter.RoleViewer, JoinedAt: t0})
		for _, x := range []*codecrafter.Session{older, newer, other, shared} {
			noErr(t, s.CreateSession(ctx, x))
		}
		ids := func(user string) []string {
			got, err := s.SessionsForUser(ctx, user)
			noErr(t, err)
			var ids []string
			for _, x := range got {
				ids = append(ids, x.ID)
			}
			return ids
		}
		if got, want := ids("u1"), []string{newer.ID, older.ID, shared.ID}; !slices.Equal(got, want) {
			t.Errorf("SessionsForUser(u1) = %v, want %v (newest first)", got, want)
		}
		if got := ids("nobody"); len(got) != 0 {
			t.Errorf("SessionsForUser(nobody) = %v, want none", got)
		}

		// Joining shows up; the order stays by creation, whatever the
		// update times.
		_, err := s.UpdateSession(ctx, other.ID, func(x *codecrafter.Session) error {
			x.Participants = append(x.Participants, codecrafter.Participant{UserID: "u1", Role: codecrafter.RoleEditor, JoinedAt: t0})
			x.UpdatedAt = t0.Add(time.Hour)
			return nil
		})
		noErr(t, err)
		_, err = s.UpdateSession(ctx, older.ID, func(x *codecrafter.Session) error {
			x.UpdatedAt = t0.Add(2 * time.Hour)
			return nil
		})
		noErr(t, err)
		if got, want := ids("u1"), []string{other.ID, newer.ID, older.ID, shared.ID}; !slices.Equal(got, want) {
			t.Errorf("after joining, SessionsForUser(u1) = %v, want %v", got, want)
		}
	})

	t.Run("Update", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		orig := session("u1", now())
		noErr(t, s.CreateSession(ctx, orig))
		before, err := s.Session(ctx, orig.ID)
		noErr(t, err)
		later := orig.UpdatedAt.Add(time.Second)
		got, err := s.UpdateSession(ctx, orig.ID, func(x *codecrafter.Session) error {
			x.Title = "Renamed"
			x.Code = "print(2)\n"
			x.Revision++
			x.UpdatedAt = later
			x.Participants = append(x.Participants, codecrafter.Participant{UserID: "u2", Role: codecrafter.RoleEditor, JoinedAt: later})
			return nil
		})
		noErr(t, err)
		stored, err := s.Session(ctx, orig.ID)
		noErr(t, err)
		want := *orig
		want.Title, want.Code, want.Revision, want.UpdatedAt = "Renamed", "print(2)\n", orig.Revision+1, later
		want.Participants = append(slices.Clone(orig.Participants), codecrafter.Participant{UserID: "u2", Role: codecrafter.RoleEditor, JoinedAt: later})
		same(t, got, &want)
		same(t, stored, &want)
		if stored.Version <= before.Version || got.Version != stored.Version {
			t.Errorf("versions: before %d, returned %d, stored %d; want it to grow", before.Version, got.Version, stored.Version)
		}
	})

	// What a session remembers about its invite and its former
	// participants survives storing, and changing.
	t.Run("InviteAndFormer", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		orig := session("u1", now())
		orig.InviteDisabled = true
		orig.Former = []codecrafter.FormerParticipant{
			{UserID: "u2", Role: codecrafter.RoleViewer, LeftAt: orig.CreatedAt},
			{UserID: "u3", Role: codecrafter.RoleEditor, Removed: true, LeftAt: orig.CreatedAt.Add(time.Second)},
		}
		noErr(t, s.CreateSession(ctx, orig))
		got, err := s.Session(ctx, orig.ID)
		noErr(t, err)
		same(t, got, orig)
		if f, ok := got.FormerParticipant("u3"); !ok || !f.Removed {
			t.Errorf("FormerParticipant(u3) = %+v, %v; want the removal", f, ok)
		}

		want := *orig
		want.InviteDisabled = false
		want.Former = orig.Former[1:]
		want.Participants = append(slices.Clone(orig.Participants), codecrafter.Participant{UserID: "u2", Role: codecrafter.RoleViewer, JoinedAt: orig.CreatedAt})
		updated, err := s.UpdateSession(ctx, orig.ID, func(x *codecrafter.Session) error {
			x.InviteDisabled = false
			x.Former = x.Former[1:]
			x.Participants = append(x.Participants, codecrafter.Participant{UserID: "u2", Role: codecrafter.RoleViewer, JoinedAt: orig.CreatedAt})
			return nil
		})
		noErr(t, err)
		same(t, updated, &want)
		got, err = s.Session(ctx, orig.ID)
		noErr(t, err)
		same(t, got, &want)
		// A former participant is not a participant.
		if ids := sessionIDs(t, s, "u3"); len(ids) != 0 {
			t.Errorf("SessionsForUser(u3) = %v, want none", ids)
		}
	})

	t.Run("UpdateAborts", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		orig := session("u1", now())
		noErr(t, s.CreateSession(ctx, orig))
		_, err := s.UpdateSession(ctx, orig.ID, func(x *codecrafter.Session) error {
			x.Title = "Not stored"
			return fmt.Errorf("wrapped: %w", errAbort)
		})
		if !errors.Is(err, errAbort) {
			t.Fatalf("UpdateSession = %v, want fn's error", err)
		}
		_, err = s.UpdateSession(ctx, orig.ID, func(*codecrafter.Session) error {
			return codecrafter.Errorf(codecrafter.EFORBIDDEN, "no")
		})
		wantCode(t, err, codecrafter.EFORBIDDEN)
		got, err := s.Session(ctx, orig.ID)
		noErr(t, err)
		same(t, got, orig)
	})

	t.Run("RacingUpdates", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		orig := session("u1", now())
		orig.Revision = 0
		noErr(t, s.CreateSession(ctx, orig))
		errs := race(racers, func(i int) error {
			_, err := s.UpdateSession(ctx, orig.ID, func(x *codecrafter.Session) error {
				x.Revision++
				x.Participants = append(x.Participants, codecrafter.Participant{UserID: fmt.Sprint("racer", i), Role: codecrafter.RoleEditor, JoinedAt: orig.CreatedAt})
				return nil
			})
			return err
		})
		if c := countCodes(errs); c[""] != racers {
			t.Fatalf("racing updates: %v, want all %d to land (errors %v)", c, racers, errs)
		}
		got, err := s.Session(ctx, orig.ID)
		noErr(t, err)
		if got.Revision != racers || len(got.Participants) != racers+1 {
			t.Errorf("after %d racing updates: Revision %d, %d participants; want %d and %d (lost updates)",
				racers, got.Revision, len(got.Participants), racers, racers+1)
		}
		for i := range racers {
			if got := sessionIDs(t, s, fmt.Sprint("racer", i)); !slices.Equal(got, []string{orig.ID}) {
				t.Errorf("SessionsForUser(racer%d) = %v, want [%s]", i, got, orig.ID)
			}
		}
	})

	// A class opening the invite link at once: every join lands, first
	// time, however many race (more than any fixed number of retries).
	t.Run("RacingJoins", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		orig := session("u1", now())
		noErr(t, s.CreateSession(ctx, orig))
		errs := race(joiners, func(i int) error {
			_, err := s.UpdateSession(ctx, orig.ID, func(x *codecrafter.Session) error {
				x.Participants = append(x.Participants, codecrafter.Participant{UserID: fmt.Sprint("student", i), Role: codecrafter.RoleEditor, JoinedAt: orig.CreatedAt})
				return nil
			})
			return err
		})
		if c := countCodes(errs); c[""] != joiners {
			t.Fatalf("racing joins: %v, want all %d to land", c, joiners)
		}
		got, err := s.Session(ctx, orig.ID)
		noErr(t, err)
		if len(got.Participants) != joiners+1 {
			t.Errorf("after %d racing joins: %d participants, want %d", joiners, len(got.Participants), joiners+1)
		}
		for i := range joiners {
			if _, ok := got.Participant(fmt.Sprint("student", i)); !ok {
				t.Errorf("student%d's join was lost", i)
			}
		}
	})

	t.Run("Membership", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		x := session("u1", now())
		noErr(t, s.CreateSession(ctx, x))
		setMember := func(user string, in bool) {
			t.Helper()
			_, err := s.UpdateSession(ctx, x.ID, func(x *codecrafter.Session) error {
				x.Participants = slices.DeleteFunc(x.Participants, func(p codecrafter.Participant) bool { return p.UserID == user })
				if in {
					x.Participants = append(x.Participants, codecrafter.Participant{UserID: user, Role: codecrafter.RoleEditor, JoinedAt: x.CreatedAt})
				}
				return nil
			})
			noErr(t, err)
		}
		steps := []struct {
			name   string
			do     func()
			u1, u2 []string
		}{
			{"u2 joins", func() { setMember("u2", true) }, []string{x.ID}, []string{x.ID}},
			{"u2 removed", func() { setMember("u2", false) }, []string{x.ID}, nil},
			{"u2 rejoins", func() { setMember("u2", true) }, []string{x.ID}, []string{x.ID}},
			{"deleted", func() { noErr(t, s.DeleteSession(ctx, x.ID)) }, nil, nil},
		}
		for _, st := range steps {
			st.do()
			if got := sessionIDs(t, s, "u1"); !slices.Equal(got, st.u1) {
				t.Errorf("%s: SessionsForUser(u1) = %v, want %v", st.name, got, st.u1)
			}
			if got := sessionIDs(t, s, "u2"); !slices.Equal(got, st.u2) {
				t.Errorf("%s: SessionsForUser(u2) = %v, want %v", st.name, got, st.u2)
			}
		}
	})

	// A removal racing a rejoin of the same user: whichever lands last,
	// SessionsForUser agrees with the session.
	t.Run("RacingLeaveAndRejoin", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		x := session("u1", now())
		x.Participants = append(x.Participants, codecrafter.Participant{UserID: "u2", Role: codecrafter.RoleEditor, JoinedAt: x.CreatedAt})
		noErr(t, s.CreateSession(ctx, x))
		for round := range 10 {
			errs := race(2, func(i int) error {
				_, err := s.UpdateSession(ctx, x.ID, func(x *codecrafter.Session) error {
					_, in := x.Participant("u2")
					switch {
					case i == 0 && in:
						x.Participants = slices.DeleteFunc(x.Participants, func(p codecrafter.Participant) bool { return p.UserID == "u2" })
					case i == 1 && !in:
						x.Participants = append(x.Participants, codecrafter.Participant{UserID: "u2", Role: codecrafter.RoleEditor, JoinedAt: x.CreatedAt})
					}
					return nil
				})
				return err
			})
			if c := countCodes(errs); c[""] != 2 {
				t.Fatalf("round %d: %v", round, errs)
			}
			got, err := s.Session(ctx, x.ID)
			noErr(t, err)
			var want []string
			if _, in := got.Participant("u2"); in {
				want = []string{x.ID}
			}
			if ids := sessionIDs(t, s, "u2"); !slices.Equal(ids, want) {
				t.Fatalf("round %d: SessionsForUser(u2) = %v, want %v", round, ids, want)
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		x := session("u1", now())
		noErr(t, s.CreateSession(ctx, x))
		noErr(t, s.DeleteSession(ctx, x.ID))
		_, err := s.Session(ctx, x.ID)
		wantCode(t, err, codecrafter.ENOTFOUND)
		_, err = s.SessionByInviteCode(ctx, x.InviteCode)
		wantCode(t, err, codecrafter.ENOTFOUND)
		wantCode(t, s.DeleteSession(ctx, x.ID), codecrafter.ENOTFOUND)
		got, err := s.SessionsForUser(ctx, "u1")
		noErr(t, err)
		if len(got) != 0 {
			t.Errorf("SessionsForUser after delete = %d sessions, want none", len(got))
		}
	})
}

// joiners is how many racing joins RacingJoins starts: more than the 30
// tries the mongo store used to give up after.
const joiners = 50

// sessionIDs returns the ids of SessionsForUser(user), in order.
func sessionIDs(t *testing.T, s codecrafter.SessionStore, user string) []string {
	t.Helper()
	list, err := s.SessionsForUser(context.Background(), user)
	noErr(t, err)
	var ids []string
	for _, x := range list {
		ids = append(ids, x.ID)
	}
	return ids
}
