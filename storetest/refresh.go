package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
)

// TestRefreshTokens checks a RefreshTokenStore.
func TestRefreshTokens(t *testing.T, newStore func(t *testing.T) codecrafter.RefreshTokenStore) {
	ctx := context.Background()
	token := func(family string, created time.Time, ttl time.Duration) codecrafter.RefreshToken {
		return codecrafter.RefreshToken{
			Hash: codecrafter.RandomToken(32), FamilyID: family, UserID: "u1",
			CreatedAt: created, ExpiresAt: created.Add(ttl),
		}
	}
	same := func(t *testing.T, got *codecrafter.RefreshToken, want codecrafter.RefreshToken) {
		t.Helper()
		if got == nil {
			t.Fatal("got no token")
		}
		if got.Hash != want.Hash || got.FamilyID != want.FamilyID || got.UserID != want.UserID {
			t.Errorf("got %+v, want %+v", got, want)
		}
		sameTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
		sameTime(t, "ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	}

	t.Run("ConsumeOnceThenReused", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		tok := token("f1", t0, time.Hour)
		noErr(t, s.CreateRefreshToken(ctx, tok))
		got, reused, err := s.ConsumeRefreshToken(ctx, tok.Hash, t0.Add(time.Minute))
		noErr(t, err)
		same(t, got, tok)
		if reused {
			t.Error("first consume: reused = true")
		}
		sameTime(t, "UsedAt of the first consume", got.UsedAt, t0.Add(time.Minute))
		for range 2 {
			got, reused, err = s.ConsumeRefreshToken(ctx, tok.Hash, t0.Add(2*time.Minute))
			noErr(t, err)
			same(t, got, tok)
			if !reused {
				t.Error("later consume: reused = false")
			}
			// The first use's time, so the caller can tell a racing
			// duplicate (within a grace) from a replay.
			sameTime(t, "UsedAt of a later consume", got.UsedAt, t0.Add(time.Minute))
		}
	})

	t.Run("Unknown", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		noErr(t, s.CreateRefreshToken(ctx, token("f1", now(), time.Hour)))
		_, _, err := s.ConsumeRefreshToken(ctx, codecrafter.RandomToken(32), now())
		wantCode(t, err, codecrafter.EUNAUTHENTICATED)
	})

	t.Run("Expired", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		// Expired when stored.
		old := token("f1", t0.Add(-2*time.Hour), time.Hour)
		noErr(t, s.CreateRefreshToken(ctx, old))
		_, _, err := s.ConsumeRefreshToken(ctx, old.Hash, t0)
		wantCode(t, err, codecrafter.EUNAUTHENTICATED)

		// Expired by the time it is used: unused, and used before.
		fresh := token("f2", t0, time.Hour)
		noErr(t, s.CreateRefreshToken(ctx, fresh))
		_, _, err = s.ConsumeRefreshToken(ctx, fresh.Hash, fresh.ExpiresAt)
		wantCode(t, err, codecrafter.EUNAUTHENTICATED)
		used := token("f3", t0, time.Hour)
		noErr(t, s.CreateRefreshToken(ctx, used))
		_, _, err = s.ConsumeRefreshToken(ctx, used.Hash, t0)
		noErr(t, err)
		_, _, err = s.ConsumeRefreshToken(ctx, used.Hash, t0.Add(2*time.Hour))
		wantCode(t, err, codecrafter.EUNAUTHENTICATED)
	})

	t.Run("RevokedFamily", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		used := token("f1", t0, time.Hour)
		unused := token("f1", t0, time.Hour)
		other := token("f2", t0, time.Hour)
		for _, tok := range []codecrafter.RefreshToken{used, unused, other} {
			noErr(t, s.CreateRefreshToken(ctx, tok))
		}
		_, _, err := s.ConsumeRefreshToken(ctx, used.Hash, t0)
		noErr(t, err)

		noErr(t, s.RevokeRefreshFamily(ctx, "f1", t0.Add(time.Hour)))
		// Revoking again, even with an earlier time, keeps it revoked.
		noErr(t, s.RevokeRefreshFamily(ctx, "f1", t0.Add(time.Minute)))
		for _, tok := range []codecrafter.RefreshToken{used, unused} {
			_, _, err := s.ConsumeRefreshToken(ctx, tok.Hash, t0.Add(2*time.Minute))
			wantCode(t, err, codecrafter.EUNAUTHENTICATED)
		}
		got, reused, err := s.ConsumeRefreshToken(ctx, other.Hash, t0.Add(2*time.Minute))
		noErr(t, err)
		same(t, got, other)
		if reused {
			t.Error("token of another family: reused = true")
		}
		// A family with no tokens can be revoked too.
		noErr(t, s.RevokeRefreshFamily(ctx, "f-empty", t0.Add(time.Hour)))
	})

	t.Run("RevokedFamiliesSince", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		before := time.Now().Add(-time.Second) // stores stamp revocations with their own clock
		for _, f := range []string{"f1", "f2"} {
			noErr(t, s.RevokeRefreshFamily(ctx, f, now().Add(time.Hour)))
		}
		got, err := s.RevokedFamiliesSince(ctx, before)
		noErr(t, err)
		slices.Sort(got)
		if !slices.Equal(got, []string{"f1", "f2"}) {
			t.Errorf("revoked since before: %v, want [f1 f2]", got)
		}
		got, err = s.RevokedFamiliesSince(ctx, time.Now().Add(time.Hour))
		noErr(t, err)
		if len(got) != 0 {
			t.Errorf("revoked since an hour from now: %v, want none", got)
		}
	})

	t.Run("RacingConsumes", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		t0 := now()
		tok := token("f1", t0, time.Hour)
		noErr(t, s.CreateRefreshToken(ctx, tok))
		reused := make([]bool, racers)
		errs := race(racers, func(i int) error {
			_, r, err := s.ConsumeRefreshToken(ctx, tok.Hash, t0)
			reused[i] = r
			return err
		})
		if c := countCodes(errs); c[""] != racers {
			t.Fatalf("racing consumes: %v (%v), want no errors", c, errs)
		}
		fresh := 0
		for _, r := range reused {
			if !r {
				fresh++
			}
		}
		if fresh != 1 {
			t.Errorf("%d of %d racing consumes got reused=false, want exactly 1", fresh, racers)
		}
	})
}
