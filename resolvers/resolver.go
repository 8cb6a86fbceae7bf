// Package resolvers maps GraphQL operations onto the services. Resolvers
// stay thin: read arguments, make one service call, return.
package resolvers

import (
	"context"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/auth"
	"github.com/codecrafter/codecrafter/graph/model"
	"github.com/codecrafter/codecrafter/sessions"
)

// Resolver is the dependency root of the GraphQL layer.
type Resolver struct {
	Auth     *auth.Service
	Sessions *sessions.Service
	Users    codecrafter.UserStore
	Runtimes codecrafter.Runtimes
}

func payload(p *auth.Payload, err error) (*model.AuthPayload, error) {
	if err != nil {
		return nil, err
	}
	return &model.AuthPayload{AccessToken: p.AccessToken, RefreshToken: p.RefreshToken, ExpiresAt: p.ExpiresAt, User: p.User}, nil
}

// user loads a user referenced by another object (owner, author...).
func (r *Resolver) user(ctx context.Context, id string) (*codecrafter.User, error) {
	return r.Users.User(ctx, id)
}

func notYet(what string) error {
	return codecrafter.Errorf(codecrafter.EUNAVAILABLE, "%s is not available in this deployment yet", what)
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
