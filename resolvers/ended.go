package resolvers

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"github.com/codecrafter/codecrafter"
)

// endsUnavailable forwards a stream the service cannot resync, having
// nothing stored behind it (typing, presence, run status changes). If in
// closes while ctx lives, the bus ended it (fell behind, connection lost):
// report gets UNAVAILABLE, so the client subscribes again.
func endsUnavailable[T any](ctx context.Context, in <-chan T, err error, report func(error)) (<-chan T, error) {
	if err != nil {
		return nil, err
	}
	out := make(chan T)
	go func() {
		defer close(out) // after report: the transport reads the error at the close
		for v := range in {
			select {
			case out <- v:
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() == nil {
			report(codecrafter.Errorf(codecrafter.EUNAVAILABLE, "live updates were interrupted; subscribe again"))
		}
	}()
	return out, nil
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
