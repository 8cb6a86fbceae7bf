package mongo_test

import (
	"context"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
)

// TestSweepRefreshTokens: expired tokens and family records go, in more
// than one batch, and live ones stay; storing a token (on the login path)
// sweeps nothing itself.
func TestSweepRefreshTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := mongotest.New(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	create := func(family string, expires time.Time) codecrafter.RefreshToken {
		t.Helper()
		tok := codecrafter.RefreshToken{Hash: codecrafter.RandomToken(16), FamilyID: family, UserID: "u", CreatedAt: expires.Add(-time.Hour), ExpiresAt: expires}
		if err := db.CreateRefreshToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	const expired = 250 // more than one sweep batch
	for range expired {
		create("old", now.Add(-time.Minute))
	}
	live := create("live", now.Add(time.Hour))
	if err := db.RevokeRefreshFamily(ctx, "gone", now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeRefreshFamily(ctx, "revoked", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	revoked := create("revoked", now.Add(time.Hour))

	n, err := db.SweepRefreshTokens(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != expired+1 {
		t.Errorf("swept %d records, want %d (the expired tokens and one family)", n, expired+1)
	}
	if n, err := db.SweepRefreshTokens(ctx, now); err != nil || n != 0 {
		t.Errorf("second sweep: %d, %v; want nothing left", n, err)
	}
	if _, _, err := db.ConsumeRefreshToken(ctx, live.Hash, now); err != nil {
		t.Errorf("live token after the sweep: %v", err)
	}
	if _, _, err := db.ConsumeRefreshToken(ctx, revoked.Hash, now); !codecrafter.IsCode(err, codecrafter.EUNAUTHENTICATED) {
		t.Errorf("token of a revoked family after the sweep: %v, want UNAUTHENTICATED", err)
	}

	stop := db.StartRefreshSweeper(time.Hour)
	stop() // returns once its goroutine ended (TestMain checks for leaks)
}
