// Package inmem holds in-process adapters: a Bus, a Queue and a Limiter
// for a single server with no external services, and for tests.
package inmem

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/codecrafter/codecrafter"
)

// BusBuffer is how many events a subscriber may fall behind before the
// bus drops events for it.
const BusBuffer = 256

var _ codecrafter.Bus = (*Bus)(nil)

// Bus fans events out to subscribers in this process. A subscriber whose
// buffer is full loses the event; the publisher never blocks.
type Bus struct {
	mu      sync.RWMutex
	topics  map[string]map[chan []byte]struct{}
	dropped atomic.Int64
}

// NewBus returns an empty bus.
func NewBus() *Bus {
	return &Bus{topics: make(map[string]map[chan []byte]struct{})}
}

// Publish hands payload to the topic's current subscribers.
func (b *Bus) Publish(ctx context.Context, topic string, payload []byte) error {
	// Subscribers share one copy, so the caller may reuse its buffer.
	payload = append([]byte(nil), payload...)
	b.mu.RLock()
	defer b.mu.RUnlock()
	for ch := range b.topics[topic] {
		select {
		case ch <- payload:
		default:
			b.dropped.Add(1)
		}
	}
	return nil
}

// Subscribe registers a subscriber; its channel closes when ctx ends.
func (b *Bus) Subscribe(ctx context.Context, topic string) (<-chan []byte, error) {
	ch := make(chan []byte, BusBuffer)
	b.mu.Lock()
	subs := b.topics[topic]
	if subs == nil {
		subs = make(map[chan []byte]struct{})
		b.topics[topic] = subs
	}
	subs[ch] = struct{}{}
	b.mu.Unlock()

	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(subs, ch)
		if len(subs) == 0 {
			delete(b.topics, topic)
		}
		close(ch)
	})
	return ch, nil
}

// Ping always succeeds.
func (b *Bus) Ping(context.Context) error { return nil }

// Dropped returns how many events were dropped for slow subscribers.
func (b *Bus) Dropped() int64 { return b.dropped.Load() }
