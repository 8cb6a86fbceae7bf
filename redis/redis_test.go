package redis_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/bustest"
	"github.com/codecrafter/codecrafter/internal/testenv"
	"github.com/codecrafter/codecrafter/limitertest"
	"github.com/codecrafter/codecrafter/presencetest"
	"github.com/codecrafter/codecrafter/redis"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// client connects to the test Redis; callers namespace their keys.
func client(t *testing.T) *goredis.Client {
	t.Helper()
	c, err := redis.Open(testenv.Context(t, 10*time.Second), testenv.RedisURL(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// prefix returns a key prefix no other test uses.
func prefix() string { return "test:" + codecrafter.NewID() + ":" }

func TestOpen(t *testing.T) {
	t.Parallel()
	client(t)
	for _, url := range []string{"not a url", "redis://127.0.0.1:1/0"} {
		c, err := redis.Open(testenv.Context(t, 10*time.Second), url)
		if !codecrafter.IsCode(err, codecrafter.EUNAVAILABLE) {
			t.Errorf("Open(%q) = %v, %v; want UNAVAILABLE", url, c, err)
		}
	}
}

func TestBus(t *testing.T) {
	t.Parallel()
	bustest.Test(t, func(t *testing.T) codecrafter.Bus {
		return redis.NewBus(client(t), prefix(), slog.New(slog.DiscardHandler))
	})
}

// TestBusAcrossClients checks that events reach subscribers on another
// connection, as they would on another replica.
func TestBusAcrossClients(t *testing.T) {
	t.Parallel()
	p := prefix()
	pub := redis.NewBus(client(t), p, slog.New(slog.DiscardHandler))
	sub := redis.NewBus(client(t), p, slog.New(slog.DiscardHandler))
	events, err := sub.Subscribe(testenv.Context(t, time.Minute), "t")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), "t", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-events:
		if string(got) != "hi" {
			t.Fatalf("got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	limitertest.Test(t, func(t *testing.T, max int, window time.Duration) codecrafter.Limiter {
		c := client(t)
		p := prefix()
		t.Cleanup(func() { deleteKeys(t, c, p) })
		return redis.NewLimiter(c, p, max, window)
	})
}

// deleteKeys removes the keys a test left under prefix.
func deleteKeys(t *testing.T, c *goredis.Client, prefix string) {
	ctx := context.Background()
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err == nil && len(keys) > 0 {
		err = c.Del(ctx, keys...).Err()
	}
	if err != nil {
		t.Errorf("deleting test keys: %v", err)
	}
}

// TestBusConnectionLoss kills the bus's pub/sub connection on the server:
// its subscriptions end, and new ones work on a new connection.
func TestBusConnectionLoss(t *testing.T) {
	name := "test-" + codecrafter.NewID() // names only this test's connections
	bustest.TestConnectionLoss(t, func(t *testing.T) codecrafter.Bus {
		c, err := redis.Open(testenv.Context(t, 10*time.Second), testenv.RedisURL(t)+"?client_name="+name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return redis.NewBus(c, prefix(), slog.New(slog.DiscardHandler))
	}, func(t *testing.T, _ codecrafter.Bus) {
		c := client(t)
		killed, err := c.ClientKillByFilter(context.Background(), "ID", pubsubID(t, c, name)).Result()
		if err != nil || killed != 1 {
			t.Fatalf("CLIENT KILL = %d, %v", killed, err)
		}
	})
}

// pubsubID returns the id of the subscribed connection named name (only
// this test's connections carry its name).
func pubsubID(t *testing.T, c *goredis.Client, name string) string {
	t.Helper()
	list, err := c.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " name="+name+" ") && !strings.Contains(line, " sub=0 ") {
			for _, f := range strings.Fields(line) {
				if id, ok := strings.CutPrefix(f, "id="); ok {
					return id
				}
			}
		}
	}
	t.Fatalf("no subscribed connection named %s in:\n%s", name, list)
	return ""
}

func TestPresence(t *testing.T) {
	t.Parallel()
	deployment := func(t *testing.T, ttl time.Duration) presencetest.Deployment {
		p := prefix()
		clients := map[codecrafter.Presence]*goredis.Client{}
		return presencetest.Deployment{
			Bus: redis.NewBus(client(t), p+"bus:", slog.New(slog.DiscardHandler)),
			Replica: func(t *testing.T) codecrafter.Presence {
				c := client(t)
				bus := redis.NewBus(c, p+"bus:", slog.New(slog.DiscardHandler))
				r := redis.NewPresence(c, p+"presence:", bus, redis.PresenceOptions{TTL: ttl})
				t.Cleanup(r.Close)
				clients[r] = c
				return r
			},
			// A dead replica's connection is gone: no heartbeat, no clean-up.
			Kill: func(t *testing.T, r codecrafter.Presence) { clients[r].Close() },
		}
	}
	t.Run("OneReplica", func(t *testing.T) { presencetest.Test(t, deployment) })
	t.Run("Replicas", func(t *testing.T) { presencetest.TestReplicas(t, deployment) })
}

// TestPresenceHeartbeatRestores: a live replica's hold that was swept
// (the replica was too slow to heartbeat in time) comes back with its
// next heartbeat, announced online again.
func TestPresenceHeartbeatRestores(t *testing.T) {
	t.Parallel()
	p, c := prefix(), client(t)
	bus := redis.NewBus(c, p+"bus:", slog.New(slog.DiscardHandler))
	r := redis.NewPresence(c, p+"presence:", bus, redis.PresenceOptions{TTL: 2 * time.Second})
	t.Cleanup(r.Close)
	ctx := testenv.Context(t, time.Minute)
	events, err := bus.Subscribe(ctx, codecrafter.PresenceTopic("s"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Hold(ctx, "s", "u"); err != nil {
		t.Fatal(err)
	}
	for range 2 { // held, then restored
		select {
		case b := <-events:
			if got, err := codecrafter.DecodePresenceChange(b); err != nil || got.UserID != "u" || !got.Online {
				t.Fatalf("got %s, %v; want u online", b, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no online event")
		}
		if err := c.Del(ctx, p+"presence:s:s").Err(); err != nil { // as a sweep would
			t.Fatal(err)
		}
	}
}

// TestPresenceKeysExpire: a session's presence hash expires by itself
// (three TTLs after the last heartbeat) should every replica die for good.
func TestPresenceKeysExpire(t *testing.T) {
	t.Parallel()
	p, c := prefix(), client(t)
	r := redis.NewPresence(c, p+"presence:", redis.NewBus(c, p+"bus:", slog.New(slog.DiscardHandler)), redis.PresenceOptions{TTL: time.Minute})
	t.Cleanup(r.Close)
	ctx := testenv.Context(t, time.Minute)
	if _, err := r.Hold(ctx, "s", "u"); err != nil {
		t.Fatal(err)
	}
	if ttl, err := c.PTTL(ctx, p+"presence:s:s").Result(); err != nil || ttl <= 2*time.Minute || ttl > 3*time.Minute {
		t.Fatalf("PTTL = %v, %v; want about 3m", ttl, err)
	}
}
