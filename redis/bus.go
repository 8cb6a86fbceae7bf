package redis

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/codecrafter/codecrafter"
)

// BusBuffer is how many events a subscriber may fall behind before the
// bus ends its subscription.
const BusBuffer = 256

// Intervals of the connection's reader.
const healthInterval = 15 * time.Second // ping after this long without traffic

var (
	_ codecrafter.Bus            = (*Bus)(nil)
	_ codecrafter.BatchPublisher = (*Bus)(nil)
)

// Bus fans events out over Redis pub/sub to every replica. All of a Bus's
// subscriptions share one Redis connection, read by one goroutine that
// lives while there is at least one subscriber; it hands each event to
// the subscribers' buffered channels without blocking, ending a
// subscriber whose buffer is full. When the connection fails, every one
// of its subscriptions ends (events published meanwhile are lost to them,
// and only their consumers know what to re-read); the next Subscribe
// dials a new one.
type Bus struct {
	client  *goredis.Client
	prefix  string
	log     *slog.Logger
	obs     codecrafter.BusObserver
	dropped atomic.Int64

	mu   sync.Mutex // guards conn and its maps; held while sending (UN)SUBSCRIBE so commands go out in state order
	conn *conn      // nil while nobody subscribes
}

// conn is the shared pub/sub connection and the state of its reader.
type conn struct {
	ps      *goredis.PubSub
	stop    chan struct{} // closed before ps is closed
	done    chan struct{} // closed when the reader has returned
	topics  map[string]*topicSubs
	leaving map[string]int // UNSUBSCRIBEs sent and not yet confirmed, by channel
}

type topicSubs struct {
	subs  map[*subscriber]struct{}
	ready chan struct{} // closed once Redis confirmed the SUBSCRIBE
}

type subscriber struct {
	ch    chan []byte
	ended bool // ch is closed; guarded by Bus.mu
}

// NewBus returns a Bus publishing on c, on channels named prefix+topic.
func NewBus(c *goredis.Client, prefix string, logger *slog.Logger) *Bus {
	return &Bus{client: c, prefix: prefix, log: logger, obs: codecrafter.NopBusObserver{}}
}

// Observe makes o count the bus's traffic; call it before using the bus.
func (b *Bus) Observe(o codecrafter.BusObserver) { b.obs = o }

// Publish sends payload to the topic's subscribers on every replica.
func (b *Bus) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := b.client.Publish(ctx, b.prefix+topic, payload).Err(); err != nil {
		return redisErr(err)
	}
	b.obs.Published(topic)
	return nil
}

// PublishBatch publishes payloads to topic in one pipelined round trip.
func (b *Bus) PublishBatch(ctx context.Context, topic string, payloads [][]byte) error {
	if len(payloads) == 1 {
		return b.Publish(ctx, topic, payloads[0])
	}
	name := b.prefix + topic
	_, err := b.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, pl := range payloads {
			p.Publish(ctx, name, pl)
		}
		return nil
	})
	if err != nil {
		return redisErr(err)
	}
	for range payloads {
		b.obs.Published(topic)
	}
	return nil
}

