// Package presencetest is the conformance suite every codecrafter.Presence
// passes: one replica's holds and events, and, for registries shared by
// replicas, holds on several and a replica that dies.
package presencetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
)

// Deployment is one test's bus and the registries of its replicas.
type Deployment struct {
	Bus codecrafter.Bus
	// Replica returns a registry announcing on Bus, stopped when the test
	// ends. A single-replica adapter returns the same one every time.
	Replica func(t *testing.T) codecrafter.Presence
	// Kill stops p as a crashed replica stops: no more heartbeats and no
	// clean-up. Nil for single-replica adapters, which run Test only.
	Kill func(t *testing.T, p codecrafter.Presence)
}

// New returns a deployment whose topics and keys no other test sees; ttl
// is how long a dead replica's holds last (0: the adapter's default).
type New func(t *testing.T, ttl time.Duration) Deployment

// timeout bounds every wait for an event; deadTimeout the wait for a dead
// replica's users to expire (short TTLs, a loaded machine).
const (
	timeout     = 10 * time.Second
	deadTimeout = 60 * time.Second
	shortTTL    = 2 * time.Second
)

// Test runs the suite of one replica's registry; TestReplicas is the rest,
// for registries that replicas share.
func Test(t *testing.T, newDeployment New) {
	t.Run("HoldRelease", func(t *testing.T) {
		t.Parallel()
		d := newDeployment(t, 0)
		p := d.Replica(t)
		events := watch(t, d.Bus, "s")
		release := hold(t, p, "s", "u")
		expect(t, events, "u", true)
		online(t, p, "s", "u")
		online(t, p, "other")
		release()
		expect(t, events, "u", false)
		online(t, p, "s")
		release() // a second call does nothing
		hold(t, p, "s", "marker")
		expect(t, events, "marker", true)
	})

	t.Run("TwoHoldsOneUser", func(t *testing.T) {
		t.Parallel()
		d := newDeployment(t, 0)
		p := d.Replica(t)
		events := watch(t, d.Bus, "s")
		r1 := hold(t, p, "s", "u")
		expect(t, events, "u", true)
		r2 := hold(t, p, "s", "u")
		r1()
		online(t, p, "s", "u")
		hold(t, p, "s", "marker") // no event for u came before it
		expect(t, events, "marker", true)
		r2()
		expect(t, events, "u", false)
		online(t, p, "s", "marker")
	})

	t.Run("UsersAndSessionsApart", func(t *testing.T) {
		t.Parallel()
		d := newDeployment(t, 0)
		p := d.Replica(t)
		e1, e2 := watch(t, d.Bus, "s1"), watch(t, d.Bus, "s2")
		ru := hold(t, p, "s1", "u")
		expect(t, e1, "u", true)
		hold(t, p, "s1", "v")
		expect(t, e1, "v", true)
		hold(t, p, "s2", "u")
		expect(t, e2, "u", true)
		online(t, p, "s1", "u", "v")
		ru()
		expect(t, e1, "u", false)
		online(t, p, "s1", "v")
		online(t, p, "s2", "u")
	})

}

