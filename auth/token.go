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

// leeway is the clock skew allowed when checking expiry and issue time.
const leeway = 5 * time.Second

// accessClaims are an access token's claims: the registered ones and the
// refresh family ("sid", the login's session id) it was issued from.
type accessClaims struct {
	jwt.RegisteredClaims
	SID string `json:"sid,omitempty"`
}

func (s *Service) issueAccess(userID, family string, now time.Time) (string, time.Time, error) {
	exp := now.Add(s.cfg.AccessTTL)
	claims := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.cfg.Issuer,
			Subject:   userID,
			Audience:  jwt.ClaimStrings{s.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        codecrafter.RandomToken(12),
		},
		SID: family,
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.cfg.Secret)
	return tok, exp, err
}

// accessLife is how long an access token issued now can still pass Verify.
func (s *Service) accessLife() time.Duration { return s.cfg.AccessTTL + leeway }

// Verify checks an access token and returns what it says: its user, the
// login (refresh family) it came from and its expiry. A token of a login
// revoked since (logout, refresh token reuse) is refused as soon as this
// process knows of the revocation (see WatchRevocations). Tokens without
// a family (issued before families were recorded) have an empty FamilyID.
func (s *Service) Verify(token string) (codecrafter.Claims, error) {
	claims := &accessClaims{}
	_, err := jwt.ParseWithClaims(token, claims,
		func(*jwt.Token) (any, error) { return s.cfg.Secret, nil },
		jwt.WithValidMethods([]string{signingAlg}),
		jwt.WithIssuer(s.cfg.Issuer),
		jwt.WithAudience(s.cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(s.now),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return codecrafter.Claims{}, codecrafter.Wrap(err, codecrafter.EUNAUTHENTICATED, "access token expired: refresh it")
	case err != nil:
		return codecrafter.Claims{}, codecrafter.Wrap(err, codecrafter.EUNAUTHENTICATED, "invalid access token")
	case claims.Subject == "":
		return codecrafter.Claims{}, codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "invalid access token")
	case claims.SID != "" && s.revoked.has(claims.SID, s.now()):
		return codecrafter.Claims{}, codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "this login was signed out: sign in again")
	}
	return codecrafter.Claims{UserID: claims.Subject, FamilyID: claims.SID, ExpiresAt: claims.ExpiresAt.Time}, nil
}

// Authenticate checks an access token and returns its user id.
func (s *Service) Authenticate(token string) (string, error) {
	c, err := s.Verify(token)
	return c.UserID, err
}
