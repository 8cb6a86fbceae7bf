// Package auth implements accounts: registration, login with rate limits,
// access tokens (JWT) and rotating refresh tokens with reuse detection.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"github.com/codecrafter/codecrafter"
)

// Config sets the service's secrets, lifetimes and costs.
type Config struct {
	Secret     []byte // HMAC key for access tokens, at least 32 bytes
	Issuer     string
	Audience   string
	AccessTTL  time.Duration // at most MaxAccessTTL
	RefreshTTL time.Duration
	Argon2     Argon2Params
}

// DefaultConfig returns production defaults around secret.
func DefaultConfig(secret []byte) Config {
	return Config{
		Secret:     secret,
		Issuer:     "codecrafter",
		Audience:   "codecrafter-api",
		AccessTTL:  15 * time.Minute,
		RefreshTTL: 30 * 24 * time.Hour,
		Argon2:     OWASPArgon2,
	}
}

// Limiters rate-limit failed logins.
type Limiters struct {
	Account codecrafter.Limiter // keyed by normalised email
	Addr    codecrafter.Limiter // keyed by client address
}

// Service implements the account operations.
type Service struct {
	cfg      Config
	users    codecrafter.UserStore
	tokens   codecrafter.RefreshTokenStore
	limits   Limiters
	logger   *slog.Logger
	now      func() time.Time
	fakeHash string // verified against when the email is unknown, to keep timing even
}

// New returns a Service. It refuses a short secret or a long access TTL.
func New(cfg Config, users codecrafter.UserStore, tokens codecrafter.RefreshTokenStore, limits Limiters, logger *slog.Logger) (*Service, error) {
	if len(cfg.Secret) < 32 {
		return nil, errors.New("auth: the JWT secret must be at least 32 bytes")
	}
	if cfg.AccessTTL <= 0 || cfg.AccessTTL > MaxAccessTTL {
		return nil, errors.New("auth: access token TTL must be in (0, 15m]")
	}
	if cfg.RefreshTTL <= 0 {
		return nil, errors.New("auth: refresh token TTL must be positive")
	}
	return &Service{
		cfg: cfg, users: users, tokens: tokens, limits: limits, logger: logger,
		now:      time.Now,
		fakeHash: HashPassword(codecrafter.RandomToken(16), cfg.Argon2),
	}, nil
}

// SetClock replaces the service's clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// Payload is what register, login and refresh return.
type Payload struct {
	AccessToken  string
	RefreshToken string
	ExpiresAt    time.Time
	User         *codecrafter.User
}

// Register creates an account and signs it in.
func (s *Service) Register(ctx context.Context, email, password, name string) (*Payload, error) {
	email, err := codecrafter.NormalizeEmail(email)
	if err != nil {
		return nil, err
	}
	if err := codecrafter.ValidatePassword(password); err != nil {
		return nil, err
	}
	if name, err = codecrafter.NormalizeText("name", name, codecrafter.MaxNameLen); err != nil {
		return nil, err
	}
	u := &codecrafter.User{
		ID:           codecrafter.NewID(),
		Email:        email,
		Name:         name,
		PasswordHash: HashPassword(password, s.cfg.Argon2),
		CreatedAt:    s.now().UTC().Truncate(time.Millisecond),
	}
	if err := s.users.CreateUser(ctx, u); err != nil {
		if codecrafter.IsCode(err, codecrafter.ECONFLICT) {
			return nil, codecrafter.Errorf(codecrafter.ECONFLICT, "email: %s is already registered", email)
		}
		return nil, err
	}
	s.logger.InfoContext(ctx, "user registered", "user", u.ID)
	return s.signIn(ctx, u, codecrafter.NewID())
}

// errBadLogin is the one answer to a wrong password and an unknown email.
var errBadLogin = codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "invalid email or password")

// Login checks credentials. Failures are counted per account and per
// client address; past the limit, attempts get RATE_LIMITED until the
// window ends, without checking the password.
func (s *Service) Login(ctx context.Context, email, password string) (*Payload, error) {
	norm, err := codecrafter.NormalizeEmail(email)
	if err != nil {
		return nil, errBadLogin
	}
	acctKey, addrKey := "acct:"+norm, "addr:"+codecrafter.ClientAddrFromContext(ctx)
	if err := s.checkLimits(ctx, acctKey, addrKey); err != nil {
		return nil, err
	}
	u, err := s.users.UserByEmail(ctx, norm)
	if err != nil && !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		return nil, err
	}
	hash := s.fakeHash
	if u != nil {
		hash = u.PasswordHash
	}
	ok, err := CheckPassword(password, hash)
	if err != nil {
		return nil, codecrafter.Wrap(err, codecrafter.EINTERNAL, "internal error")
	}
	if u == nil || !ok {
		s.failed(ctx, acctKey, addrKey)
		return nil, errBadLogin
	}
	if err := s.limits.Account.Reset(ctx, acctKey); err != nil {
		s.logger.WarnContext(ctx, "login limiter reset failed", "err", err)
	}
	return s.signIn(ctx, u, codecrafter.NewID())
}

