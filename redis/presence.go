package redis

import (
	"context"
	"log/slog"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/codecrafter/codecrafter"
)

// Default intervals of Presence: a replica that dies takes its users
// offline within PresenceTTL plus one heartbeat.
const (
	DefaultPresenceTTL       = 20 * time.Second
	DefaultPresenceHeartbeat = 5 * time.Second
)

// PresenceOptions tune a Presence. Zero fields take the defaults.
type PresenceOptions struct {
	ReplicaID string        // default: a new id
	TTL       time.Duration // how long a replica's holds outlive its last heartbeat
	Heartbeat time.Duration // how often holds are refreshed and expired ones swept (default TTL/4)
	Logger    *slog.Logger
}

var _ codecrafter.Presence = (*Presence)(nil)

// Presence is presence shared by every replica through Redis. A replica
// counts its holds in memory and keeps one hash field per held user,
// "<user>|<replica>" in the session's hash, whose value is when it expires
// (Redis time, ms); one heartbeat loop refreshes them. A user is online
// while any of their fields is unexpired. Every change of that global
// state is decided and published (on the bus's PresenceTopic) inside one
// Lua script, so changes from different replicas cannot be reordered. A
// sweep, run by one replica at a time under a lock, removes the fields of
// dead replicas and publishes their users going offline.
type Presence struct {
	client   *goredis.Client
	prefix   string
	channels string // the bus's channel prefix
	replica  string
	ttl      time.Duration
	beat     time.Duration
	log      *slog.Logger

	mu     sync.Mutex                // held while talking to Redis, so a replica's changes go out in order
	holds  map[string]map[string]int // session -> user -> holds on this replica
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

// NewPresence returns a replica's registry storing under prefix and
// publishing on bus's channels. Close stops it.
func NewPresence(c *goredis.Client, prefix string, bus *Bus, opts PresenceOptions) *Presence {
	if opts.TTL <= 0 {
		opts.TTL = DefaultPresenceTTL
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = opts.TTL / 4
	}
	if opts.ReplicaID == "" {
		opts.ReplicaID = codecrafter.NewID()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Presence{
		client: c, prefix: prefix, channels: bus.prefix, replica: opts.ReplicaID,
		ttl: opts.TTL, beat: opts.Heartbeat, log: opts.Logger,
		holds: map[string]map[string]int{},
		stop:  make(chan struct{}), done: make(chan struct{}),
	}
	go p.loop()
	return p
}

func (p *Presence) sessionKey(sessionID string) string { return p.prefix + "s:" + sessionID }
func (p *Presence) activeKey() string                  { return p.prefix + "active" }
func (p *Presence) field(userID string) string         { return userID + "|" + p.replica }

// keys and the first args every script takes.
func (p *Presence) keys(sessionID string) []string {
	return []string{p.sessionKey(sessionID), p.activeKey()}
}
func (p *Presence) args(sessionID string, rest ...any) []any {
	return append([]any{p.channels + codecrafter.PresenceTopic(sessionID), sessionID, p.ttl.Milliseconds()}, rest...)
}

// presenceLib is shared by the scripts: KEYS[1] the session's hash, KEYS[2]
// the set of sessions with fields; ARGV[1] the channel, ARGV[2] the
// session, ARGV[3] the TTL in ms.
const presenceLib = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function user(f) return string.match(f, '^(.*)|[^|]*$') end
local function live(u)
  local kv = redis.call('HGETALL', KEYS[1])
  for i = 1, #kv, 2 do
    if user(kv[i]) == u and tonumber(kv[i+1]) > now then return true end
  end
  return false
end
local function announce(u, online)
  redis.call('PUBLISH', ARGV[1], cjson.encode({sessionId = ARGV[2], userId = u, online = online}))
end
local function put(f)
  local u = user(f)
  local was = live(u)
  redis.call('HSET', KEYS[1], f, now + tonumber(ARGV[3]))
  -- Should every replica be gone for good, the hash goes too.
  local keep = 3 * tonumber(ARGV[3])
  if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
  redis.call('SADD', KEYS[2], ARGV[2])
  if not was then announce(u, true) end
end
local function tidy()
  if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
end
`

// holdScript adds (or refreshes) fields ARGV[4..], announcing users not
// online before.
var holdScript = goredis.NewScript(presenceLib + `
for i = 4, #ARGV do put(ARGV[i]) end
return 1`)

// releaseScript removes field ARGV[4], announcing its user offline unless
// another live field of theirs remains.
var releaseScript = goredis.NewScript(presenceLib + `
local u = user(ARGV[4])
if redis.call('HDEL', KEYS[1], ARGV[4]) == 1 and not live(u) then announce(u, false) end
tidy()
return 1`)

// sweepScript removes expired fields (their replica stopped heartbeating),
// announcing users with no live field left.
var sweepScript = goredis.NewScript(presenceLib + `
local kv = redis.call('HGETALL', KEYS[1])
local gone = {}
for i = 1, #kv, 2 do
  if tonumber(kv[i+1]) <= now then
    redis.call('HDEL', KEYS[1], kv[i])
    gone[user(kv[i])] = true
  end
end
for u in pairs(gone) do
  if not live(u) then announce(u, false) end
end
tidy()
return 1`)

// onlineScript returns the users with a live field.
var onlineScript = goredis.NewScript(presenceLib + `
local kv = redis.call('HGETALL', KEYS[1])
local seen, out = {}, {}
for i = 1, #kv, 2 do
  local u = user(kv[i])
  if tonumber(kv[i+1]) > now and not seen[u] then seen[u] = true; out[#out+1] = u end
end
return out`)

// Hold marks userID online in sessionID until release is called.
func (p *Presence) Hold(ctx context.Context, sessionID, userID string) (func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, codecrafter.Errorf(codecrafter.EUNAVAILABLE, "presence is closed")
	}
	users := p.holds[sessionID]
	if users[userID] == 0 {
		err := holdScript.Run(ctx, p.client, p.keys(sessionID), p.args(sessionID, p.field(userID))...).Err()
		if err != nil {
			return nil, redisErr(err)
		}
		if users == nil {
			users = map[string]int{}
			p.holds[sessionID] = users
		}
	}
	users[userID]++
	var once sync.Once
	return func() {
		once.Do(func() { p.release(context.WithoutCancel(ctx), sessionID, userID) })
	}, nil
}

func (p *Presence) release(ctx context.Context, sessionID, userID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	users := p.holds[sessionID]
	if users[userID] == 0 { // Close released it already
		return
	}
	if users[userID]--; users[userID] > 0 {
		return
	}
	delete(users, userID)
	if len(users) == 0 {
		delete(p.holds, sessionID)
	}
	p.remove(ctx, sessionID, userID)
}

// remove deletes this replica's field; on failure it expires by itself.
func (p *Presence) remove(ctx context.Context, sessionID, userID string) {
	err := releaseScript.Run(ctx, p.client, p.keys(sessionID), p.args(sessionID, p.field(userID))...).Err()
	if err != nil {
		p.log.WarnContext(ctx, "presence release; it expires instead", "session", sessionID, "user", userID, "err", err)
	}
}

// Online returns the users online in sessionID on any replica.
func (p *Presence) Online(ctx context.Context, sessionID string) ([]string, error) {
	users, err := onlineScript.Run(ctx, p.client, p.keys(sessionID), p.args(sessionID)...).StringSlice()
	if err != nil {
		return nil, redisErr(err)
	}
	return users, nil
}

// loop refreshes this replica's fields and sweeps every heartbeat.
func (p *Presence) loop() {
	defer close(p.done)
	tick := time.NewTicker(p.beat)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.beat)
		p.heartbeat(ctx)
		p.sweep(ctx)
		cancel()
	}
}

// heartbeat refreshes every field of this replica in one round trip. A
// field swept meanwhile (this replica was too slow) comes back, and its
// user online again.
func (p *Presence) heartbeat(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.holds) == 0 {
		return
	}
	// Loaded first (Redis may have restarted), so the pipeline sends hashes.
	if err := holdScript.Load(ctx, p.client).Err(); err != nil {
		p.log.Warn("presence heartbeat", "err", err)
		return
	}
	pipe := p.client.Pipeline()
	for sid, users := range p.holds {
		fields := make([]any, 0, len(users))
		for u := range users {
			fields = append(fields, p.field(u))
		}
		holdScript.EvalSha(ctx, pipe, p.keys(sid), p.args(sid, fields...)...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		p.log.Warn("presence heartbeat", "err", err)
	}
}

// sweep expires dead replicas' fields, once per heartbeat for all
// replicas: whoever takes the lock does it.
func (p *Presence) sweep(ctx context.Context) {
	ok, err := p.client.SetNX(ctx, p.prefix+"sweep", p.replica, p.beat*9/10).Result()
	if err != nil || !ok {
		return
	}
	sessions, err := p.client.SMembers(ctx, p.activeKey()).Result()
	if err != nil {
		p.log.Warn("presence sweep", "err", err)
		return
	}
	if err := sweepScript.Load(ctx, p.client).Err(); err != nil {
		p.log.Warn("presence sweep", "err", err)
		return
	}
	pipe := p.client.Pipeline()
	for _, sid := range sessions {
		sweepScript.EvalSha(ctx, pipe, p.keys(sid), p.args(sid)...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		p.log.Warn("presence sweep", "err", err)
	}
}

// Close stops the heartbeat and removes this replica's holds, taking
// offline the users held nowhere else.
func (p *Presence) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	<-p.done

	p.mu.Lock()
	defer p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for sid, users := range p.holds {
		for u := range users {
			p.remove(ctx, sid, u)
		}
	}
	clear(p.holds)
}
