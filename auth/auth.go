// Package auth implements accounts: registration, login with rate limits,
// access tokens (JWT) and rotating refresh tokens with reuse detection.
package auth

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"runtime"
	"sync/atomic"
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

	// ReuseGrace forgives presenting a used refresh token this soon after
	// its first use (two tabs refreshing at once, a retried request): the
	// caller gets a fresh pair of the same family instead of the family
	// being revoked, as RFC 9700 (4.14.2) permits. 0: no grace.
	ReuseGrace time.Duration

	// MaxHashes bounds the password hashes running at once (0: two per
	// CPU); MaxHashWaiters how many more requests may wait for one (0:
	// eight per slot), each for at most MaxHashWait (0: 5s).
	MaxHashes      int
	MaxHashWaiters int
	MaxHashWait    time.Duration

	// Bus, when set, carries an AccessChange{FamilyID} on
	// codecrafter.AccessTopic for every revoked login.
	Bus codecrafter.Bus
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
		ReuseGrace: 10 * time.Second,
	}
}

// Limiters rate-limit logins and registrations.
type Limiters struct {
	Account  codecrafter.Limiter // failed logins, keyed by normalised email
	Addr     codecrafter.Limiter // failed logins, keyed by client address
	Register codecrafter.Limiter // registrations, keyed by client address
}

// Service implements the account operations.
type Service struct {
	cfg      Config
	users    codecrafter.UserStore
	tokens   codecrafter.RefreshTokenStore
	limits   Limiters
	logger   *slog.Logger
	clock    atomic.Pointer[func() time.Time]
	gate     *hashGate
	revoked  revokedSet
	fakeHash string // verified against when the email is unknown, to keep timing even

	onRevoked func(family string) // test hook: WatchRevocations took in an event
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
	if limits.Account == nil || limits.Addr == nil || limits.Register == nil {
		return nil, errors.New("auth: every limiter is required")
	}
	cfg.MaxHashes = cmp.Or(cfg.MaxHashes, 2*runtime.GOMAXPROCS(0))
	cfg.MaxHashWaiters = cmp.Or(cfg.MaxHashWaiters, 8*cfg.MaxHashes)
	cfg.MaxHashWait = cmp.Or(cfg.MaxHashWait, 5*time.Second)
	s := &Service{
		cfg: cfg, users: users, tokens: tokens, limits: limits, logger: logger,
		gate:     newHashGate(cfg.MaxHashes, cfg.MaxHashWaiters, cfg.MaxHashWait),
		fakeHash: HashPassword(codecrafter.RandomToken(16), cfg.Argon2),
	}
	s.SetClock(time.Now)
	return s, nil
}

// SetClock replaces the service's clock (tests); safe while serving.
func (s *Service) SetClock(now func() time.Time) { s.clock.Store(&now) }

func (s *Service) now() time.Time { return (*s.clock.Load())() }

// Payload is what register, login and refresh return.
type Payload struct {
	AccessToken  string
	RefreshToken string
	ExpiresAt    time.Time
	User         *codecrafter.User
}

// Register creates an account and signs it in. Registrations are
// limited per client address.
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
	reg := limit{s.limits.Register, "addr:" + codecrafter.ClientAddrFromContext(ctx)}
	if err := s.take(ctx, "too many registrations from this address: try again later", reg); err != nil {
		return nil, err
	}
	var hash string
	if err := s.gate.do(ctx, func() { hash = HashPassword(password, s.cfg.Argon2) }); err != nil {
		s.refund(ctx, reg) // nothing was tried
		return nil, err
	}
	u := &codecrafter.User{
		ID:           codecrafter.NewID(),
		Email:        email,
		Name:         name,
		PasswordHash: hash,
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

// Login checks credentials. Every attempt is counted per account and per
// client address before the password is hashed, so concurrent attempts
// cannot outrun the limit; a success resets the account's count and
// gives the address's attempt back. Past the limit, attempts get
// RATE_LIMITED until the window ends, without checking the password.
func (s *Service) Login(ctx context.Context, email, password string) (*Payload, error) {
	norm, err := codecrafter.NormalizeEmail(email)
	if err != nil {
		return nil, errBadLogin
	}
	acct := limit{s.limits.Account, "acct:" + norm}
	addr := limit{s.limits.Addr, "addr:" + codecrafter.ClientAddrFromContext(ctx)}
	if err := s.take(ctx, "too many failed logins: try again later", acct, addr); err != nil {
		return nil, err
	}
	u, err := s.users.UserByEmail(ctx, norm)
	if err != nil && !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		s.refund(ctx, acct, addr)
		return nil, err
	}
	hash := s.fakeHash
	if u != nil {
		hash = u.PasswordHash
	}
	var ok bool
	var checkErr error
	if err := s.gate.do(ctx, func() { ok, checkErr = CheckPassword(password, hash) }); err != nil {
		s.refund(ctx, acct, addr) // the password was not checked
		return nil, err
	}
	if checkErr != nil {
		return nil, codecrafter.Wrap(checkErr, codecrafter.EINTERNAL, "internal error")
	}
	if u == nil || !ok {
		s.logger.InfoContext(ctx, "login failed", "addr", addr.key)
		return nil, errBadLogin
	}
	if err := acct.l.Reset(ctx, acct.key); err != nil {
		s.logger.WarnContext(ctx, "login limiter reset failed", "err", err)
	}
	s.refund(ctx, addr)
	return s.signIn(ctx, u, codecrafter.NewID())
}

