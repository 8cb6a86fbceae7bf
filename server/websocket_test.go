package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/codecrafter/codecrafter/internal/promtest"
	"github.com/codecrafter/codecrafter/server"
)

const (
	transportWS = "graphql-transport-ws" // graphql-ws clients, Apollo
	legacyWS    = "graphql-ws"           // subscriptions-transport-ws, Playground
)

// wsMsg is a message of either protocol.
type wsMsg struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

type wsClient struct {
	t     *testing.T
	conn  *websocket.Conn
	proto string
}

// dialWS opens a socket to e's /graphql with proto and extra headers.
func dialWS(t *testing.T, baseURL, proto string, header http.Header) (*wsClient, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{proto}, HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(baseURL, "http")+"/graphql", header)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { conn.Close() })
	return &wsClient{t: t, conn: conn, proto: proto}, resp, nil
}

func mustDialWS(t *testing.T, baseURL, proto string) *wsClient {
	t.Helper()
	c, _, err := dialWS(t, baseURL, proto, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", proto, err)
	}
	if got := c.conn.Subprotocol(); got != proto {
		t.Fatalf("negotiated %q, want %q", got, proto)
	}
	return c
}

func (c *wsClient) send(m wsMsg) {
	c.t.Helper()
	if err := c.conn.WriteJSON(m); err != nil {
		c.t.Fatalf("write %s: %v", m.Type, err)
	}
}

// next reads the next message, skipping keep-alives and answering pings.
// The deadline is a loaded machine's (under -race beside other work, a
// run's largest input took the server over 5 s to parse): no test waits
// it out to show that nothing comes.
func (c *wsClient) next() (wsMsg, error) {
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		var m wsMsg
		if err := c.conn.ReadJSON(&m); err != nil {
			return m, err
		}
		switch m.Type {
		case "ka", "pong":
			continue
		case "ping":
			c.send(wsMsg{Type: "pong"})
			continue
		}
		return m, nil
	}
}

func (c *wsClient) expect(typ string) wsMsg {
	c.t.Helper()
	m, err := c.next()
	if err != nil {
		c.t.Fatalf("waiting for %s: %v", typ, err)
	}
	if m.Type != typ {
		c.t.Fatalf("got %s %s, want %s", m.Type, m.Payload, typ)
	}
	return m
}

// init sends connection_init with payload (nil: none) and waits for the ack.
func (c *wsClient) init(payload any) {
	c.t.Helper()
	c.sendInit(payload)
	c.expect("connection_ack")
}

func (c *wsClient) sendInit(payload any) {
	c.t.Helper()
	m := wsMsg{Type: "connection_init"}
	if payload != nil {
		m.Payload, _ = json.Marshal(payload)
	}
	c.send(m)
}

// run runs one operation to completion and returns its result messages'
// payloads ("data"/"next", or "error").
func (c *wsClient) run(id, query string) (typ string, payload json.RawMessage) {
	c.t.Helper()
	start := "subscribe"
	if c.proto == legacyWS {
		start = "start"
	}
	p, _ := json.Marshal(map[string]any{"query": query})
	c.send(wsMsg{Type: start, ID: id, Payload: p})
	m, err := c.next()
	if err != nil {
		c.t.Fatalf("operation %s: %v", id, err)
	}
	if m.ID != id {
		c.t.Fatalf("message for %q, want %q: %+v", m.ID, id, m)
	}
	if m.Type == "error" {
		return m.Type, m.Payload
	}
	c.expect("complete")
	return m.Type, m.Payload
}

// closeCode waits for the server to close the socket and returns the code.
func (c *wsClient) closeCode() (int, string) {
	c.t.Helper()
	for {
		_, err := c.next()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		if err != nil {
			c.t.Fatalf("want a close frame, got %v", err)
		}
	}
}

