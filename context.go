package codecrafter

import "context"

type ctxKey int

const (
	userIDKey ctxKey = iota
	authErrKey
	requestIDKey
	clientAddrKey
)

// WithUserID returns ctx carrying the authenticated caller's id.
func WithUserID(ctx context.Context, userID string) context.Context {
	return context.WithValue(ctx, userIDKey, userID)
}

// UserIDFromContext returns the authenticated caller's id, or "".
func UserIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(userIDKey).(string)
	return id
}

// WithAuthError returns ctx recording why the presented token was refused,
// so operations that need a caller can say why (expired, malformed...)
// while operations that don't (login, register) still work.
func WithAuthError(ctx context.Context, err error) context.Context {
	return context.WithValue(ctx, authErrKey, err)
}

// RequireUser returns the caller's id, or an UNAUTHENTICATED error saying
// why there is none.
func RequireUser(ctx context.Context) (string, error) {
	if id := UserIDFromContext(ctx); id != "" {
		return id, nil
	}
	if err, _ := ctx.Value(authErrKey).(error); err != nil {
		return "", err
	}
	return "", Errorf(EUNAUTHENTICATED, "authentication required: send a valid access token")
}

// AuthErrorFromContext returns the error WithAuthError recorded, or nil.
func AuthErrorFromContext(ctx context.Context) error {
	err, _ := ctx.Value(authErrKey).(error)
	return err
}

// WithRequestID returns ctx carrying the request id used in logs and errors.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestIDFromContext returns the request id, or "".
func RequestIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// WithClientAddr returns ctx carrying the client's address (for rate limits).
func WithClientAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientAddrKey, addr)
}

// ClientAddrFromContext returns the client's address, or "".
func ClientAddrFromContext(ctx context.Context) string {
	a, _ := ctx.Value(clientAddrKey).(string)
	return a
}
