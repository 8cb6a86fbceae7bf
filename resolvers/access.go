package resolvers

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"github.com/codecrafter/codecrafter"
)

// watchSession ends a subscription's context when the caller loses access
// to the session (removed, left, session deleted), reporting why on the
// subscription (an error message, then no more events). Call it before the
// service checks access, so no change falls between the check and the
// watch. Without an access hub it returns ctx unchanged.
func (r *Resolver) watchSession(ctx context.Context, sessionID string, check func(context.Context) error) context.Context {
	if r.Access == nil || sessionID == "" {
		return ctx
	}
	userID := codecrafter.UserIDFromContext(ctx)
	asUser := func(c context.Context) error { return check(codecrafter.WithUserID(c, userID)) }
	return r.Access.WatchSession(ctx, sessionID, userID, asUser, func(err error) {
		present := r.Present
		if present == nil {
			present = graphql.DefaultErrorPresenter
		}
		failSubscription(ctx, present(ctx, err))
	})
}

// sessionReadable checks the caller may still read the session.
func (r *Resolver) sessionReadable(sessionID string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := r.Sessions.Get(ctx, sessionID)
		return err
	}
}

// hold makes the caller online in the session for as long as a
// subscription lasts that the service accepted (err nil).
func (r *Resolver) hold(ctx context.Context, sessionID string, err error) {
	if err == nil && r.Realtime != nil && sessionID != "" {
		r.Realtime.Hold(ctx, sessionID)
	}
}
