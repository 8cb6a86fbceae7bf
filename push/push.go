// Package push lets a subscription resolver hand its events straight to
// the WebSocket transport instead of through a channel that a goroutine of
// the transport waits on: a subscription then costs no goroutine while it
// is idle, and the transport can encode an event once for every identical
// subscription that receives it.
package push

import (
	"context"

	"github.com/vektah/gqlparser/v2/gqlerror"
)

// A Sink takes one subscription's events. Its methods are safe to call
// from any goroutine, but Deliver calls of one subscription must not
// overlap (they come in the subscription's order).
type Sink interface {
	// Adopt says the resolver delivers through the sink; without it the
	// transport reads the resolver's channel itself.
	Adopt()
	// Deliver hands over one event. key identifies it (the same pointer
	// for every subscription that receives the same event); queue makes
	// it the next value of the resolver's channel, which the transport
	// then reads and encodes, unless an identical subscription has
	// already encoded it. It reports false when the subscriber cannot
	// keep up: the subscription is then ended.
	Deliver(key any, queue func()) bool
	// Fail records an error to send in place of complete when the
	// subscription ends.
	Fail(err *gqlerror.Error)
	// End ends the subscription after the events delivered so far (with
	// the errors recorded by Fail, if any).
	End()
}

type sinkKey struct{}

// With returns a context whose subscriptions deliver to s.
func With(ctx context.Context, s Sink) context.Context {
	return context.WithValue(ctx, sinkKey{}, s)
}

// From returns the operation's sink; nil when its transport has none.
func From(ctx context.Context) Sink {
	s, _ := ctx.Value(sinkKey{}).(Sink)
	return s
}