// TestReplicas runs the suite of registries that replicas share: holds
// on several replicas, a replica that closes, one that dies. Its
// deployments must set Kill, and their replicas must have a Close method.
func TestReplicas(t *testing.T, newDeployment New) {
	t.Run("HeldOnTwoReplicas", func(t *testing.T) {
		t.Parallel()
		d := shared(t, newDeployment, 0)
		a, b := d.Replica(t), d.Replica(t)
		events := watch(t, d.Bus, "s")
		ra := hold(t, a, "s", "u")
		expect(t, events, "u", true)
		online(t, b, "s", "u") // b knows without holding
		rb := hold(t, b, "s", "u")
		ra()
		online(t, a, "s", "u")
		hold(t, a, "s", "marker") // u came online once and did not go
		expect(t, events, "marker", true)
		rb()
		expect(t, events, "u", false)
		online(t, b, "s", "marker")
	})

	t.Run("CloseReleases", func(t *testing.T) {
		t.Parallel()
		d := shared(t, newDeployment, 0)
		a, b := d.Replica(t), d.Replica(t)
		closer, ok := a.(interface{ Close() })
		if !ok {
			t.Fatalf("%T has no Close method", a)
		}
		events := watch(t, d.Bus, "s")
		release := hold(t, a, "s", "u")
		expect(t, events, "u", true)
		hold(t, a, "s", "v")
		expect(t, events, "v", true)
		hold(t, b, "s", "v")
		closer.Close()
		expect(t, events, "u", false) // and not v, held on b
		online(t, b, "s", "v")
		release() // after Close: nothing
		hold(t, b, "s", "marker")
		expect(t, events, "marker", true)
	})

	t.Run("DeadReplicaExpires", func(t *testing.T) {
		t.Parallel()
		d := shared(t, newDeployment, shortTTL)
		dead, alive := d.Replica(t), d.Replica(t)
		events := watch(t, d.Bus, "s")
		hold(t, dead, "s", "u")
		expect(t, events, "u", true)
		hold(t, dead, "s", "both")
		expect(t, events, "both", true)
		hold(t, alive, "s", "both")
		hold(t, alive, "s", "v")
		expect(t, events, "v", true)
		d.Kill(t, dead)
		// Only u goes: alive keeps heartbeating both and v.
		expectWithin(t, events, "u", false, deadTimeout)
		online(t, alive, "s", "both", "v")
		hold(t, alive, "s", "marker")
		expect(t, events, "marker", true)
	})
}

// shared makes a deployment for TestReplicas, which needs Kill.
func shared(t *testing.T, newDeployment New, ttl time.Duration) Deployment {
	t.Helper()
	d := newDeployment(t, ttl)
	if d.Kill == nil {
		t.Fatal("TestReplicas needs a deployment with Kill")
	}
	return d
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), deadTimeout+timeout)
	t.Cleanup(cancel)
	return c
}

// watch subscribes to the session's presence changes.
func watch(t *testing.T, bus codecrafter.Bus, sessionID string) <-chan []byte {
	t.Helper()
	ch, err := bus.Subscribe(ctx(t), codecrafter.PresenceTopic(sessionID))
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return ch
}

func hold(t *testing.T, p codecrafter.Presence, sessionID, userID string) func() {
	t.Helper()
	release, err := p.Hold(ctx(t), sessionID, userID)
	if err != nil {
		t.Fatalf("Hold(%s, %s): %v", sessionID, userID, err)
	}
	return release
}

func expect(t *testing.T, events <-chan []byte, userID string, on bool) {
	t.Helper()
	expectWithin(t, events, userID, on, timeout)
}

// expectWithin fails unless the next event says userID went on (or off).
func expectWithin(t *testing.T, events <-chan []byte, userID string, on bool, d time.Duration) {
	t.Helper()
	select {
	case b := <-events:
		c, err := codecrafter.DecodePresenceChange(b)
		if err != nil {
			t.Fatal(err)
		}
		if c.UserID != userID || c.Online != on {
			t.Fatalf("got %v, want %s online=%t", c, userID, on)
		}
	case <-time.After(d):
		t.Fatalf("no event within %v; want %s online=%t", d, userID, on)
	}
}

// online fails unless Online lists exactly users.
func online(t *testing.T, p codecrafter.Presence, sessionID string, users ...string) {
	t.Helper()
	got, err := p.Online(ctx(t), sessionID)
	if err != nil {
		t.Fatalf("Online: %v", err)
	}
	slices.Sort(got)
	slices.Sort(users)
	if !slices.Equal(got, users) && !(len(got) == 0 && len(users) == 0) {
		t.Fatalf("Online(%s) = %v, want %v", sessionID, got, users)
	}
}
