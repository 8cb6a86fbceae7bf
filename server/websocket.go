package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
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

// gorillaWebsocket plugs github.com/gorilla/websocket into gqlgen's
// WebSocket transport: the Upgrader checks the Origin against the same
// allow-list as CORS and negotiates graphql-transport-ws or graphql-ws.
type gorillaWebsocket struct{ s *Server }

func (g *gorillaWebsocket) Accept(w http.ResponseWriter, r *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	up := websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		Subprotocols:     opts.Subprotocols,
		CheckOrigin:      func(r *http.Request) bool { return g.s.origins.allowed(r) },
		// gqlgen answers a failed upgrade itself; writing here too would
		// send two responses.
		Error: func(http.ResponseWriter, *http.Request, int, error) {},
	}
	header := opts.ResponseHeader
	if name := w.Header().Get(ReplicaHeader); name != "" {
		// The upgrade response is written by gorilla, not from w's header.
		header = header.Clone()
		if header == nil {
			header = http.Header{}
		}
		header.Set(ReplicaHeader, name)
	}
	conn, err := up.Upgrade(w, r, header)
	if err != nil {
		return nil, err
	}
	st := wsStateFrom(r.Context()) // set by serveWebsocket, the only way here
	st.accepted(conn)
	g.s.metrics.wsActive.Inc()
	g.s.logger(r.Context()).Info("websocket connected",
		"subprotocol", conn.Subprotocol(), "origin", r.Header.Get("Origin"))
	return &gorillaConn{Conn: conn, st: st}, nil
}

// gorillaConn adapts *websocket.Conn to transport.WebsocketConn (and its
// optional read limit and read deadline), noting the first close code
// either side sends.
type gorillaConn struct {
	*websocket.Conn
	st *wsState
}

var (
	_ transport.WebsocketConn          = (*gorillaConn)(nil)
	_ transport.WebsocketReadLimiter   = (*gorillaConn)(nil)
	_ transport.WebsocketReadDeadliner = (*gorillaConn)(nil)
)

func (c *gorillaConn) NextReader() (int, io.Reader, error) {
	t, r, err := c.Conn.NextReader()
	var b []byte
	if err == nil {
		b, err = io.ReadAll(r) // (bounded by the read limit) to check it first
	}
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		c.st.closed(ce.Code)
		if ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway || ce.Code == websocket.CloseNoStatusReceived {
			return t, nil, transport.ErrWebsocketClosed
		}
		return t, nil, err
	case errors.Is(err, websocket.ErrReadLimit):
		c.st.closed(websocket.CloseMessageTooBig) // gorilla has sent it
		return t, nil, err
	case err != nil:
		return t, nil, err
	}
	if code, reason := c.st.incoming(b); code != 0 {
		_ = c.WriteClose(code, reason)
		return t, nil, transport.ErrWebsocketClosed
	}
	return t, bytes.NewReader(b), nil
}

// WriteJSON sends v, noting what the protocol checks of incoming
// messages need: the connection_ack, and operations that ended.
func (c *gorillaConn) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.st.outgoing(b)
	return c.WriteMessage(websocket.TextMessage, b)
}

func (c *gorillaConn) WriteClose(code int, message string) error {
	// gqlgen closes a socket whose context ended with 1000 "terminated";
	// when we ended it (token expired, login revoked) say so instead.
	if fc, fm := c.st.forcedClose(); fc != 0 {
		code, message = fc, fm
	}
	if code == transport.WebsocketCloseProtocolError && message == "connection initialisation timeout" {
		code = closeInitTimeout // graphql-transport-ws's code for it
	}
	// A close frame's payload is at most 125 bytes, 2 of them the code.
	msg := truncate(message, 123)
	c.st.closed(code)
	return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, msg), time.Now().Add(time.Second))
}

// Close codes of the graphql-transport-ws protocol that gqlgen does not
// send itself (both protocols get them here).
const (
	closeInitTimeout  = 4408 // no connection_init in time
	closeUnauthorized = 4401 // an operation before the connection_ack
	closeDuplicateID  = 4409 // an operation id already running
	closeTooManyInits = 4429 // connection_init twice
)

