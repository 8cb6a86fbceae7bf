package rabbitmq

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/codecrafter/codecrafter"
)

// dialTimeout bounds a TCP connect plus the AMQP handshake.
const dialTimeout = 10 * time.Second

// link keeps one AMQP connection, and one channel on it for the link's own
// calls, open: whoever needs them and finds them closed redials, with a
// backoff between failed attempts that all callers share. No goroutine of
// its own: a lost connection is noticed by its next user.
type link struct {
	url     string
	name    string // shown by the broker's management tools
	log     *slog.Logger
	confirm bool                      // put the channel in confirm mode
	setup   func(*amqp.Channel) error // run on every new connection
	backoff func(failures int) time.Duration

	dialing chan struct{} // a one-slot lock, held while (re)opening

	mu       sync.Mutex
	conn     *amqp.Connection
	ch       *amqp.Channel
	failures int       // failed dials in a row
	retryAt  time.Time // no dial before then
	closed   bool
}

var (
	errClosed  = codecrafter.Errorf(codecrafter.EUNAVAILABLE, "job queue closed")
	errBackoff = errors.New("broker unreachable; waiting before redialing")
)

// get returns the open connection and channel. With wait it keeps
// redialing until ctx ends; without, it makes one attempt unless a
// backoff is pending.
func (l *link) get(ctx context.Context, wait bool) (*amqp.Connection, *amqp.Channel, error) {
	for {
		select {
		case l.dialing <- struct{}{}:
		case <-ctx.Done():
			return nil, nil, unavailable(ctx.Err())
		}
		conn, ch, retryIn, err := l.open(ctx)
		<-l.dialing
		if err == nil || err == errClosed || !wait {
			return conn, ch, err
		}
		select {
		case <-time.After(retryIn):
		case <-ctx.Done():
			return nil, nil, unavailable(err)
		}
	}
}

// open reuses or replaces the connection and channel; on failure it says
// how long to wait before the next attempt. l.dialing is held.
func (l *link) open(ctx context.Context) (*amqp.Connection, *amqp.Channel, time.Duration, error) {
	l.mu.Lock()
	conn, ch, closed, retryIn := l.conn, l.ch, l.closed, time.Until(l.retryAt)
	l.mu.Unlock()
	switch {
	case closed:
		return nil, nil, 0, errClosed
	case conn != nil && !conn.IsClosed() && !ch.IsClosed():
		return conn, ch, 0, nil
	case conn != nil && !conn.IsClosed():
		// Only the channel failed (a channel error closes just it).
		ch, err := l.channel(conn)
		if err != nil {
			conn.Close()
			return nil, nil, 0, unavailable(err)
		}
		l.mu.Lock()
		l.ch = ch
		l.mu.Unlock()
		return conn, ch, 0, nil
	case retryIn > 0:
		return nil, nil, retryIn, unavailable(errBackoff)
	}

	conn, ch, err := l.dial(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failures++
		wait := l.backoff(l.failures)
		l.retryAt = time.Now().Add(wait)
		level := slog.LevelDebug
		if l.failures == 1 {
			level = slog.LevelWarn
		}
		l.log.Log(ctx, level, "cannot reach RabbitMQ; retrying", "link", l.name, "failures", l.failures, "retry_in", wait, "err", err)
		return nil, nil, wait, unavailable(err)
	}
	if l.closed { // closed while dialing
		conn.Close()
		return nil, nil, 0, errClosed
	}
	if l.failures > 0 {
		l.log.Info("reconnected to RabbitMQ", "link", l.name, "after_failures", l.failures)
	}
	l.conn, l.ch, l.failures, l.retryAt = conn, ch, 0, time.Time{}
	return conn, ch, 0, nil
}

func (l *link) dial(ctx context.Context) (*amqp.Connection, *amqp.Channel, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(l.name)
	conn, err := amqp.DialConfig(l.url, amqp.Config{
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: dialTimeout}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds the handshake; the library clears it afterwards.
			return c, c.SetDeadline(time.Now().Add(dialTimeout))
		},
	})
	if err != nil {
		return nil, nil, err
	}
	ch, err := l.channel(conn)
	if err == nil {
		err = l.setup(ch)
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, ch, nil
}

func (l *link) channel(conn *amqp.Connection) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if l.confirm {
		if err := ch.Confirm(false); err != nil {
			ch.Close()
			return nil, err
		}
	}
	return ch, nil
}

// close closes the connection for good; later calls get errClosed.
func (l *link) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.conn == nil || l.conn.IsClosed() {
		return nil
	}
	return l.conn.Close()
}

// backoff returns an exponential backoff from lo to hi with jitter, so
// that many clients do not redial a restarted broker in step.
func backoff(lo, hi time.Duration) func(failures int) time.Duration {
	return func(failures int) time.Duration {
		d := hi
		if failures < 20 {
			d = min(hi, lo<<(failures-1))
		}
		return d/2 + rand.N(d/2+1)
	}
}
