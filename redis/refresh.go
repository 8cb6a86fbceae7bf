package redis

import (
	"context"
	"errors"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/codecrafter/codecrafter"
)

// RefreshTokenStore keeps refresh tokens in Redis: a hash per token that
// expires with it, and a key per revoked family that lasts as long as its
// tokens can. Each script touches one key, so it works on a cluster too.
type RefreshTokenStore struct {
	c      goredis.UniversalClient
	prefix string
}

var _ codecrafter.RefreshTokenStore = (*RefreshTokenStore)(nil)

// NewRefreshTokenStore returns a store whose keys start with prefix.
func NewRefreshTokenStore(c goredis.UniversalClient, prefix string) *RefreshTokenStore {
	return &RefreshTokenStore{c: c, prefix: prefix}
}

func (s *RefreshTokenStore) tokenKey(hash string) string { return s.prefix + "refresh:" + hash }
func (s *RefreshTokenStore) familyKey(id string) string  { return s.prefix + "refresh-family:" + id }

// revokedKey is a sorted set of recently revoked families scored by the
// ms they were revoked at, trimmed to RevokedHistory.
func (s *RefreshTokenStore) revokedKey() string { return s.prefix + "refresh-revoked" }

// createToken stores the token's fields unless the key exists, and makes
// it expire with the token (at once when that is past).
var createToken = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'family', ARGV[1], 'user', ARGV[2], 'created', ARGV[3], 'expires', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 1
`)

// consumeToken returns {family, user, created, expires, reused, used} of
// an unexpired token (ARGV[1] is now, in ms; used is the ms of its first
// use) and marks it used; {} when there is no such token.
var consumeToken = goredis.NewScript(`
local t = redis.call('HMGET', KEYS[1], 'family', 'user', 'created', 'expires', 'used')
if not t[1] or tonumber(t[4]) <= tonumber(ARGV[1]) then return {} end
local reused = 1
if not t[5] then
  reused = 0
  t[5] = ARGV[1]
  redis.call('HSET', KEYS[1], 'used', ARGV[1])
end
return {t[1], t[2], t[3], t[4], reused, t[5]}
`)

// revokeFamily sets the family key to expire at ARGV[1] (ms), or later if
// it is set already.
var revokeFamily = goredis.NewScript(`
if not redis.call('SET', KEYS[1], '1', 'PXAT', ARGV[1], 'NX') then
  redis.call('PEXPIREAT', KEYS[1], ARGV[1], 'GT')
end
return 1
`)

func errBadRefresh() error {
	return codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "the refresh token is invalid or expired: sign in again")
}

// CreateRefreshToken stores t unused; CONFLICT when its hash is taken.
func (s *RefreshTokenStore) CreateRefreshToken(ctx context.Context, t codecrafter.RefreshToken) error {
	created, err := createToken.Run(ctx, s.c, []string{s.tokenKey(t.Hash)},
		t.FamilyID, t.UserID, t.CreatedAt.UnixMilli(), t.ExpiresAt.UnixMilli()).Int()
	if err != nil {
		return redisErr(err)
	}
	if created == 0 {
		return codecrafter.Errorf(codecrafter.ECONFLICT, "refresh token already exists")
	}
	return nil
}

// ConsumeRefreshToken marks the token used in one script, so exactly one
// caller sees it unused; then it checks the family is not revoked.
func (s *RefreshTokenStore) ConsumeRefreshToken(ctx context.Context, hash string, now time.Time) (*codecrafter.RefreshToken, bool, error) {
	res, err := consumeToken.Run(ctx, s.c, []string{s.tokenKey(hash)}, now.UnixMilli()).Slice()
	if err != nil {
		return nil, false, redisErr(err)
	}
	if len(res) != 6 {
		return nil, false, errBadRefresh()
	}
	family, _ := res[0].(string)
	user, _ := res[1].(string)
	created, err1 := strconv.ParseInt(toString(res[2]), 10, 64)
	expires, err2 := strconv.ParseInt(toString(res[3]), 10, 64)
	reused, _ := res[4].(int64)
	used, err3 := strconv.ParseInt(toString(res[5]), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, false, codecrafter.Wrap(err, codecrafter.EINTERNAL, "corrupt refresh token record")
	}
	revoked, err := s.c.Exists(ctx, s.familyKey(family)).Result()
	if err != nil {
		return nil, false, redisErr(err)
	}
	if revoked > 0 {
		return nil, false, errBadRefresh()
	}
	return &codecrafter.RefreshToken{
		Hash: hash, FamilyID: family, UserID: user,
		CreatedAt: time.UnixMilli(created).UTC(), ExpiresAt: time.UnixMilli(expires).UTC(),
		UsedAt: time.UnixMilli(used).UTC(),
	}, reused == 1, nil
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}

// RevokeRefreshFamily marks the family revoked until until; revoking it
// again only ever extends that.
func (s *RefreshTokenStore) RevokeRefreshFamily(ctx context.Context, familyID string, until time.Time) error {
	if !until.After(time.Now()) {
		return nil // its tokens have expired already
	}
	if err := revokeFamily.Run(ctx, s.c, []string{s.familyKey(familyID)}, until.UnixMilli()).Err(); err != nil {
		return redisErr(err)
	}
	// A key of its own (not in the script), so it works on a cluster.
	now := time.Now()
	_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.ZAdd(ctx, s.revokedKey(), goredis.Z{Score: float64(now.UnixMilli()), Member: familyID})
		p.ZRemRangeByScore(ctx, s.revokedKey(), "-inf", "("+strconv.FormatInt(now.Add(-codecrafter.RevokedHistory).UnixMilli(), 10))
		p.PExpire(ctx, s.revokedKey(), codecrafter.RevokedHistory)
		return nil
	})
	if err != nil {
		return redisErr(err)
	}
	return nil
}

// RevokedFamiliesSince returns the families revoked at or after since,
// within the last RevokedHistory.
func (s *RefreshTokenStore) RevokedFamiliesSince(ctx context.Context, since time.Time) ([]string, error) {
	ids, err := s.c.ZRangeByScore(ctx, s.revokedKey(), &goredis.ZRangeBy{
		Min: strconv.FormatInt(since.UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, redisErr(err)
	}
	return ids, nil
}
