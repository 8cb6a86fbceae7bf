package server

import (
	"context"
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
	conn, err := up.Upgrade(w, r, opts.ResponseHeader)
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
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		c.st.closed(ce.Code)
		if ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway || ce.Code == websocket.CloseNoStatusReceived {
			return t, nil, transport.ErrWebsocketClosed
		}
	case errors.Is(err, websocket.ErrReadLimit):
		c.st.closed(websocket.CloseMessageTooBig) // gorilla has sent it
	}
	return t, r, err
}

func (c *gorillaConn) WriteClose(code int, message string) error {
	// A close frame's payload is at most 125 bytes, 2 of them the code.
	msg := truncate(message, 123)
	c.st.closed(code)
	return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, msg), time.Now().Add(time.Second))
}

// wsState follows one WebSocket request: the middleware that serves it
// closes the connection and accounts for it when gqlgen is done.
type wsState struct {
	mu        sync.Mutex
	conn      *websocket.Conn
	start     time.Time
	closeCode int
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
	st := &wsState{}
	ctx = context.WithValue(ctx, wsStateKey{}, st)
	ctx = context.WithValue(ctx, transportKey{}, transportWebsocket)

	next.ServeHTTP(w, r.WithContext(ctx))

	st.mu.Lock()
	conn, start, code := st.conn, st.start, st.closeCode
	st.mu.Unlock()
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
// payload. No token: the connection stays as the upgrade request left it
// (anonymous unless it carried an Authorization header). A refused token
// rejects the connection (4403 on graphql-transport-ws, connection_error
// then close on graphql-ws).
func (s *Server) websocketInit(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
	token, err := initPayloadToken(p)
	if err == nil && token == "" {
		return ctx, nil, nil
	}
	var userID string
	if err == nil {
		userID, err = s.authenticate(ctx, token)
	}
	if err != nil {
		msg := codecrafter.ErrorMessage(err)
		s.logger(ctx).Info("websocket connection_init refused", "err", err)
		ctx = transport.WithWebsocketCloseCode(ctx, closeForbidden)
		ctx = transport.AppendCloseReason(ctx, "Forbidden: "+msg)
		return ctx, nil, errors.New(msg)
	}
	return codecrafter.WithUserID(ctx, userID), nil, nil
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