func (s *Service) checkLimits(ctx context.Context, keys ...string) error {
	var wait time.Duration
	for i, l := range []codecrafter.Limiter{s.limits.Account, s.limits.Addr} {
		d, err := l.Blocked(ctx, keys[i])
		if err != nil {
			return err
		}
		wait = max(wait, d)
	}
	if wait > 0 {
		return &codecrafter.Error{
			Code:       codecrafter.ERATELIMITED,
			Message:    "too many failed logins: try again later",
			RetryAfter: wait,
		}
	}
	return nil
}

func (s *Service) failed(ctx context.Context, acctKey, addrKey string) {
	for _, f := range []func() error{
		func() error { return s.limits.Account.Fail(ctx, acctKey) },
		func() error { return s.limits.Addr.Fail(ctx, addrKey) },
	} {
		if err := f(); err != nil {
			s.logger.WarnContext(ctx, "login limiter failed", "err", err)
		}
	}
	s.logger.InfoContext(ctx, "login failed", "addr", addrKey)
}

// Refresh exchanges a refresh token for a new pair. Each token works once:
// presenting a used one revokes every token of its family.
func (s *Service) Refresh(ctx context.Context, token string) (*Payload, error) {
	now := s.now()
	t, reused, err := s.tokens.ConsumeRefreshToken(ctx, hashToken(token), now)
	if err != nil {
		return nil, err
	}
	if reused {
		if err := s.tokens.RevokeRefreshFamily(ctx, t.FamilyID, now.Add(s.cfg.RefreshTTL)); err != nil {
			return nil, err
		}
		s.logger.WarnContext(ctx, "refresh token reused: family revoked", "user", t.UserID, "family", t.FamilyID)
		return nil, codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "refresh token already used: sign in again")
	}
	u, err := s.users.User(ctx, t.UserID)
	if err != nil {
		if codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
			return nil, codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "invalid refresh token")
		}
		return nil, err
	}
	return s.signIn(ctx, u, t.FamilyID)
}

// Logout revokes the token's whole family. Unknown, expired or already
// revoked tokens are not an error: the result is the same.
func (s *Service) Logout(ctx context.Context, token string) error {
	now := s.now()
	t, _, err := s.tokens.ConsumeRefreshToken(ctx, hashToken(token), now)
	if codecrafter.IsCode(err, codecrafter.EUNAUTHENTICATED) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.tokens.RevokeRefreshFamily(ctx, t.FamilyID, now.Add(s.cfg.RefreshTTL))
}

// Me returns the caller.
func (s *Service) Me(ctx context.Context) (*codecrafter.User, error) {
	id, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	u, err := s.users.User(ctx, id)
	if codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		return nil, codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "the account of this token no longer exists")
	}
	return u, err
}

// User returns any user; the caller must be signed in.
func (s *Service) User(ctx context.Context, id string) (*codecrafter.User, error) {
	if _, err := codecrafter.RequireUser(ctx); err != nil {
		return nil, err
	}
	return s.users.User(ctx, id)
}

func (s *Service) signIn(ctx context.Context, u *codecrafter.User, family string) (*Payload, error) {
	now := s.now()
	access, exp, err := s.issueAccess(u.ID, now)
	if err != nil {
		return nil, codecrafter.Wrap(err, codecrafter.EINTERNAL, "internal error")
	}
	refresh := codecrafter.RandomToken(32)
	err = s.tokens.CreateRefreshToken(ctx, codecrafter.RefreshToken{
		Hash:      hashToken(refresh),
		FamilyID:  family,
		UserID:    u.ID,
		CreatedAt: now,
		ExpiresAt: now.Add(s.cfg.RefreshTTL),
	})
	if err != nil {
		return nil, err
	}
	return &Payload{AccessToken: access, RefreshToken: refresh, ExpiresAt: exp, User: u}, nil
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
