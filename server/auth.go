package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/codecrafter/codecrafter"
)

// withAuth authenticates "Authorization: Bearer <token>". A valid token
// puts the user id in the context; a refused one puts the reason, so
// operations that need a caller report it while login and register still
// work. No header: anonymous.
func (s *Server) withAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if h == "" {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		token, err := bearerToken(h)
		var claims codecrafter.Claims
		if err == nil {
			claims, err = s.authenticate(ctx, token)
		}
		if err != nil {
			s.logger(ctx).Debug("access token refused", "err", err)
			ctx = codecrafter.WithAuthError(ctx, err)
		} else {
			ctx = withClaims(codecrafter.WithUserID(ctx, claims.UserID), claims)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// bearerToken returns the token of a "Bearer <token>" credential.
func bearerToken(credential string) (string, error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(credential), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, `malformed credentials: send "Authorization: Bearer <access token>"`)
	}
	return token, nil
}

// authenticate checks token with Deps.Verify, or Deps.Authenticate when
// there is no Verify. Its errors pass through: coded ones as they are,
// anything else ends up INTERNAL.
func (s *Server) authenticate(ctx context.Context, token string) (codecrafter.Claims, error) {
	var c codecrafter.Claims
	var err error
	switch {
	case s.deps.Verify != nil:
		c, err = s.deps.Verify(ctx, token)
	case s.deps.Authenticate != nil:
		c.UserID, err = s.deps.Authenticate(ctx, token)
	default:
		return c, codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "access tokens are not accepted by this server")
	}
	if err == nil && c.UserID == "" {
		err = codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "invalid access token")
	}
	return c, err
}

type claimsKey struct{}

func withClaims(ctx context.Context, c codecrafter.Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// claimsFrom returns the claims withAuth verified, if any.
func claimsFrom(ctx context.Context) (codecrafter.Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(codecrafter.Claims)
	return c, ok
}
