package exectest

import (
	"context"
	"sync"

	"github.com/codecrafter/codecrafter"
)

// LossyBus wraps a Bus and silently drops the publishes Drop picks, as a
// best-effort bus may.
type LossyBus struct {
	codecrafter.Bus
	mu   sync.Mutex
	drop func(topic string, payload []byte) bool
}

// NewLossyBus returns bus losing nothing until SetDrop.
func NewLossyBus(bus codecrafter.Bus) *LossyBus { return &LossyBus{Bus: bus} }

// SetDrop sets which publishes are lost (nil: none).
func (b *LossyBus) SetDrop(drop func(topic string, payload []byte) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.drop = drop
}

func (b *LossyBus) Publish(ctx context.Context, topic string, payload []byte) error {
	b.mu.Lock()
	drop := b.drop
	b.mu.Unlock()
	if drop != nil && drop(topic, payload) {
		return nil
	}
	return b.Bus.Publish(ctx, topic, payload)
}
