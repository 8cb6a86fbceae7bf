package redis

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/codecrafter/codecrafter"
)

// BusBuffer is how many events a subscriber may fall behind before the
// bus drops events for it.
const BusBuffer = 256

// Intervals of the connection's reader.
const (
	healthInterval = 15 * time.Second // ping after this long without traffic
	retryInterval  = time.Second      // wait after a connection error
)

var _ codecrafter.Bus = (*Bus)(nil)

// Bus fans events out over Redis pub/sub to every replica. All of a Bus's
// subscriptions share one Redis connection, read by one goroutine that
// lives while there is at least one subscriber; it hands each event to
// the subscribers' buffered channels without blocking, dropping it for a
// subscriber whose buffer is full.
type Bus struct {
	client  *goredis.Client
	prefix  string
	log     *slog.Logger
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
	ch      chan []byte
	dropped int
}

// NewBus returns a Bus publishing on c, on channels named prefix+topic.
func NewBus(c *goredis.Client, prefix string, logger *slog.Logger) *Bus {
	return &Bus{client: c, prefix: prefix, log: logger}
}

// Publish sends payload to the topic's subscribers on every replica.
func (b *Bus) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := b.client.Publish(ctx, b.prefix+topic, payload).Err(); err != nil {
		return redisErr(err)
	}
	return nil
}

// Subscribe returns once Redis confirmed the subscription; the channel
// closes when ctx ends.
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
		err = c.ps.Subscribe(ctx, name)
	}
	t.subs[s] = struct{}{}
	b.mu.Unlock()

	if err == nil {
		select {
		case <-t.ready:
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

// leave removes s, unsubscribing from Redis when it was the channel's last
// subscriber and closing the connection when it was the last of all, then
// closes s.ch.
func (b *Bus) leave(c *conn, name string, s *subscriber) {
	b.mu.Lock()
	t := c.topics[name]
	delete(t.subs, s)
	last := false
	if len(t.subs) == 0 {
		delete(c.topics, name)
		if len(c.topics) == 0 {
			last = true
			b.conn = nil
			close(c.stop)
			c.ps.Close()
		} else if err := c.ps.Unsubscribe(context.Background(), name); err == nil {
			c.leaving[name]++
		}
	}
	b.mu.Unlock()

	if last {
		<-c.done
	}
	if s.dropped > 0 {
		b.log.Warn("bus subscriber fell behind; events dropped", "channel", name, "dropped", s.dropped)
	}
	close(s.ch)
}

// read hands the connection's messages out until the connection closes.
func (b *Bus) read(c *conn) {
	defer close(c.done)
	ctx := context.Background()
	for {
		msg, err := c.ps.ReceiveTimeout(ctx, healthInterval)
		var netErr net.Error
		switch {
		case err == nil:
		case errors.Is(err, goredis.ErrClosed) || isClosed(c.stop):
			return
		case errors.As(err, &netErr) && netErr.Timeout():
			// Quiet for a while: a ping proves the connection still works
			// (a failed one makes go-redis redial and resubscribe).
			pctx, cancel := context.WithTimeout(ctx, retryInterval)
			c.ps.Ping(pctx)
			cancel()
			continue
		default:
			// go-redis redials and resubscribes on the next receive; the
			// old connection's pending confirmations are gone with it.
			b.log.Warn("bus connection lost; resubscribing", "err", err)
			b.mu.Lock()
			clear(c.leaving)
			b.mu.Unlock()
			select {
			case <-c.stop:
				return
			case <-time.After(retryInterval):
			}
			continue
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
	for s := range t.subs {
		select {
		case s.ch <- payload:
		default:
			s.dropped++
			b.dropped.Add(1)
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

// Dropped returns how many events were dropped for slow subscribers.
func (b *Bus) Dropped() int64 { return b.dropped.Load() }
