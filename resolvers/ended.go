package resolvers

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/push"
)

// endsUnavailable forwards a stream the service cannot resync, having
// nothing stored behind it (typing, presence, run status changes). If in
// closes while ctx lives, the bus ended it (fell behind, connection lost):
// report gets UNAVAILABLE, so the client subscribes again.
func endsUnavailable[T any](ctx context.Context, in <-chan *T, err error, report func(error)) (<-chan *T, error) {
	if err != nil {
		return nil, err
	}
	unavailable := func() error {
		if ctx.Err() != nil {
			return nil
		}
		return codecrafter.Errorf(codecrafter.EUNAVAILABLE, "live updates were interrupted; subscribe again")
	}
	if push.From(ctx) != nil {
		return forward(ctx, in, func(v *T) *T { return v }, unavailable, report)
	}
	out := make(chan *T)
	go func() {
		defer close(out) // after report: the transport reads the error at the close
		for v := range in {
			select {
			case out <- v:
			case <-ctx.Done():
				return
			}
		}
		if err := unavailable(); err != nil {
			report(err)
		}
	}()
	return out, nil
}

// forward hands what a service sends on in, converted by f, to the
// subscription through its push.Sink, from one goroutine that waits on
// in: the transport then holds none of its own for it. When in closes
// the subscription ends with closed's error (nil: it completes).
//
// Each event is a copy: the sink tells events apart by pointer, and a
// service may send one pointer again, changed (a run's status).
func forward[T, U any](ctx context.Context, in <-chan T, f func(T) *U, closed func() error, report func(error)) (<-chan *U, error) {
	return watch(ctx, report, func(emit func(*U) bool, end func(error)) error {
		go func() {
			for v := range in {
				ev := *f(v)
				if !emit(&ev) { // ended, or too slow: in's service stops with ctx
					var err error
					if ctx.Err() == nil {
						err = codecrafter.Errorf(codecrafter.EUNAVAILABLE, "live updates fell behind; subscribe again")
					}
					end(err)
					return
				}
			}
			end(closed())
		}()
		return nil
	})
}

// subscriptionError reports err on the WebSocket subscription of ctx.
func (r *Resolver) subscriptionError(ctx context.Context) func(error) {
	return func(err error) {
		present := r.Present
		if present == nil {
			present = graphql.DefaultErrorPresenter
		}
		failSubscription(ctx, present(ctx, err))
	}
}
