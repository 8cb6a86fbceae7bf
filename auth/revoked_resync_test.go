package auth_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/auth"
	"github.com/codecrafter/codecrafter/bustest"
)

// TestRevocationsResyncWhenBusEnds: when the bus ends a replica's
// subscription (its connection dropped) and a login is revoked before it
// is back, the replica re-subscribes and reads the revocation from the
// store.
func TestRevocationsResyncWhenBusEnds(t *testing.T) {
	t.Parallel()
	e := setup(t)
	bus := bustest.NewFlaky(e.bus)
	cfg := e.cfg
	cfg.Bus = bus
	replica, err := auth.New(cfg, e.db, e.db, e.lims, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	replica.SetClock(e.clock.Now)
	seen := make(chan string, 4)
	auth.OnRevoked(replica, func(f string) { seen <- f })
	stop, err := replica.WatchRevocations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	p, _ := e.register(t)
	bus.Drop()
	if err := e.svc.Logout(context.Background(), p.RefreshToken); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bus.Refused: // the replica tried to subscribe again while down
	case <-time.After(10 * time.Second):
		t.Fatal("no re-subscription")
	}
	bus.Up()
	select {
	case <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("the replica never learnt of the logout")
	}
	_, err = replica.Verify(p.AccessToken)
	wantCode(t, err, codecrafter.EUNAUTHENTICATED)
}
