// Package resolvers maps GraphQL operations onto the services. Resolvers
// stay thin: read arguments, make one service call, return.
package resolvers

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/access"
	"github.com/codecrafter/codecrafter/auth"
	"github.com/codecrafter/codecrafter/editing"
	"github.com/codecrafter/codecrafter/executions"
	"github.com/codecrafter/codecrafter/graph/model"
	"github.com/codecrafter/codecrafter/push"
	"github.com/codecrafter/codecrafter/realtime"
	"github.com/codecrafter/codecrafter/sessions"
	"github.com/codecrafter/codecrafter/timeline"
)

// Resolver is the dependency root of the GraphQL layer.
type Resolver struct {
	Auth     *auth.Service
	Sessions *sessions.Service
	Runs     *executions.Service // code executions
	Realtime *realtime.Service   // chat, typing, presence
	Editing  *editing.Service    // the code's edit log
	Timeline *timeline.Service   // a session's story in one order
	Users    codecrafter.UserStore
	Runtimes codecrafter.Runtimes
	// Access ends subscriptions of participants who lose access (nil: none).
	Access *access.Hub
	// Present formats subscription errors like every other error (nil:
	// gqlgen's default presenter).
	Present graphql.ErrorPresenterFunc

	users userCache
}

func payload(p *auth.Payload, err error) (*model.AuthPayload, error) {
	if err != nil {
		return nil, err
	}
	return &model.AuthPayload{AccessToken: p.AccessToken, RefreshToken: p.RefreshToken, ExpiresAt: p.ExpiresAt, User: p.User}, nil
}

// user loads a user referenced by another object (owner, author...).
func (r *Resolver) user(ctx context.Context, id string) (*codecrafter.User, error) {
	return r.users.get(ctx, r.Users, id)
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func ok(err error) (bool, error) { return err == nil, err }

// output returns a stream's text: the stored final value, or while the run
// is going, what its chunks hold so far.
func output(e *codecrafter.Execution, stream codecrafter.OutputStream) string {
	if e.Status.Final() {
		if stream == codecrafter.Stdout {
			return e.Stdout
		}
		return e.Stderr
	}
	var b []byte
	for _, c := range e.Output {
		if c.Stream == stream {
			b = append(b, c.Data...)
		}
	}
	return string(b)
}

// mapEvents converts a service's event channel to the subscription's,
// which completes when in closes: through push on our transport (forward),
// else mapChan.
func mapEvents[T, U any](ctx context.Context, in <-chan T, f func(T) *U, report func(error)) (<-chan *U, error) {
	if push.From(ctx) != nil {
		return forward(ctx, in, f, func() error { return nil }, report)
	}
	return mapChan(ctx, in, f), nil
}

// mapChan converts a service's event channel to the GraphQL one; the
// result closes when in does (or ctx ends), which completes the
// subscription.
func mapChan[T, U any](ctx context.Context, in <-chan T, f func(T) U) <-chan U {
	out := make(chan U)
	go func() {
		defer close(out)
		for v := range in {
			select {
			case out <- f(v):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func outputEvent(executionID string, c codecrafter.OutputChunk) *model.ExecutionOutput {
	ev := &model.ExecutionOutput{ExecutionID: executionID, Seq: c.Seq, Status: c.Status}
	if c.Stream != "" {
		stream, data := c.Stream, c.Data
		ev.Stream, ev.Data = &stream, &data
	}
	return ev
}

// intOr returns *p, or def when an optional argument came as null.
func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// viaAuthPayload reports whether the field being resolved belongs to the
// user of an AuthPayload: register, login and refresh return the caller
// themself, before any token of theirs is in the request.
func viaAuthPayload(ctx context.Context) bool {
	fc := graphql.GetFieldContext(ctx)
	return fc != nil && fc.Parent != nil && fc.Parent.Object == "AuthPayload"
}

func editInput(in model.EditInput) editing.Input {
	ops := make([]editing.OpInput, len(in.Ops))
	for i, o := range in.Ops {
		ops[i] = editing.OpInput{Retain: o.Retain, Insert: o.Insert, Delete: o.Delete}
	}
	return editing.Input{BaseRevision: in.BaseRevision, Ops: ops, ClientID: in.ClientID, Seq: in.Seq}
}

func textOps(ops []codecrafter.TextOp) []*model.TextOp {
	out := make([]*model.TextOp, len(ops))
	for i, o := range ops {
		switch {
		case o.Retain > 0:
			out[i] = &model.TextOp{Retain: &o.Retain}
		case o.Delete > 0:
			out[i] = &model.TextOp{Delete: &o.Delete}
		default:
			out[i] = &model.TextOp{Insert: &o.Insert}
		}
	}
	return out
}

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
