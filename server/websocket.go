package server

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"

	"github.com/codecrafter/codecrafter"
)

// closeForbidden is graphql-transport-ws's close code for a refused
// connection_init.
const closeForbidden = 4403

// Close codes of the graphql-transport-ws protocol that gqlgen does not
// send itself (both protocols get them here).
const (
	closeInitTimeout  = 4408 // no connection_init in time
	closeUnauthorized = 4401 // an operation before the connection_ack
	closeDuplicateID  = 4409 // an operation id already running
	closeTooManyInits = 4429 // connection_init twice
)

// incoming checks a client message against the protocol and returns the
// close code and reason when it breaks it (0 when it does not). The
// transport refuses an id already running (closeDuplicateID).
func (st *wsState) incoming(typ string) (int, string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch typ {
	case "subscribe", "start":
		if !st.acked {
			return closeUnauthorized, "Unauthorized"
		}
	case "connection_init":
		if st.acked {
			return closeTooManyInits, "Too many initialisation requests"
		}
	}
	return 0, ""
}

// ack notes the connection_ack.
func (st *wsState) ack() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.acked = true
}

// identity returns the user and their token's expiry (zero: none).
func (st *wsState) identity() (string, time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.userID, st.expires
}

func (st *wsState) isAcked() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.acked
}

// wsState follows one WebSocket request: the middleware that serves it
// closes the connection and accounts for it when gqlgen is done.
type wsState struct {
	addr   string             // the client's address, for the socket limits
	ctx    context.Context    // the socket's: serveWebsocket's, without what the handler adds per request
	cancel context.CancelFunc // ends the socket's context

	mu          sync.Mutex
	conn        *websocket.Conn
	start       time.Time
	onClose     func(start time.Time, code int) // the transport's account, once upgraded
	closeSocket func()                          // the transport's: closes the socket
	done        func()                          // serveWebsocket's account
	closeCode   int
	userID      string // once connection_init authenticated
	ops         int    // operations running
	acked       bool   // connection_ack sent
	forcedCode  int
	forcedMsg   string
	expires     time.Time // the access token's expiry (zero: none)
	endIdentity func()    // stops the login's watch
}

// force makes the socket's close frame say code and message, when the
// server ends it.
func (st *wsState) force(code int, message string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.forcedCode == 0 {
		st.forcedCode, st.forcedMsg = code, message
	}
}

func (st *wsState) forcedClose() (int, string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.forcedCode, st.forcedMsg
}

func (st *wsState) startOperation(limit int) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if limit > 0 && st.ops >= limit {
		return false
	}
	st.ops++
	return true
}

func (st *wsState) endOperation() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.ops--
}

type wsStateKey struct{}

func wsStateFrom(ctx context.Context) *wsState {
	st, _ := ctx.Value(wsStateKey{}).(*wsState)
	return st
}

// accepted notes the upgrade; onClose accounts for the socket when it
// ends.
func (st *wsState) accepted(c *websocket.Conn, onClose func(start time.Time, code int), closeSocket func()) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.conn, st.start, st.onClose, st.closeSocket = c, time.Now(), onClose, closeSocket
}

// endSocket closes the socket (with the code force set, if any).
func (st *wsState) endSocket() {
	st.mu.Lock()
	closeSocket := st.closeSocket
	st.mu.Unlock()
	if closeSocket != nil {
		closeSocket()
	}
}

// finish accounts for a socket that ended (or was never upgraded).
func (st *wsState) finish() {
	st.mu.Lock()
	start, code, onClose, done := st.start, st.closeCode, st.onClose, st.done
	st.mu.Unlock()
	if onClose != nil {
		onClose(start, code)
	}
	done()
}

// closed notes the close code of the closing handshake's first frame.
func (st *wsState) closed(code int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closeCode == 0 {
		st.closeCode = code
	}
}

// serveWebsocket runs an upgrade request through gqlgen into wsTransport,
// which serves the socket on goroutines of its own after the handler
// returns (so that net/http's per-connection buffers go). The socket's
// context ends with Shutdown, which closes it.
func (s *Server) serveWebsocket(next http.Handler, w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(socketContext(r.Context()))
	st := &wsState{addr: codecrafter.ClientAddrFromContext(ctx), cancel: cancel}
	if err := s.sockets.open(st.addr, time.Now()); err != nil {
		cancel()
		s.logger(ctx).Info("websocket refused", "err", err)
		refuseWebsocket(w, r, err)
		return
	}
	s.sockets.track(st) // Shutdown ends it
	if s.shutdown.Err() != nil {
		cancel()
	}
	st.done = func() {
		s.sockets.untrack(st)
		cancel()
		st.mu.Lock()
		userID, endIdentity := st.userID, st.endIdentity
		st.mu.Unlock()
		s.sockets.closed(st.addr, userID)
		if endIdentity != nil {
			endIdentity()
		}
	}
	ctx = context.WithValue(ctx, wsStateKey{}, st)
	ctx = context.WithValue(ctx, transportKey{}, transportWebsocket)
	st.ctx = ctx

	next.ServeHTTP(w, r.WithContext(ctx))

	st.mu.Lock()
	upgraded := st.conn != nil
	st.mu.Unlock()
	if !upgraded { // refused (origin, a bad handshake): answered already
		st.finish()
	}
}

