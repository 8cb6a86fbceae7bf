// Package redis holds the Redis adapters: a Bus over pub/sub, a Limiter
// over counters with expiry, and a RefreshTokenStore.
package redis

import (
	"context"

	goredis "github.com/redis/go-redis/v9"

	"github.com/codecrafter/codecrafter"
)

// Open connects to the Redis at rawURL (redis://[user:pass@]host:port/db)
// and checks that it answers.
func Open(ctx context.Context, rawURL string) (*goredis.Client, error) {
	opts, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "invalid Redis URL")
	}
	c := goredis.NewClient(opts)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, redisErr(err)
	}
	return c, nil
}

// redisErr translates a driver error into an UNAVAILABLE *Error.
func redisErr(err error) error {
	return codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "Redis unavailable")
}
