package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/server"
)

// verifyExpiring accepts any token as user-<token>, expiring after ttl.
func verifyExpiring(ttl time.Duration) func(context.Context, string) (codecrafter.Claims, error) {
	return func(_ context.Context, token string) (codecrafter.Claims, error) {
		return codecrafter.Claims{UserID: "user-" + token, FamilyID: "fam-" + token, ExpiresAt: time.Now().Add(ttl)}, nil
	}
}

// TestWebsocketClosesAtTokenExpiry: a socket does not outlive its access
// token: it closes with 4403 and says why, on both protocols.
func TestWebsocketClosesAtTokenExpiry(t *testing.T) {
	e := newEnv(t, server.Config{}, server.Deps{Verify: verifyExpiring(300 * time.Millisecond)})
	for _, proto := range []string{transportWS, legacyWS} {
		c := mustDialWS(t, e.URL, proto)
		c.init(map[string]any{"authorization": "Bearer a"})
		code, text := c.closeCode()
		if code != 4403 || text == "" {
			t.Fatalf("%s: close %d %q, want 4403 with a reason", proto, code, text)
		}
	}
}

// TestWebsocketsPerUserCapped: one user opens at most PerUser sockets; the
// next is refused with 4429 and a closed one makes room.
func TestWebsocketsPerUserCapped(t *testing.T) {
	e := newEnv(t, server.Config{WebSocket: server.WebSocketLimits{PerUser: 2}}, server.Deps{Verify: verifyExpiring(time.Hour)})
	a := mustDialWS(t, e.URL, transportWS)
	a.init(map[string]any{"authorization": "Bearer u"})
	b := mustDialWS(t, e.URL, transportWS)
	b.init(map[string]any{"authorization": "Bearer u"})
	over := mustDialWS(t, e.URL, transportWS)
	over.sendInit(map[string]any{"authorization": "Bearer u"})
	if code, _ := over.closeCode(); code != 4429 {
		t.Fatalf("third socket of one user: close %d, want 4429", code)
	}
	other := mustDialWS(t, e.URL, transportWS) // another user is not affected
	other.init(map[string]any{"authorization": "Bearer v"})

	a.conn.Close()
	waitFor(t, "a closed socket to make room", func() bool {
		c := mustDialWS(t, e.URL, transportWS)
		c.sendInit(map[string]any{"authorization": "Bearer u"})
		m, err := c.next()
		return err == nil && m.Type == "connection_ack"
	})
}

// TestUnauthenticatedWebsocketsCapped: sockets that have not authenticated
// are capped per address; the upgrade is refused with 429 RATE_LIMITED.
func TestUnauthenticatedWebsocketsCapped(t *testing.T) {
	e := newEnv(t, server.Config{WebSocket: server.WebSocketLimits{UnauthenticatedPerAddr: 3}}, server.Deps{Verify: verifyExpiring(time.Hour)})
	var idle []*wsClient
	for range 3 {
		idle = append(idle, mustDialWS(t, e.URL, transportWS)) // no connection_init yet
	}
	_, resp, err := dialWS(t, e.URL, transportWS, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth idle socket: err %v, response %v; want 429", err, resp)
	}
	// Authenticating one frees its place.
	idle[0].init(map[string]any{"authorization": "Bearer u"})
	mustDialWS(t, e.URL, transportWS)
}

// TestWebsocketConnectRate: new sockets per address per minute are capped.
func TestWebsocketConnectRate(t *testing.T) {
	e := newEnv(t, server.Config{WebSocket: server.WebSocketLimits{ConnectsPerMinute: 5}}, server.Deps{Verify: verifyExpiring(time.Hour)})
	for range 5 {
		c := mustDialWS(t, e.URL, transportWS)
		c.conn.Close()
	}
	_, resp, err := dialWS(t, e.URL, transportWS, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("sixth connect in a minute: err %v, response %v; want 429 with Retry-After", err, resp)
	}
}

