package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/codecrafter/codecrafter"
)

// TestUsers checks a UserStore.
func TestUsers(t *testing.T, newStore func(t *testing.T) codecrafter.UserStore) {
	ctx := context.Background()
	user := func(email string) *codecrafter.User {
		return &codecrafter.User{ID: codecrafter.NewID(), Email: email, Name: "Ada " + email, PasswordHash: "$argon2id$v=19$x", CreatedAt: now()}
	}

	t.Run("CreateAndRead", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		u := user("ada@example.com")
		noErr(t, s.CreateUser(ctx, u))
		byID, err := s.User(ctx, u.ID)
		noErr(t, err)
		byEmail, err := s.UserByEmail(ctx, u.Email)
		noErr(t, err)
		for _, got := range []*codecrafter.User{byID, byEmail} {
			if got.ID != u.ID || got.Email != u.Email || got.Name != u.Name || got.PasswordHash != u.PasswordHash {
				t.Errorf("got %+v, want %+v", got, u)
			}
			sameTime(t, "CreatedAt", got.CreatedAt, u.CreatedAt)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		noErr(t, s.CreateUser(ctx, user("ada@example.com")))
		_, err := s.User(ctx, codecrafter.NewID())
		wantCode(t, err, codecrafter.ENOTFOUND)
		_, err = s.UserByEmail(ctx, "bob@example.com")
		wantCode(t, err, codecrafter.ENOTFOUND)
	})

	t.Run("EmailTaken", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		noErr(t, s.CreateUser(ctx, user("ada@example.com")))
		dup := user("ada@example.com")
		wantCode(t, s.CreateUser(ctx, dup), codecrafter.ECONFLICT)
		_, err := s.User(ctx, dup.ID)
		wantCode(t, err, codecrafter.ENOTFOUND)
	})

	t.Run("Users", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var ids []string
		for _, e := range []string{"a@example.com", "b@example.com", "c@example.com"} {
			u := user(e)
			noErr(t, s.CreateUser(ctx, u))
			ids = append(ids, u.ID)
		}
		got, err := s.Users(ctx, []string{ids[2], codecrafter.NewID(), ids[0]})
		noErr(t, err)
		var gotIDs []string
		for _, u := range got {
			gotIDs = append(gotIDs, u.ID)
		}
		slices.Sort(gotIDs)
		want := []string{ids[0], ids[2]}
		slices.Sort(want)
		if !slices.Equal(gotIDs, want) {
			t.Errorf("Users = %v, want %v", gotIDs, want)
		}
		none, err := s.Users(ctx, nil)
		noErr(t, err)
		if len(none) != 0 {
			t.Errorf("Users(nil) = %v, want none", none)
		}
	})

	t.Run("RacingSignUps", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		users := make([]*codecrafter.User, racers)
		for i := range users {
			users[i] = user("race@example.com")
		}
		errs := race(racers, func(i int) error { return s.CreateUser(ctx, users[i]) })
		if c := countCodes(errs); c[""] != 1 || c[codecrafter.ECONFLICT] != racers-1 {
			t.Fatalf("racing sign-ups with one email: %v, want 1 success and %d CONFLICT", c, racers-1)
		}
		// The email leads to the winner, whichever it was.
		winner := users[slices.IndexFunc(errs, func(err error) bool { return err == nil })]
		got, err := s.UserByEmail(ctx, "race@example.com")
		noErr(t, err)
		if got.ID != winner.ID {
			t.Errorf("UserByEmail = %s, want the sign-up that succeeded, %s", got.ID, winner.ID)
		}
	})
}