// waitFor polls cond until it holds or a deadline passes (for effects
// with no event to wait on, like a gauge going down).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWebsocketProtocols(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{transportWS, legacyWS} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, server.Config{}, server.Deps{})
			c := mustDialWS(t, e.URL, proto)
			c.init(nil)

			typ, payload := c.run("1", `query Hi { __typename }`)
			wantType := map[string]string{transportWS: "next", legacyWS: "data"}[proto]
			if typ != wantType || string(payload) != `{"data":{"__typename":"Query"}}` {
				t.Errorf("%s %s", typ, payload)
			}
			got := e.spy.last(t)
			if got.RequestID == "" || got.ClientAddr != "127.0.0.1" || got.UserID != "" {
				t.Errorf("operation context %+v", got)
			}
			if n := promtest.Value(t, e.reg, "codecrafter_websocket_connections", nil); n != 1 {
				t.Errorf("websocket gauge %v with one socket open", n)
			}

			// Errors over the socket go through the presenter too.
			typ, payload = c.run("2", `{ nope }`)
			if typ != "error" || !strings.Contains(string(payload), `"code":"BAD_USER_INPUT"`) || !strings.Contains(string(payload), `"requestId":"`+got.RequestID+`"`) {
				t.Errorf("validation error: %s %s", typ, payload)
			}

			c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			waitFor(t, "the socket to be accounted closed", func() bool {
				return promtest.Value(t, e.reg, "codecrafter_websocket_connections", nil) == 0 &&
					len(e.logs.lines("websocket disconnected")) == 1
			})
			if l := e.logs.lines("websocket disconnected"); l[0]["close_code"] != float64(1000) {
				t.Errorf("disconnect log %v", l)
			}
			if l := e.logs.lines("websocket connected"); len(l) != 1 || l[0]["subprotocol"] != proto || l[0]["request_id"] != got.RequestID {
				t.Errorf("connect log %v", l)
			}
			if n := promtest.Value(t, e.reg, "codecrafter_graphql_operations_total", map[string]string{"operation": "Hi", "type": "query", "code": "OK"}); n != 1 {
				t.Errorf("operations counted %v", n)
			}
		})
	}
}

func TestWebsocketAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{Authenticate: fakeAuthenticate})
	cases := []struct {
		name    string
		payload any
		user    string
	}{
		{"no payload", nil, ""},
		{"empty payload", map[string]any{}, ""},
		{"authorization", map[string]any{"authorization": "Bearer good-token"}, "user-1"},
		{"Authorization", map[string]any{"Authorization": "Bearer good-token"}, "user-1"},
		{"token", map[string]any{"token": "good-token"}, "user-1"},
		{"empty authorization", map[string]any{"Authorization": ""}, ""},
	}
	for _, proto := range []string{transportWS, legacyWS} {
		for _, c := range cases {
			t.Run(proto+"/"+c.name, func(t *testing.T) {
				cl := mustDialWS(t, e.URL, proto)
				cl.init(c.payload)
				if typ, payload := cl.run("1", `{ __typename }`); typ == "error" {
					t.Fatalf("%s", payload)
				}
				if got := e.spy.last(t).UserID; got != c.user {
					t.Errorf("user %q, want %q", got, c.user)
				}
			})
		}
	}
}

func TestWebsocketRefusedToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{}, server.Deps{Authenticate: fakeAuthenticate})
	cases := []struct {
		payload any
		reason  string
	}{
		{map[string]any{"authorization": "Bearer expired-token"}, "access token expired"},
		{map[string]any{"token": "nonsense"}, "malformed access token"},
		{map[string]any{"Authorization": "Basic abc"}, "malformed credentials"},
		{map[string]any{"token": 42}, "token must be a string"},
	}
	for _, c := range cases {
		t.Run(transportWS+"/"+c.reason, func(t *testing.T) {
			cl := mustDialWS(t, e.URL, transportWS)
			cl.sendInit(c.payload)
			code, text := cl.closeCode()
			if code != 4403 || !strings.HasPrefix(text, "Forbidden: ") || !strings.Contains(text, c.reason) {
				t.Errorf("closed %d %q, want 4403 Forbidden: ...%s", code, text, c.reason)
			}
		})
		t.Run(legacyWS+"/"+c.reason, func(t *testing.T) {
			cl := mustDialWS(t, e.URL, legacyWS)
			cl.sendInit(c.payload)
			m := cl.expect("connection_error")
			if !strings.Contains(string(m.Payload), c.reason) {
				t.Errorf("connection_error %s", m.Payload)
			}
			if code, _ := cl.closeCode(); code != 4403 {
				t.Errorf("close code %d", code)
			}
		})
	}
}