// Subscribe returns once Redis confirmed the subscription; the channel
// closes when ctx ends, or earlier when the subscriber falls behind or the
// connection fails.
func (b *Bus) Subscribe(ctx context.Context, topic string) (<-chan []byte, error) {
	name := b.prefix + topic
	s := &subscriber{ch: make(chan []byte, BusBuffer)}

	b.mu.Lock()
	if b.conn == nil {
		b.conn = b.open()
	}
	c := b.conn
	t := c.topics[name]
	var err error
	if t == nil {
		t = &topicSubs{subs: make(map[*subscriber]struct{}), ready: make(chan struct{})}
		c.topics[name] = t
	}
	t.subs[s] = struct{}{}
	if len(t.subs) == 1 {
		if err = c.ps.Subscribe(ctx, name); err != nil {
			// go-redis would redial and resubscribe behind our back.
			b.loseLocked(c, err)
		}
	}
	b.mu.Unlock()

	if err == nil {
		select {
		case <-t.ready:
		case <-c.stop:
			err = codecrafter.Errorf(codecrafter.EUNAVAILABLE, "the event bus connection was lost")
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		b.leave(c, name, s)
		return nil, redisErr(err)
	}
	context.AfterFunc(ctx, func() { b.leave(c, name, s) })
	return s.ch, nil
}

// open starts a connection and its reader; b.mu is held.
func (b *Bus) open() *conn {
	c := &conn{
		ps:      b.client.Subscribe(context.Background()),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		topics:  make(map[string]*topicSubs),
		leaving: make(map[string]int),
	}
	go b.read(c)
	return c
}

// leave ends s, unless the bus did already, and waits for the reader when
// s was the connection's last subscriber.
func (b *Bus) leave(c *conn, name string, s *subscriber) {
	b.mu.Lock()
	last := false
	if !s.ended {
		last = b.removeLocked(c, name, s)
	}
	b.mu.Unlock()
	if last {
		<-c.done
	}
}

// removeLocked ends s, unsubscribing from Redis when it was the channel's
// last subscriber and closing the connection when it was the last of all
// (it reports that); b.mu is held.
func (b *Bus) removeLocked(c *conn, name string, s *subscriber) (last bool) {
	s.ended = true
	close(s.ch)
	t := c.topics[name]
	delete(t.subs, s)
	if len(t.subs) > 0 {
		return false
	}
	delete(c.topics, name)
	if len(c.topics) == 0 {
		b.closeLocked(c)
		return true
	}
	if err := c.ps.Unsubscribe(context.Background(), name); err != nil {
		b.loseLocked(c, err)
	} else {
		c.leaving[name]++
	}
	return false
}

// closeLocked stops c's reader and closes its connection; b.mu is held.
func (b *Bus) closeLocked(c *conn) {
	if isClosed(c.stop) {
		return
	}
	if b.conn == c {
		b.conn = nil
	}
	close(c.stop)
	c.ps.Close()
}

// loseLocked ends every subscription of c after a connection error (what
// Redis sent meanwhile is gone, so they must resync); b.mu is held.
func (b *Bus) loseLocked(c *conn, err error) {
	if isClosed(c.stop) {
		return
	}
	n := 0
	for _, t := range c.topics {
		for s := range t.subs {
			s.ended = true
			close(s.ch)
			n++
		}
	}
	clear(c.topics)
	b.closeLocked(c)
	b.log.Warn("bus connection lost; its subscriptions ended", "subscriptions", n, "err", err)
}

// read hands the connection's messages out until the connection closes
// or fails.
func (b *Bus) read(c *conn) {
	defer close(c.done)
	ctx := context.Background()
	pinged := false // a ping is out and nothing came since
	for {
		msg, err := c.ps.ReceiveTimeout(ctx, healthInterval)
		var netErr net.Error
		switch {
		case err == nil:
			pinged = false
		case errors.Is(err, goredis.ErrClosed) || isClosed(c.stop):
			return
		case errors.As(err, &netErr) && netErr.Timeout() && !pinged:
			// Quiet for a while: the pong (or an error) tells whether the
			// connection still works.
			pinged = true
			if err = c.ps.Ping(ctx); err == nil {
				continue
			}
			fallthrough
		default:
			// A failed receive or ping, or no pong: go-redis would redial
			// and resubscribe on the next receive, and what was published
			// meanwhile would be lost unnoticed. End the subscriptions.
			b.mu.Lock()
			b.loseLocked(c, err)
			b.mu.Unlock()
			return
		}

		switch m := msg.(type) {
		case *goredis.Subscription:
			b.confirm(c, m)
		case *goredis.Message:
			b.dispatch(c, m.Channel, []byte(m.Payload))
		}
	}
}

// confirm marks a channel's subscription active, unless the confirmation
// answers a SUBSCRIBE sent before a still unconfirmed UNSUBSCRIBE (Redis
// answers in order, so the current SUBSCRIBE's confirmation comes later).
func (b *Bus) confirm(c *conn, m *goredis.Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch m.Kind {
	case "unsubscribe":
		if c.leaving[m.Channel] > 0 {
			c.leaving[m.Channel]--
		}
	case "subscribe":
		t := c.topics[m.Channel]
		if t == nil || c.leaving[m.Channel] > 0 {
			return
		}
		if !isClosed(t.ready) {
			close(t.ready)
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (b *Bus) dispatch(c *conn, name string, payload []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := c.topics[name]
	if t == nil {
		return
	}
	topic := strings.TrimPrefix(name, b.prefix)
	for s := range t.subs {
		select {
		case s.ch <- payload:
			b.obs.Delivered(topic)
		default:
			// Fallen behind: end it, so its consumer resyncs instead of
			// silently missing events.
			b.dropped.Add(1)
			b.obs.Dropped(topic)
			b.removeLocked(c, name, s)
		}
	}
}

// Ping checks that Redis answers.
func (b *Bus) Ping(ctx context.Context) error {
	if err := b.client.Ping(ctx).Err(); err != nil {
		return redisErr(err)
	}
	return nil
}

// Dropped returns how many subscribers were ended for falling behind.
func (b *Bus) Dropped() int64 { return b.dropped.Load() }
