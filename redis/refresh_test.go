package redis_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/testenv"
	"github.com/codecrafter/codecrafter/redis"
	"github.com/codecrafter/codecrafter/storetest"
)

// refreshStore returns a store on the test Redis under a prefix of its
// own, whose keys are deleted when t ends.
func refreshStore(t *testing.T) (*redis.RefreshTokenStore, *goredis.Client, string) {
	t.Helper()
	opts, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opts)
	prefix := "test:refresh:" + codecrafter.NewID() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		c.Close()
	})
	return redis.NewRefreshTokenStore(c, prefix), c, prefix
}

func TestRefreshTokens(t *testing.T) {
	t.Parallel()
	storetest.TestRefreshTokens(t, func(t *testing.T) codecrafter.RefreshTokenStore {
		s, _, _ := refreshStore(t)
		return s
	})
}

// Keys live as long as they matter, and no longer.
func TestRefreshTokenKeysExpire(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t, 10*time.Second)
	s, c, prefix := refreshStore(t)
	now := time.Now()
	tok := codecrafter.RefreshToken{Hash: "h1", FamilyID: "f1", UserID: "u1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateRefreshToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	wantTTL(t, c, prefix+"refresh:h1", time.Hour)
	if err := s.CreateRefreshToken(ctx, tok); codecrafter.ErrorCode(err) != codecrafter.ECONFLICT {
		t.Errorf("second create: %v, want CONFLICT", err)
	}
	if _, _, err := s.ConsumeRefreshToken(ctx, "h1", now); err != nil {
		t.Fatal(err)
	}
	wantTTL(t, c, prefix+"refresh:h1", time.Hour) // consuming keeps the expiry

	if err := s.RevokeRefreshFamily(ctx, "f1", now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeRefreshFamily(ctx, "f1", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantTTL(t, c, prefix+"refresh-family:f1", 2*time.Hour)
	wantTTL(t, c, prefix+"refresh-revoked", codecrafter.RevokedHistory) // the recent revocations

	// Already expired: nothing kept.
	old := codecrafter.RefreshToken{Hash: "h2", FamilyID: "f2", CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}
	if err := s.CreateRefreshToken(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeRefreshFamily(ctx, "f2", now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, prefix+"refresh:h2", prefix+"refresh-family:f2").Val(); n != 0 {
		t.Errorf("%d keys kept for expired records, want 0", n)
	}
}

func wantTTL(t *testing.T, c *goredis.Client, key string, want time.Duration) {
	t.Helper()
	got, err := c.PTTL(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got > want || got < want-time.Minute {
		t.Errorf("TTL of %s = %v, want about %v", key, got, want)
	}
}

func TestRefreshTokensUnavailable(t *testing.T) {
	t.Parallel()
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer c.Close()
	s := redis.NewRefreshTokenStore(c, "x:")
	ctx := testenv.Context(t, 10*time.Second)
	now := time.Now()
	err := s.CreateRefreshToken(ctx, codecrafter.RefreshToken{Hash: "h", ExpiresAt: now.Add(time.Hour)})
	if codecrafter.ErrorCode(err) != codecrafter.EUNAVAILABLE {
		t.Errorf("CreateRefreshToken = %v, want UNAVAILABLE", err)
	}
	if _, _, err := s.ConsumeRefreshToken(ctx, "h", now); codecrafter.ErrorCode(err) != codecrafter.EUNAVAILABLE {
		t.Errorf("ConsumeRefreshToken = %v, want UNAVAILABLE", err)
	}
	if err := s.RevokeRefreshFamily(ctx, "f", now.Add(time.Hour)); codecrafter.ErrorCode(err) != codecrafter.EUNAVAILABLE {
		t.Errorf("RevokeRefreshFamily = %v, want UNAVAILABLE", err)
	}
}