func TestWebsocketOrigin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{AllowedOrigins: []string{allowedOrigin}}, server.Deps{})
	for _, c := range []struct {
		origin string
		ok     bool
	}{{allowedOrigin, true}, {e.URL, true}, {"", true}, {"https://evil.example", false}} {
		h := http.Header{}
		if c.origin != "" {
			h.Set("Origin", c.origin)
		}
		cl, resp, err := dialWS(t, e.URL, transportWS, h)
		if c.ok {
			if err != nil {
				t.Errorf("origin %q refused: %v", c.origin, err)
				continue
			}
			cl.init(nil)
			continue
		}
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: err %v, response %v", c.origin, err, resp)
		}
	}
}

func TestWebsocketReadLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{WebSocketReadLimit: 1024}, server.Deps{})
	c := mustDialWS(t, e.URL, transportWS)
	c.init(nil)
	if typ, _ := c.run("small", `{ __typename }`); typ != "next" {
		t.Fatalf("a small message failed: %s", typ)
	}
	ran := e.spy.count()
	p, _ := json.Marshal(map[string]any{"query": "{ __typename }", "variables": map[string]any{"pad": strings.Repeat("x", 4096)}})
	// The server stops reading mid-message, answers 1009 and closes: the
	// client may see the close frame or, with its write unread, a reset.
	if err := c.conn.WriteJSON(wsMsg{Type: "subscribe", ID: "big", Payload: p}); err == nil {
		_, err := c.next()
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != websocket.CloseMessageTooBig {
			t.Errorf("close code %d, want %d", ce.Code, websocket.CloseMessageTooBig)
		} else if err == nil {
			t.Error("the socket stayed open")
		}
	}
	waitFor(t, "the server to drop the socket", func() bool {
		return promtest.Value(t, e.reg, "codecrafter_websocket_connections", nil) == 0
	})
	if e.spy.count() != ran {
		t.Error("the oversized operation ran")
	}
}

// Behind the real *http.Server: a socket outlives WriteTimeout (keep-alives
// keep flowing) and Shutdown closes it.
func TestWebsocketOnHTTPServer(t *testing.T) {
	t.Parallel()
	// A client has one interval to answer a ping: keep it generous.
	const keepAlive = 100 * time.Millisecond
	s, err := server.New(server.Config{WebSocketKeepAlive: keepAlive}, server.Deps{Schema: newEnvSchema()})
	if err != nil {
		t.Fatal(err)
	}
	hs := s.HTTPServer("127.0.0.1:0")
	hs.WriteTimeout = 50 * time.Millisecond
	ln, err := net.Listen("tcp", hs.Addr)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })
	base := "http://" + ln.Addr().String()

	for _, proto := range []string{legacyWS, transportWS} {
		c := mustDialWS(t, base, proto)
		c.init(nil)
		// Count keep-alives until well past WriteTimeout.
		until := time.Now().Add(3 * keepAlive)
		kas := 0
		for time.Now().Before(until) {
			_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			var m wsMsg
			if err := c.conn.ReadJSON(&m); err != nil {
				t.Fatalf("%s: socket died after %d keep-alives: %v", proto, kas, err)
			}
			switch m.Type {
			case "ka":
				kas++
			case "ping": // graphql-transport-ws wants a pong within 2 intervals
				kas++
				c.send(wsMsg{Type: "pong"})
			}
		}
		if kas < 2 {
			t.Errorf("%s: %d keep-alives in %v", proto, kas, 3*keepAlive)
		}
		if typ, payload := c.run("1", `{ __typename }`); typ == "error" || !strings.Contains(string(payload), "Query") {
			t.Errorf("%s: after %v: %s %s", proto, 3*keepAlive, typ, payload)
		}
	}

	c := mustDialWS(t, base, transportWS)
	c.init(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if code, _ := c.closeCode(); code != websocket.CloseNormalClosure {
		t.Errorf("close code %d after Shutdown", code)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}

// TestReplicaHeader: with ReplicaName set, HTTP responses and WebSocket
// upgrade responses name the replica (behind a balancer, a client can
// tell where it landed); without, there is no header.
func TestReplicaHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{ReplicaName: "api-2"}, server.Deps{})
	if got := e.post(t, `{ __typename }`, nil).Header.Get(server.ReplicaHeader); got != "api-2" {
		t.Errorf("HTTP %s %q", server.ReplicaHeader, got)
	}
	c, resp, err := dialWS(t, e.URL, transportWS, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	if got := resp.Header.Get(server.ReplicaHeader); got != "api-2" {
		t.Errorf("upgrade %s %q", server.ReplicaHeader, got)
	}

	plain := newEnv(t, server.Config{}, server.Deps{})
	if got := plain.post(t, `{ __typename }`, nil).Header.Get(server.ReplicaHeader); got != "" {
		t.Errorf("unnamed replica sends %q", got)
	}
}

