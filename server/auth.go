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
		var userID string
		if err == nil {
			userID, err = s.authenticate(ctx, token)
		}
		if err != nil {
			s.logger(ctx).Debug("access token refused", "err", err)
			ctx = codecrafter.WithAuthError(ctx, err)
		} else {
			ctx = codecrafter.WithUserID(ctx, userID)
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

// authenticate checks token with Deps.Authenticate. Its errors pass
// through: coded ones as they are, anything else ends up INTERNAL.
func (s *Server) authenticate(ctx context.Context, token string) (string, error) {
	if s.deps.Authenticate == nil {
		return "", codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "access tokens are not accepted by this server")
	}
	id, err := s.deps.Authenticate(ctx, token)
	if err == nil && id == "" {
		err = codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "invalid access token")
	}
	return id, err
}
