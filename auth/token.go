package auth

import (
	"errors"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/golang-jwt/jwt/v5"
)

// Access tokens are HS256 JWTs; the algorithm is pinned on parse so a
// token signed with anything else (alg none, RS256 with the secret as a
// public key...) is refused.
const signingAlg = "HS256"

// MaxAccessTTL caps access-token lifetime.
const MaxAccessTTL = 15 * time.Minute

func (s *Service) issueAccess(userID string, now time.Time) (string, time.Time, error) {
	exp := now.Add(s.cfg.AccessTTL)
	claims := jwt.RegisteredClaims{
		Issuer:    s.cfg.Issuer,
		Subject:   userID,
		Audience:  jwt.ClaimStrings{s.cfg.Audience},
		ExpiresAt: jwt.NewNumericDate(exp),
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        codecrafter.RandomToken(12),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.cfg.Secret)
	return tok, exp, err
}

// Authenticate checks an access token and returns its user id.
func (s *Service) Authenticate(token string) (string, error) {
	claims := &jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(token, claims,
		func(*jwt.Token) (any, error) { return s.cfg.Secret, nil },
		jwt.WithValidMethods([]string{signingAlg}),
		jwt.WithIssuer(s.cfg.Issuer),
		jwt.WithAudience(s.cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(5*time.Second),
		jwt.WithTimeFunc(s.now),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "", codecrafter.Wrap(err, codecrafter.EUNAUTHENTICATED, "access token expired: refresh it")
	case err != nil:
		return "", codecrafter.Wrap(err, codecrafter.EUNAUTHENTICATED, "invalid access token")
	case claims.Subject == "":
		return "", codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "invalid access token")
	}
	return claims.Subject, nil
}
