package resolvers

import (
	"context"
	"sync"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/codecrafter/codecrafter/push"
)

// watchFunc starts a service's watch: emit gets each event (false: the
// subscriber cannot keep up, and the watch ends), end is called once when
// the watch ends, with the error that ended it or nil. It returns an
// error, and calls neither, when the watch cannot start.
type watchFunc[T any] func(emit func(*T) bool, end func(error)) error

// watchBuffer bounds the events waiting for a subscriber on transports
// without a push.Sink.
const watchBuffer = 256

// watch turns a service's callback watch into a subscription. Over our
// WebSocket transport the events go straight to it (push.Sink): no
// goroutine while idle, and one encoding per event for identical
// subscriptions. Elsewhere they go through a bounded channel. report
// presents the error that ended the watch.
func watch[T any](ctx context.Context, report func(error), start watchFunc[T]) (<-chan *T, error) {
	if sink := push.From(ctx); sink != nil {
		// The transport reads each value right after queueing it; a value
		// left unread (the operation ended meanwhile) is replaced, so that
		// queueing never blocks the event source.
		ch := make(chan *T, 1)
		queue := func(v *T) func() {
			return func() {
				select {
				case <-ch:
				default:
				}
				ch <- v
			}
		}
		emit := func(v *T) bool { return sink.Deliver(v, queue(v)) }
		end := func(err error) {
			if err != nil {
				report(err)
			}
			sink.End()
		}
		if err := start(emit, end); err != nil {
			return nil, err
		}
		sink.Adopt()
		return ch, nil
	}
	ch := make(chan *T, watchBuffer)
	var mu sync.Mutex
	closed := false
	emit := func(v *T) bool {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return false
		}
		select {
		case ch <- v:
			return true
		default:
			return false
		}
	}
	end := func(err error) {
		if err != nil {
			report(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !closed {
			closed = true
			close(ch) // after report: the transport reads the error at the close
		}
	}
	if err := start(emit, end); err != nil {
		return nil, err
	}
	return ch, nil
}

// failSubscription reports err on the subscription of ctx: sent in place
// of complete when it ends.
func failSubscription(ctx context.Context, err *gqlerror.Error) {
	if sink := push.From(ctx); sink != nil {
		sink.Fail(err)
		return
	}
	transport.AddSubscriptionError(ctx, err)
}