// socketContext is a socket's base: the values of the upgrade request
// that serving it reads, without net/http's contexts, which the socket
// would otherwise hold for its whole life.
func socketContext(r context.Context) context.Context {
	ctx := codecrafter.WithRequestID(context.Background(), codecrafter.RequestIDFromContext(r))
	ctx = codecrafter.WithClientAddr(ctx, codecrafter.ClientAddrFromContext(r))
	if err := codecrafter.AuthErrorFromContext(r); err != nil {
		ctx = codecrafter.WithAuthError(ctx, err)
	}
	if c, ok := claimsFrom(r); ok {
		ctx = withClaims(codecrafter.WithUserID(ctx, c.UserID), c)
	}
	return ctx
}

// websocketInit authenticates a connection from its connection_init
// payload, or from the upgrade request's Authorization header when the
// payload has no token (else the socket stays anonymous). A refused token
// rejects the connection (4403 on graphql-transport-ws, connection_error
// then close on graphql-ws); so does a user over the socket cap (4429).
//
// Access is not checked once: the socket closes with 4403 when its access
// token expires or its login is revoked (logout, refresh token reuse). A
// client reconnects with a fresh token (graphql-ws retries on 4403 and
// re-reads connectionParams); there is no re-authentication in place.
func (s *Server) websocketInit(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
	st := wsStateFrom(ctx)
	token, err := initPayloadToken(p)
	var claims codecrafter.Claims
	switch {
	case err == nil && token != "":
		claims, err = s.authenticate(ctx, token)
	case err == nil:
		var ok bool
		if claims, ok = claimsFrom(ctx); !ok {
			return ctx, nil, nil // anonymous: counted as unauthenticated while open
		}
	}
	if err == nil {
		err = s.sockets.authenticated(st.addr, claims.UserID)
		if err != nil {
			return s.refuseInit(ctx, closeTooMany, "Too many connections: ", err)
		}
	}
	if err != nil {
		return s.refuseInit(ctx, closeForbidden, "Forbidden: ", err)
	}

	// The user's context is the socket's: it ends when their access does
	// (token expired: the transport's timer, login revoked), which closes
	// the socket.
	userID := claims.UserID
	ctx = codecrafter.WithUserID(ctx, userID)
	unwatch := func() {}
	if s.deps.Access != nil {
		unwatch = s.deps.Access.WatchLogin(claims.FamilyID, func() {
			s.endAccess(ctx, st, userID, "Forbidden: this login was revoked; sign in again")
		})
	}
	st.mu.Lock()
	st.userID, st.expires, st.endIdentity = userID, claims.ExpiresAt, unwatch
	st.mu.Unlock()
	return ctx, nil, nil
}

// endAccess closes a socket whose access ended, saying why.
func (s *Server) endAccess(ctx context.Context, st *wsState, userID, msg string) {
	st.force(closeAccessEnded, msg)
	s.logger(ctx).Info("websocket access ended", "user", userID, "reason", msg)
	st.endSocket()
}

// refuseInit rejects connection_init with err, closing with code.
func (s *Server) refuseInit(ctx context.Context, code int, prefix string, err error) (context.Context, *transport.InitPayload, error) {
	msg := codecrafter.ErrorMessage(err)
	s.logger(ctx).Info("websocket connection_init refused", "err", err)
	return ctx, nil, &initRefused{code: code, reason: prefix + msg, message: msg}
}

// initRefused is a refused connection_init: the close code and reason,
// and the message of graphql-ws's connection_error.
type initRefused struct {
	code            int
	reason, message string
}

func (e *initRefused) Error() string { return e.message }

// initPayloadToken finds the access token in a connection_init payload:
// {"authorization": "Bearer <t>"}, {"Authorization": ...} or
// {"token": "<t>"}. It returns "" when there is none.
func initPayloadToken(p transport.InitPayload) (string, error) {
	for _, key := range []string{"authorization", "Authorization", "token"} {
		v, ok := p[key]
		if !ok || v == nil || v == "" {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return "", codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "connection_init payload: %s must be a string", key)
		}
		if key == "token" && !strings.Contains(strings.TrimSpace(s), " ") {
			return strings.TrimSpace(s), nil
		}
		return bearerToken(s)
	}
	return "", nil
}

func (s *Server) websocketError(ctx context.Context, err error) {
	s.logger(ctx).Debug("websocket error", "err", err)
}
