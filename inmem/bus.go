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
// bus ends its subscription.
const BusBuffer = 256

var _ codecrafter.Bus = (*Bus)(nil)

// Bus fans events out to subscribers in this process. A subscriber whose
// buffer is full is ended (its channel closes); the publisher never blocks.
type Bus struct {
	buffer  int
	obs     codecrafter.BusObserver
	mu      sync.Mutex
	topics  map[string]map[*subscriber]struct{}
	dropped atomic.Int64
}

type subscriber struct {
	ch    chan []byte
	ended bool // ch is closed; guarded by Bus.mu
}

// NewBus returns an empty bus.
func NewBus() *Bus { return NewBusWithBuffer(BusBuffer) }

// NewBusWithBuffer returns an empty bus whose subscribers may fall n
// events behind (tests use a tiny one).
func NewBusWithBuffer(n int) *Bus {
	return &Bus{buffer: max(n, 1), obs: codecrafter.NopBusObserver{}, topics: make(map[string]map[*subscriber]struct{})}
}

// Observe makes o count the bus's traffic; call it before using the bus.
func (b *Bus) Observe(o codecrafter.BusObserver) { b.obs = o }

// Publish hands payload to the topic's current subscribers.
func (b *Bus) Publish(ctx context.Context, topic string, payload []byte) error {
	// Subscribers share one copy, so the caller may reuse its buffer.
	payload = append([]byte(nil), payload...)
	b.obs.Published(topic)
	b.mu.Lock()
	defer b.mu.Unlock()
	subs := b.topics[topic]
	for s := range subs {
		select {
		case s.ch <- payload:
			b.obs.Delivered(topic)
		default:
			// Fallen behind: end it, so its consumer resyncs instead of
			// silently missing events.
			b.dropped.Add(1)
			b.obs.Dropped(topic)
			b.removeLocked(topic, subs, s)
		}
	}
	return nil
}

// Subscribe registers a subscriber; its channel closes when ctx ends, or
// earlier if the subscriber falls behind.
func (b *Bus) Subscribe(ctx context.Context, topic string) (<-chan []byte, error) {
	s := &subscriber{ch: make(chan []byte, b.buffer)}
	b.mu.Lock()
	subs := b.topics[topic]
	if subs == nil {
		subs = make(map[*subscriber]struct{})
		b.topics[topic] = subs
	}
	subs[s] = struct{}{}
	b.mu.Unlock()

	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !s.ended {
			b.removeLocked(topic, b.topics[topic], s)
		}
	})
	return s.ch, nil
}

// removeLocked ends s; b.mu is held.
func (b *Bus) removeLocked(topic string, subs map[*subscriber]struct{}, s *subscriber) {
	delete(subs, s)
	if len(subs) == 0 {
		delete(b.topics, topic)
	}
	s.ended = true
	close(s.ch)
}

// Ping always succeeds.
func (b *Bus) Ping(context.Context) error { return nil }

// Dropped returns how many subscribers were ended for falling behind.
func (b *Bus) Dropped() int64 { return b.dropped.Load() }
