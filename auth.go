package codecrafter

import (
	"context"
	"time"
)

// RefreshToken is a stored refresh token. Only the SHA-256 hash of the
// opaque value the client holds is stored.
type RefreshToken struct {
	Hash      string // hex SHA-256 of the token value
	FamilyID  string // every token issued from one login shares it
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time
	// UsedAt is when it was first consumed; zero until then.
	UsedAt time.Time
}

// RefreshTokenStore keeps refresh tokens for rotation with reuse detection.
type RefreshTokenStore interface {
	// CreateRefreshToken stores t unused.
	CreateRefreshToken(ctx context.Context, t RefreshToken) error
	// ConsumeRefreshToken marks the token with hash used, atomically. The
	// first call returns it with reused false; later calls return it with
	// reused true and UsedAt set to the first call's now, so the caller
	// can revoke its family (or forgive a reuse within a grace). Unknown or expired
	// tokens, and tokens of a revoked family, give UNAUTHENTICATED.
	ConsumeRefreshToken(ctx context.Context, hash string, now time.Time) (t *RefreshToken, reused bool, err error)
	// RevokeRefreshFamily makes every token of the family unusable; until
	// is the latest expiry any of them can have, after which the record
	// may be dropped.
	RevokeRefreshFamily(ctx context.Context, familyID string, until time.Time) error
	// RevokedFamiliesSince returns the families revoked at or after since,
	// so that a starting process refuses their access tokens too. Stores
	// remember revocations for at least RevokedHistory.
	RevokedFamiliesSince(ctx context.Context, since time.Time) ([]string, error)
}

// RevokedHistory is how long RefreshTokenStores remember when a family
// was revoked: more than any access token lives.
const RevokedHistory = time.Hour

// Limiter counts attempts per key in fixed windows and refuses a key's
// attempts past the limit until its window ends; a window starts at a
// key's first attempt.
type Limiter interface {
	// Take counts one attempt for key and returns 0 when it is within the
	// limit, else how long until the key's window ends. Counting and
	// checking are one atomic step, so concurrent attempts cannot all slip
	// under the limit.
	Take(ctx context.Context, key string) (retryAfter time.Duration, err error)
	// Refund gives back one attempt of key that turned out not to count
	// (a successful login); nothing when key has no attempts.
	Refund(ctx context.Context, key string) error
	// Reset forgets key's attempts.
	Reset(ctx context.Context, key string) error
}