// wsHeader is the part of a protocol message the checks read.
type wsHeader struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// incoming checks a client message against the protocol and returns the
// close code and reason when it breaks it (0 when it does not).
func (st *wsState) incoming(b []byte) (int, string) {
	var h wsHeader
	if json.Unmarshal(b, &h) != nil {
		return 0, "" // gqlgen answers malformed messages
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch h.Type {
	case "subscribe", "start":
		if !st.acked {
			return closeUnauthorized, "Unauthorized"
		}
		if _, dup := st.ids[h.ID]; dup {
			return closeDuplicateID, "Subscriber for " + truncate(h.ID, 80) + " already exists"
		}
		if st.ids == nil {
			st.ids = map[string]struct{}{}
		}
		st.ids[h.ID] = struct{}{}
	case "complete", "stop":
		delete(st.ids, h.ID)
	case "connection_init":
		if st.acked {
			return closeTooManyInits, "Too many initialisation requests"
		}
	}
	return 0, ""
}

// outgoing notes a server message: the ack, and operations it ended.
func (st *wsState) outgoing(b []byte) {
	var h wsHeader
	if json.Unmarshal(b, &h) != nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch h.Type {
	case "connection_ack":
		st.acked = true
	case "complete", "error":
		delete(st.ids, h.ID)
	}
}

// wsState follows one WebSocket request: the middleware that serves it
// closes the connection and accounts for it when gqlgen is done.
type wsState struct {
	addr string // the client's address, for the socket limits

	mu          sync.Mutex
	conn        *websocket.Conn
	start       time.Time
	closeCode   int
	userID      string              // once connection_init authenticated
	ops         int                 // operations running
	acked       bool                // connection_ack sent
	ids         map[string]struct{} // operations the client started and that have not ended
	forcedCode  int
	forcedMsg   string
	endIdentity func() // stops the expiry timer
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

func (st *wsState) accepted(c *websocket.Conn) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.conn, st.start = c, time.Now()
}

// closed notes the close code of the closing handshake's first frame.
func (st *wsState) closed(code int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closeCode == 0 {
		st.closeCode = code
	}
}

// serveWebsocket runs an upgrade request through gqlgen. The connection's
// context ends with Shutdown, which makes gqlgen close the socket.
func (s *Server) serveWebsocket(next http.Handler, w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.shutdown, cancel)
	defer stop()
	st := &wsState{addr: codecrafter.ClientAddrFromContext(ctx)}
	if err := s.sockets.open(st.addr, time.Now()); err != nil {
		s.logger(ctx).Info("websocket refused", "err", err)
		refuseWebsocket(w, r, err)
		return
	}
	ctx = context.WithValue(ctx, wsStateKey{}, st)
	ctx = context.WithValue(ctx, transportKey{}, transportWebsocket)

	next.ServeHTTP(w, r.WithContext(ctx))

	st.mu.Lock()
	conn, start, code, userID, endIdentity := st.conn, st.start, st.closeCode, st.userID, st.endIdentity
	st.mu.Unlock()
	s.sockets.closed(st.addr, userID)
	if endIdentity != nil {
		endIdentity()
	}
	if conn == nil {
		return // the upgrade failed; gqlgen answered 400
	}
	if code == 0 {
		code = websocket.CloseAbnormalClosure // no close frame either way
	}
	_ = conn.Close() // gqlgen leaves it open on some early exits
	s.metrics.wsActive.Dec()
	s.logger(ctx).Info("websocket disconnected",
		"duration", time.Since(start).Round(time.Millisecond), "close_code", code)
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

	ctx, cancel := context.WithCancel(codecrafter.WithUserID(ctx, claims.UserID))
	end := func(msg string) func() {
		return func() {
			st.force(closeAccessEnded, msg)
			s.logger(ctx).Info("websocket access ended", "user", claims.UserID, "reason", msg)
			cancel()
		}
	}
	stop := func() bool { return true }
	if !claims.ExpiresAt.IsZero() {
		stop = time.AfterFunc(time.Until(claims.ExpiresAt), end("Forbidden: access token expired; reconnect with a fresh one")).Stop
	}
	if s.deps.Access != nil {
		s.deps.Access.WatchLogin(ctx, claims.FamilyID, end("Forbidden: this login was revoked; sign in again"))
	}
	st.mu.Lock()
	st.userID, st.endIdentity = claims.UserID, func() { stop(); cancel() }
	st.mu.Unlock()
	return ctx, nil, nil
}

// refuseInit rejects connection_init with err, closing with code.
func (s *Server) refuseInit(ctx context.Context, code int, prefix string, err error) (context.Context, *transport.InitPayload, error) {
	msg := codecrafter.ErrorMessage(err)
	s.logger(ctx).Info("websocket connection_init refused", "err", err)
	ctx = transport.WithWebsocketCloseCode(ctx, code)
	ctx = transport.AppendCloseReason(ctx, prefix+msg)
	return ctx, nil, errors.New(msg)
}

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
