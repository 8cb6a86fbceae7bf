package auth_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/auth"
)

// TestRevocationsResyncWhenBusEnds: when the bus ends a replica's
// subscription (its connection dropped) and a login is revoked before it
// is back, the replica re-subscribes and reads the revocation from the
// store.
func TestRevocationsResyncWhenBusEnds(t *testing.T) {
	t.Parallel()
	e := setup(t)
	bus := &endingBus{Bus: e.bus, refused: make(chan struct{}, 1)}
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
	bus.end()
	if err := e.svc.Logout(context.Background(), p.RefreshToken); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bus.refused: // the replica tried to subscribe again while down
	case <-time.After(10 * time.Second):
		t.Fatal("no re-subscription")
	}
	bus.up()
	select {
	case <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("the replica never learnt of the logout")
	}
	_, err = replica.Verify(p.AccessToken)
	wantCode(t, err, codecrafter.EUNAUTHENTICATED)
}

// endingBus ends its subscriptions on end and refuses new ones until up,
// as a bus whose connection dropped.
type endingBus struct {
	codecrafter.Bus
	mu      sync.Mutex
	down    bool
	cancels []context.CancelFunc
	refused chan struct{}
}

func (b *endingBus) Subscribe(ctx context.Context, topic string) (<-chan []byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		select {
		case b.refused <- struct{}{}:
		default:
		}
		return nil, codecrafter.Errorf(codecrafter.EUNAVAILABLE, "bus down")
	}
	ctx, cancel := context.WithCancel(ctx)
	b.cancels = append(b.cancels, cancel)
	return b.Bus.Subscribe(ctx, topic)
}

func (b *endingBus) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down = true
	for _, cancel := range b.cancels {
		cancel()
	}
	b.cancels = nil
}

func (b *endingBus) up() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down = false
}
