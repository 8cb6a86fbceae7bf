package server_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/server"
)

// fakeAuthenticate accepts "good-token" as user-1 and refuses the rest
// the way an auth service would.
func fakeAuthenticate(_ context.Context, token string) (string, error) {
	switch token {
	case "good-token":
		return "user-1", nil
	case "expired-token":
		return "", codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "access token expired")
	default:
		return "", codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "malformed access token")
	}
}

func TestHTTPAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{Authenticate: fakeAuthenticate})
	cases := []struct {
		name   string
		header string
		user   string
		errMsg string // the reason RequireUser gives when there is no user
	}{
		{"no header", "", "", "authentication required: send a valid access token"},
		{"valid token", "Bearer good-token", "user-1", ""},
		{"scheme is case-insensitive", "bearer good-token", "user-1", ""},
		{"expired token", "Bearer expired-token", "", "access token expired"},
		{"garbage token", "Bearer x.y.z", "", "malformed access token"},
		{"not bearer", "Basic dXNlcjpwdw==", "", `malformed credentials: send "Authorization: Bearer <access token>"`},
		{"bearer without token", "Bearer ", "", `malformed credentials: send "Authorization: Bearer <access token>"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r reply
			if c.header == "" {
				r = e.post(t, `{ __typename }`, nil)
			} else {
				r = e.post(t, `{ __typename }`, nil, "Authorization", c.header)
			}
			// A refused token does not stop operations that need no caller.
			if r.Data["__typename"] != "Query" {
				t.Fatalf("operation did not run: %s", r.Body)
			}
			got := e.spy.last(t)
			if got.UserID != c.user {
				t.Errorf("user %q, want %q", got.UserID, c.user)
			}
			if c.errMsg == "" {
				return
			}
			if !codecrafter.IsCode(got.AuthErr, codecrafter.EUNAUTHENTICATED) || codecrafter.ErrorMessage(got.AuthErr) != c.errMsg {
				t.Errorf("RequireUser error %v, want UNAUTHENTICATED %q", got.AuthErr, c.errMsg)
			}
		})
	}
}

func TestHTTPAuthWithoutAuthenticator(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{})
	e.post(t, `{ __typename }`, nil, "Authorization", "Bearer good-token")
	got := e.spy.last(t)
	if got.UserID != "" || !codecrafter.IsCode(got.AuthErr, codecrafter.EUNAUTHENTICATED) {
		t.Errorf("user %q, error %v", got.UserID, got.AuthErr)
	}
}

func TestHTTPAuthServiceFailureIsInternal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{Authenticate: func(context.Context, string) (string, error) {
		return "", errors.New("keyring: file not found")
	}})
	e.post(t, `{ __typename }`, nil, "Authorization", "Bearer good-token")
	if got := e.spy.last(t); codecrafter.ErrorCode(got.AuthErr) != codecrafter.EINTERNAL {
		t.Errorf("error %v, want one that presents as INTERNAL", got.AuthErr)
	}
}

// A panic outside gqlgen (here in the authenticator) is still answered
// with a GraphQL-shaped INTERNAL error and logged with its stack.
func TestPanicOutsideGraphQLIsInternal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{Authenticate: func(context.Context, string) (string, error) {
		panic("authenticator bug")
	}})
	r := e.post(t, `{ __typename }`, nil, "Authorization", "Bearer x", "X-Request-ID", "boom-1")
	if r.Status != http.StatusInternalServerError || r.code(t) != "INTERNAL" || r.Errors[0].Message != "internal error" {
		t.Errorf("%d %s", r.Status, r.Body)
	}
	l := e.logs.lines("panic serving HTTP")
	if len(l) != 1 || l[0]["request_id"] != "boom-1" || l[0]["panic"] != "authenticator bug" {
		t.Errorf("log %v", l)
	}
}
