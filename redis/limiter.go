package redis

import (
	"context"
	"errors"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/codecrafter/codecrafter"
)

var _ codecrafter.Limiter = (*Limiter)(nil)

// Limiter counts failures per key in fixed windows shared by every
// replica: one counter per key that expires when its window ends.
type Limiter struct {
	client *goredis.Client
	prefix string
	max    int64
	window time.Duration
}

// NewLimiter returns a limiter that blocks a key for the rest of a window
// once max failures fell in it; a window starts at a key's first failure.
// Counters are stored under prefix+key.
func NewLimiter(c *goredis.Client, prefix string, max int, window time.Duration) *Limiter {
	return &Limiter{client: c, prefix: prefix, max: int64(max), window: window}
}

// failScript counts a failure and starts the window on the first one, in
// one step so that no counter is left without an expiry.
var failScript = goredis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

// Fail counts one failure for key.
func (l *Limiter) Fail(ctx context.Context, key string) error {
	if err := failScript.Run(ctx, l.client, []string{l.prefix + key}, l.window.Milliseconds()).Err(); err != nil {
		return redisErr(err)
	}
	return nil
}

// Blocked returns how long key stays blocked, 0 when it is not.
func (l *Limiter) Blocked(ctx context.Context, key string) (time.Duration, error) {
	var count *goredis.StringCmd
	var ttl *goredis.DurationCmd
	_, err := l.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		count = p.Get(ctx, l.prefix+key)
		ttl = p.PTTL(ctx, l.prefix+key)
		return nil
	})
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, redisErr(err)
	}
	n, err := count.Int64()
	if err != nil {
		return 0, redisErr(err)
	}
	if n < l.max || ttl.Val() <= 0 {
		return 0, nil
	}
	return ttl.Val(), nil
}

// Reset forgets key's failures.
func (l *Limiter) Reset(ctx context.Context, key string) error {
	if err := l.client.Del(ctx, l.prefix+key).Err(); err != nil {
		return redisErr(err)
	}
	return nil
}
