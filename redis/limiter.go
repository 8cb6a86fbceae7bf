package redis

import (
	"context"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/codecrafter/codecrafter"
)

var _ codecrafter.Limiter = (*Limiter)(nil)

// Limiter counts attempts per key in fixed windows shared by every
// replica: one counter per key that expires when its window ends.
type Limiter struct {
	client *goredis.Client
	prefix string
	max    int64
	window time.Duration
}

// NewLimiter returns a limiter that allows max attempts per key in a
// window and refuses the rest until it ends. Counters are stored under
// prefix+key.
func NewLimiter(c *goredis.Client, prefix string, max int, window time.Duration) *Limiter {
	return &Limiter{client: c, prefix: prefix, max: int64(max), window: window}
}

// takeScript counts an attempt, starts the window on the first one and
// returns 0 within the limit, else the window's remaining ms: one step, so
// no two callers see the same count and no counter lacks an expiry.
var takeScript = goredis.NewScript(`
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
if n <= tonumber(ARGV[2]) then return 0 end
return ttl`)

// refundScript takes back an attempt of a live counter, never creating one.
var refundScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) and redis.call('DECR', KEYS[1]) <= 0 then
  redis.call('DEL', KEYS[1])
end
return 1`)

// Take counts one attempt for key and returns how long it stays refused,
// 0 when the attempt is within the limit.
func (l *Limiter) Take(ctx context.Context, key string) (time.Duration, error) {
	ms, err := takeScript.Run(ctx, l.client, []string{l.prefix + key}, l.window.Milliseconds(), l.max).Int64()
	if err != nil {
		return 0, redisErr(err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// Refund gives back one attempt of key.
func (l *Limiter) Refund(ctx context.Context, key string) error {
	if err := refundScript.Run(ctx, l.client, []string{l.prefix + key}).Err(); err != nil {
		return redisErr(err)
	}
	return nil
}

// Reset forgets key's attempts.
func (l *Limiter) Reset(ctx context.Context, key string) error {
	if err := l.client.Del(ctx, l.prefix+key).Err(); err != nil {
		return redisErr(err)
	}
	return nil
}
