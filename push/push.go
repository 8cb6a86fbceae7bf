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

// Ends is an optional part of a Sink: the operation's end, for what a
// subscription holds until then. The transport keeps a list, an entry a
// hook, where context.AfterFunc and a context of one's own cost a
// registration, a channel and a map each, held for the subscription's
// life.
type Ends interface {
	// Done is the operation's context's: a context with the same Done
	// ends exactly when the operation does.
	Done() <-chan struct{}
	// OnEnd runs f once the operation has ended, unless stop (true when
	// it stopped f) is called first; false when it has ended already.
	OnEnd(f func()) (stop func() bool, ok bool)
	// Cancel ends the operation: its context ends with cause as its
	// cause (context.Cause), then the subscription ends.
	Cancel(cause error)
}

// EndsOf returns the operation's Ends when ctx ends exactly with it
// (nil otherwise: ctx has an end of its own, or the transport has none).
func EndsOf(ctx context.Context) Ends {
	if e, ok := From(ctx).(Ends); ok && e.Done() == ctx.Done() {
		return e
	}
	return nil
}

// OnEnd is context.AfterFunc(ctx, f), on the operation's list when ctx
// ends with it.
func OnEnd(ctx context.Context, f func()) (stop func() bool) {
	if e := EndsOf(ctx); e != nil {
		if stop, ok := e.OnEnd(f); ok {
			return stop
		}
	}
	return context.AfterFunc(ctx, f)
}