// TestWebsocketDropsSilentPeer: a client that stops answering keep-alives
// (no pong to the protocol ping, no WebSocket pong) is disconnected once
// its read deadline passes, on both protocols, though it sent nothing.
func TestWebsocketDropsSilentPeer(t *testing.T) {
	t.Parallel()
	const keepAlive = 100 * time.Millisecond // dropped after 2 intervals and a second
	s, err := server.New(server.Config{WebSocketKeepAlive: keepAlive}, server.Deps{Schema: newEnvSchema()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	for _, proto := range []string{legacyWS, transportWS} {
		c := mustDialWS(t, ts.URL, proto)
		c.conn.SetPingHandler(func(string) error { return nil }) // no WebSocket pong either
		c.init(nil)
		// Read what comes (the keep-alives) and answer nothing, until the
		// server drops the connection; the client's own deadline is far.
		_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		var err error
		for err == nil {
			_, _, err = c.conn.ReadMessage()
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: a silent peer was not dropped: %v", proto, err)
		}
	}
}

// heldConn holds what is written to it until flush: several frames then
// reach the server in one segment.
type heldConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	buf  []byte
}

func (h *heldConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold {
		h.buf = append(h.buf, p...)
		return len(p), nil
	}
	return h.Conn.Write(p)
}

func (h *heldConn) flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hold = false
	_, err := h.Conn.Write(h.buf)
	return err
}

// TestWebsocketMessagesInOneSegment: messages that arrive together (read
// into the socket's buffer at once) are each handled, without waiting for
// more input.
func TestWebsocketMessagesInOneSegment(t *testing.T) {
	t.Parallel()
	s, err := server.New(server.Config{}, server.Deps{Schema: newEnvSchema()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	var held *heldConn
	d := websocket.Dialer{Subprotocols: []string{transportWS}, HandshakeTimeout: 5 * time.Second,
		NetDial: func(network, addr string) (net.Conn, error) {
			c, err := net.Dial(network, addr)
			if err != nil {
				return nil, err
			}
			held = &heldConn{Conn: c}
			return held, nil
		}}
	conn, _, err := d.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/graphql", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &wsClient{t: t, conn: conn, proto: transportWS}
	held.mu.Lock()
	held.hold = true
	held.mu.Unlock()
	c.sendInit(nil)
	for _, id := range []string{"1", "2"} {
		p, _ := json.Marshal(map[string]any{"query": `{ __typename }`})
		c.send(wsMsg{Type: "subscribe", ID: id, Payload: p})
	}
	if err := held.flush(); err != nil {
		t.Fatal(err)
	}
	c.expect("connection_ack")
	done := map[string]bool{}
	for len(done) < 2 {
		m, err := c.next()
		if err != nil {
			t.Fatalf("answers to messages sent in one segment: %v (completed: %v)", err, done)
		}
		switch m.Type {
		case "complete":
			done[m.ID] = true
		case "next":
		default:
			t.Fatalf("got %s %s", m.Type, m.Payload)
		}
	}
}

// TestIdleWebsocketsHoldNoGoroutine: an idle socket waits in the poller,
// not on a goroutine of its own (whose stack it would hold), also after a
// WebSocket pong (graphql-ws clients answer the keep-alive's ping), and
// still answers when the client speaks again.
func TestIdleWebsocketsHoldNoGoroutine(t *testing.T) {
	e := newEnv(t, server.Config{}, server.Deps{})
	const n = 40
	var clients []*wsClient
	for i := range n {
		proto := transportWS
		if i%2 == 1 {
			proto = legacyWS
		}
		c := mustDialWS(t, e.URL, proto)
		c.init(nil)
		if proto == legacyWS {
			if err := c.conn.WriteControl(websocket.PongMessage, []byte("ka"), time.Now().Add(5*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		clients = append(clients, c)
	}
	socketGoroutines := func() int {
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		n := 0
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "server.(*wsConn)") {
				n++
			}
		}
		return n
	}
	waitFor(t, "idle sockets to hold no goroutine", func() bool { return socketGoroutines() == 0 })
	for _, c := range clients { // each is woken by its input
		if typ, _ := c.run("q", `{ __typename }`); typ == "error" {
			t.Fatalf("%s: an idle socket's next operation failed", c.proto)
		}
	}
}