// limit is a limiter and the key an attempt counts under.
type limit struct {
	l   codecrafter.Limiter
	key string
}

// take counts an attempt under every limit, in order; when one refuses
// (RATE_LIMITED with message) or fails, the attempts counted under the
// limits before it are given back.
func (s *Service) take(ctx context.Context, message string, limits ...limit) error {
	for i, lim := range limits {
		wait, err := lim.l.Take(ctx, lim.key)
		if err == nil && wait <= 0 {
			continue
		}
		s.refund(ctx, limits[:i]...)
		if err != nil {
			return err
		}
		return &codecrafter.Error{Code: codecrafter.ERATELIMITED, Message: message, RetryAfter: wait}
	}
	return nil
}

// refund gives back an attempt under each limit; a failure is only logged.
func (s *Service) refund(ctx context.Context, limits ...limit) {
	for _, lim := range limits {
		if err := lim.l.Refund(context.WithoutCancel(ctx), lim.key); err != nil {
			s.logger.WarnContext(ctx, "limiter refund failed", "err", err)
		}
	}
}

// Refresh exchanges a refresh token for a new pair. Each token works once:
// presenting a used one revokes every token of its family, unless it is
// within ReuseGrace of the token's first use (then it gets a new pair of
// the same family).
func (s *Service) Refresh(ctx context.Context, token string) (*Payload, error) {
	now := s.now()
	t, reused, err := s.tokens.ConsumeRefreshToken(ctx, hashToken(token), now)
	if err != nil {
		return nil, err
	}
	if reused {
		if s.cfg.ReuseGrace <= 0 || now.Sub(t.UsedAt) > s.cfg.ReuseGrace {
			if err := s.revoke(ctx, t.FamilyID, now); err != nil {
				return nil, err
			}
			s.logger.WarnContext(ctx, "refresh token reused: family revoked", "user", t.UserID, "family", t.FamilyID)
			return nil, codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "refresh token already used: sign in again")
		}
		s.logger.InfoContext(ctx, "refresh token reused within the grace", "user", t.UserID, "family", t.FamilyID)
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
	return s.revoke(ctx, t.FamilyID, now)
}

// revoke ends a login: its refresh tokens stop working, and its access
// tokens too, here at once and elsewhere when the event arrives.
func (s *Service) revoke(ctx context.Context, family string, now time.Time) error {
	if err := s.tokens.RevokeRefreshFamily(ctx, family, now.Add(s.cfg.RefreshTTL)); err != nil {
		return err
	}
	s.revoked.add(family, now.Add(s.accessLife()), now)
	if s.cfg.Bus == nil {
		return nil
	}
	// The revocation stands even if the client has gone by now.
	payload := codecrafter.EncodeAccessChange(codecrafter.AccessChange{FamilyID: family})
	if err := s.cfg.Bus.Publish(context.WithoutCancel(ctx), codecrafter.AccessTopic, payload); err != nil {
		s.logger.WarnContext(ctx, "publishing a revoked login", "family", family, "err", err)
	}
	return nil
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
	access, exp, err := s.issueAccess(u.ID, family, now)
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
