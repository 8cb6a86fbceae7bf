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
}

// RefreshTokenStore keeps refresh tokens for rotation with reuse detection.
type RefreshTokenStore interface {
	// CreateRefreshToken stores t unused.
	CreateRefreshToken(ctx context.Context, t RefreshToken) error
	// ConsumeRefreshToken marks the token with hash used, atomically. The
	// first call returns it with reused false; later calls return it with
	// reused true, so the caller can revoke its family. Unknown or expired
	// tokens, and tokens of a revoked family, give UNAUTHENTICATED.
	ConsumeRefreshToken(ctx context.Context, hash string, now time.Time) (t *RefreshToken, reused bool, err error)
	// RevokeRefreshFamily makes every token of the family unusable; until
	// is the latest expiry any of them can have, after which the record
	// may be dropped.
	RevokeRefreshFamily(ctx context.Context, familyID string, until time.Time) error
}

// Limiter counts failures per key in a fixed window and blocks a key once
// it reaches the limit, until the window ends.
type Limiter interface {
	// Blocked returns how long key stays blocked; 0 when it is not.
	Blocked(ctx context.Context, key string) (time.Duration, error)
	// Fail counts one failure for key.
	Fail(ctx context.Context, key string) error
	// Reset forgets key's failures.
	Reset(ctx context.Context, key string) error
}