// blockingSchema is the generated schema whose subscriptions send nothing
// and run until stopped.
type blockingSchema struct{ graphql.ExecutableSchema }

func (s blockingSchema) Exec(ctx context.Context) graphql.ResponseHandler {
	if op := graphql.GetOperationContext(ctx).Operation; op != nil && op.Operation == ast.Subscription {
		return func(ctx context.Context) *graphql.Response {
			<-ctx.Done()
			return nil
		}
	}
	return s.ExecutableSchema.Exec(ctx)
}

// TestWebsocketProtocolCloseCodes: the graphql-transport-ws close codes for
// a missing connection_init, an operation before the ack, a second init and
// a duplicate operation id, on both protocols.
func TestWebsocketProtocolCloseCodes(t *testing.T) {
	e := newEnv(t, server.Config{WebSocketInitTimeout: 200 * time.Millisecond},
		server.Deps{Verify: verifyExpiring(time.Hour), Schema: blockingSchema{newEnvSchema()}})
	const sub = `subscription { messageAdded(sessionId: "s") { id } }`
	for _, proto := range []string{transportWS, legacyWS} {
		start := "subscribe"
		if proto == legacyWS {
			start = "start"
		}
		payload, _ := json.Marshal(map[string]any{"query": sub})

		c := mustDialWS(t, e.URL, proto)
		if code, _ := c.closeCode(); code != 4408 {
			t.Errorf("%s, no connection_init: close %d, want 4408", proto, code)
		}

		c = mustDialWS(t, e.URL, proto)
		c.send(wsMsg{Type: start, ID: "1", Payload: payload})
		if code, _ := c.closeCode(); code != 4401 {
			t.Errorf("%s, operation before the ack: close %d, want 4401", proto, code)
		}

		c = mustDialWS(t, e.URL, proto)
		c.init(map[string]any{"authorization": "Bearer a"})
		c.sendInit(map[string]any{"authorization": "Bearer a"})
		if code, _ := c.closeCode(); code != 4429 {
			t.Errorf("%s, second connection_init: close %d, want 4429", proto, code)
		}

		c = mustDialWS(t, e.URL, proto)
		c.init(map[string]any{"authorization": "Bearer a"})
		c.send(wsMsg{Type: start, ID: "1", Payload: payload})
		c.send(wsMsg{Type: start, ID: "1", Payload: payload})
		if code, _ := c.closeCode(); code != 4409 {
			t.Errorf("%s, duplicate id: close %d, want 4409", proto, code)
		}

		// An id may be used again once its operation ended.
		c = mustDialWS(t, e.URL, proto)
		c.init(map[string]any{"authorization": "Bearer a"})
		for range 3 {
			if typ, p := c.run("q", `query { languages { language } }`); typ == "error" {
				t.Fatalf("%s: reusing an ended id: %s", proto, p)
			}
		}
	}
}

// TestWebsocketMessageRate: a client that floods a socket with messages is
// disconnected (1008); one within the rate is not.
func TestWebsocketMessageRate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{WebSocket: server.WebSocketLimits{MessagesPerSecond: 20}}, server.Deps{})
	calm := mustDialWS(t, e.URL, transportWS)
	calm.init(nil)
	for i := range 5 {
		if typ, _ := calm.run(fmt.Sprint(i), `{ __typename }`); typ != "next" {
			t.Fatalf("a calm client's query %d: %s", i, typ)
		}
	}

	c := mustDialWS(t, e.URL, transportWS)
	c.init(nil)
	// Far beyond the burst (116: the operation cap and 16) plus what
	// refills while they are written.
	var err error
	for i := 0; i < 2000 && err == nil; i++ {
		err = c.conn.WriteJSON(wsMsg{Type: "ping"})
	}
	if code, _ := c.closeCode(); code != websocket.ClosePolicyViolation {
		t.Errorf("flood: close %d (write error %v), want %d", code, err, websocket.ClosePolicyViolation)
	}
}
