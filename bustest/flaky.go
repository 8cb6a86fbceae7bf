package bustest

import (
	"context"
	"sync"

	"github.com/codecrafter/codecrafter"
)

// Flaky wraps a bus for consumers' tests: Drop ends every subscription,
// as a bus does to a subscriber that fell behind or lost its connection,
// and refuses new ones (UNAVAILABLE) until Up.
type Flaky struct {
	codecrafter.Bus
	// Refused is signalled (without blocking) when a Subscribe is refused.
	Refused chan struct{}

	mu      sync.Mutex
	down    bool
	cancels []context.CancelFunc
}

// NewFlaky wraps bus.
func NewFlaky(bus codecrafter.Bus) *Flaky {
	return &Flaky{Bus: bus, Refused: make(chan struct{}, 1)}
}

// Subscribe subscribes to the wrapped bus unless it is down.
func (b *Flaky) Subscribe(ctx context.Context, topic string) (<-chan []byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		select {
		case b.Refused <- struct{}{}:
		default:
		}
		return nil, codecrafter.Errorf(codecrafter.EUNAVAILABLE, "bus down")
	}
	ctx, cancel := context.WithCancel(ctx)
	b.cancels = append(b.cancels, cancel)
	return b.Bus.Subscribe(ctx, topic)
}

// Drop ends every subscription and refuses new ones.
func (b *Flaky) Drop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down = true
	for _, cancel := range b.cancels {
		cancel()
	}
	b.cancels = nil
}

// Up takes subscriptions again.
func (b *Flaky) Up() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down = false
}
