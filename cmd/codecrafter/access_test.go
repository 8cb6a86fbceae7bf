package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// rawSocket is a WebSocket client of either protocol, for tests that need
// several operations on one socket or the close code.
type rawSocket struct {
	t     testing.TB
	conn  *websocket.Conn
	proto string
	msgs  chan rawRead        // filled by one reader goroutine, so a wait can time out and go on
	wmu   sync.Mutex          // one writer at a time (the reader answers pings)
	held  map[string][]rawMsg // read while waiting for another operation (await)
}

type rawRead struct {
	m   rawMsg
	err error
}

type rawMsg struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// openSocket dials ta with proto and authenticates with token in
// connection_init; it fails the test unless the server acknowledges.
func openSocket(t testing.TB, ta *testApp, proto, token string) *rawSocket {
	t.Helper()
	s := dialSocket(t, ta, proto)
	s.send(rawMsg{Type: "connection_init", Payload: json.RawMessage(`{"authorization":"Bearer ` + token + `"}`)})
	if m := s.next(); m.Type != "connection_ack" {
		t.Fatalf("connection_init: got %s %s", m.Type, m.Payload)
	}
	return s
}

func dialSocket(t testing.TB, ta *testApp, proto string) *rawSocket {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{proto}, HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(ta.URL, "http"), nil)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	s := &rawSocket{t: t, conn: conn, proto: proto, msgs: make(chan rawRead, 4096), held: map[string][]rawMsg{}}
	done := make(chan struct{})
	go s.reader(done)
	t.Cleanup(func() { conn.Close(); <-done })
	return s
}

// reader hands every message but keep-alives to msgs, then the error that
// ended the connection.
func (s *rawSocket) reader(done chan<- struct{}) {
	defer close(done)
	for {
		var m rawMsg
		if err := s.conn.ReadJSON(&m); err != nil {
			select {
			case s.msgs <- rawRead{err: err}:
			default: // nobody reads a full buffer any more
			}
			return
		}
		switch m.Type {
		case "ka", "pong":
		case "ping":
			s.wmu.Lock()
			_ = s.conn.WriteJSON(rawMsg{Type: "pong"})
			s.wmu.Unlock()
		default:
			s.msgs <- rawRead{m: m}
		}
	}
}

func (s *rawSocket) send(m rawMsg) {
	s.t.Helper()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.conn.WriteJSON(m); err != nil {
		s.t.Fatalf("write %s: %v", m.Type, err)
	}
}

// subscribe starts operation id.
func (s *rawSocket) subscribe(id, query string, vars map[string]any) {
	s.t.Helper()
	typ := "subscribe"
	if s.proto == "graphql-ws" {
		typ = "start"
	}
	p, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	s.send(rawMsg{Type: typ, ID: id, Payload: p})
}

// next returns the next message that is not a keep-alive; a read error
// (close frame included) is returned as a message of type "closed" with
// the error text as payload.
func (s *rawSocket) next() rawMsg {
	s.t.Helper()
	m, err := s.read(20 * time.Second)
	if err != nil {
		s.t.Fatalf("read: %v", err)
	}
	return m
}

func (s *rawSocket) read(timeout time.Duration) (rawMsg, error) {
	select {
	case r := <-s.msgs:
		if r.err != nil {
			s.msgs <- r // the connection stays ended for later reads
		}
		return r.m, r.err
	case <-time.After(timeout):
		return rawMsg{}, errTimeout
	}
}

var errTimeout = errors.New("timed out")

// closeCode reads until the server closes the socket and returns the code.
func (s *rawSocket) closeCode() (int, string) {
	s.t.Helper()
	for {
		_, err := s.read(20 * time.Second)
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		if err != nil {
			s.t.Fatalf("want a close frame, got %v", err)
		}
	}
}

const sessionExecutionsQ = `subscription($s: ID!) { sessionExecutions(sessionId: $s) { id status code stdin } }`

// TestRemovedParticipantStopsReceiving: a participant's live subscription
// ends, with NOT_FOUND, the moment the owner removes them, on both
// protocols; an outsider never gets one.
func TestRemovedParticipantStopsReceiving(t *testing.T) {
	ta := startApp(t)
	owner := ta.register(t, "owner")
	for _, proto := range []string{"graphql-transport-ws", "graphql-ws"} {
		t.Run(proto, func(t *testing.T) {
			s := createSession(t, owner, "class")
			bob := ta.register(t, "bob")
			join(t, bob, *s.InviteCode)
			sock := openSocket(t, ta, proto, bob.Access)
			sock.subscribe("1", sessionExecutionsQ, map[string]any{"s": s.ID})
			// A run shows the subscription is live (runs until one does).
			sock.seen("1", func() {
				owner.Do(t, `mutation($s: ID!) { execute(input: {language: "python", code: "print(1)", sessionId: $s}) { id } }`, map[string]any{"s": s.ID}, nil)
			}, func(map[string]json.RawMessage) bool { return true })

			owner.Do(t, `mutation($s: ID!, $u: ID!) { removeParticipant(sessionId: $s, userId: $u) }`, map[string]any{"s": s.ID, "u": bob.ID}, nil)
			m := sock.next()
			for m.Type == "next" || m.Type == "data" { // a run's, sent before the removal
				m = sock.next()
			}
			if m.Type != "error" || !strings.Contains(string(m.Payload), "NOT_FOUND") {
				t.Fatalf("after removal: got %s %s, want an error with NOT_FOUND", m.Type, m.Payload)
			}
			// Nothing more reaches bob: a new run's events go to the owner only.
			owner.Do(t, `mutation($s: ID!) { execute(input: {language: "python", code: "print(2)", sessionId: $s}) { id } }`, map[string]any{"s": s.ID}, nil)
			sock.subscribe("2", `query { me { id } }`, nil) // a marker: its answer must come next
			if m := sock.next(); m.ID != "2" {
				t.Fatalf("removed participant got %s %s for operation %q", m.Type, m.Payload, m.ID)
			}
		})
	}
}

// TestRemovalEndsOnlyTheRemovedUsersSubscription: identical
// subscriptions of two users (which share their operation's parsed state
// on the server) part when one user is removed: theirs ends with
// NOT_FOUND, the other's goes on receiving.
func TestRemovalEndsOnlyTheRemovedUsersSubscription(t *testing.T) {
	ta := startApp(t)
	owner, bob := ta.register(t, "owner"), ta.register(t, "bob")
	s := createSession(t, owner, "twins")
	join(t, bob, *s.InviteCode)
	const q = `subscription($s: ID!) { messageAdded(sessionId: $s) { body } }`
	vars := map[string]any{"s": s.ID}
	mine, bobs := openSocket(t, ta, "graphql-transport-ws", owner.Access), openSocket(t, ta, "graphql-transport-ws", bob.Access)
	mine.subscribe("chat", q, vars)
	bobs.subscribe("chat", q, vars)
	body := func(want string) func(map[string]json.RawMessage) bool {
		return func(data map[string]json.RawMessage) bool {
			return field[chatEvent](t, data, "messageAdded").Body == want
		}
	}
	// Subscribe has no ack: a message sent until both see one shows both live.
	for _, sock := range []*rawSocket{mine, bobs} {
		sock.seen("chat", func() { owner.Do(t, sendQ, map[string]any{"s": s.ID, "b": "ping"}, nil) }, body("ping"))
	}

	owner.Do(t, `mutation($s: ID!, $u: ID!) { removeParticipant(sessionId: $s, userId: $u) }`, map[string]any{"s": s.ID, "u": bob.ID}, nil)
	for {
		m := bobs.next()
		if m.Type == "error" {
			if !strings.Contains(string(m.Payload), "NOT_FOUND") {
				t.Fatalf("after removal: got %s, want NOT_FOUND", m.Payload)
			}
			break
		}
		if m.Type != "next" { // pings may still be in flight
			t.Fatalf("after removal: got %s %s, want an error", m.Type, m.Payload)
		}
	}
	owner.Do(t, sendQ, map[string]any{"s": s.ID, "b": "after"}, nil)
	mine.await("chat", body("after"))
}

// TestDeletedSessionEndsSubscriptions: deleting a session ends every
// participant's subscription to it.
func TestDeletedSessionEndsSubscriptions(t *testing.T) {
	ta := startApp(t)
	owner, bob := ta.register(t, "owner"), ta.register(t, "bob")
	s := createSession(t, owner, "gone")
	join(t, bob, *s.InviteCode)
	sub := bob.Subscribe(t, sessionExecutionsQ, map[string]any{"s": s.ID})
	// The subscription is registered before deleteSession is sent: a
	// query on the same server after it answered proves nothing about
	// the other socket, so wait for the subscription's first event.
	sub.Live(t, func() {
		owner.Do(t, `mutation($s: ID!) { execute(input: {language: "python", code: "print(1)", sessionId: $s}) { id } }`, map[string]any{"s": s.ID}, nil)
	})
	owner.Do(t, `mutation($s: ID!) { deleteSession(id: $s) }`, map[string]any{"s": s.ID}, nil)
	err := sub.Err(t, 20*time.Second)
	if err == nil || !strings.Contains(err.Error(), "NOT_FOUND") {
		t.Fatalf("subscription ended with %v, want a NOT_FOUND error", err)
	}
}

// TestLogoutClosesSockets: a socket authenticated with an access token of
// a login closes with 4403 when that login logs out; another login of the
// same user is not affected.
func TestLogoutClosesSockets(t *testing.T) {
	ta := startApp(t)
	u := ta.register(t, "ada")
	var other struct{ Login authPayload }
	ta.client().Do(t, `mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { accessToken refreshToken } }`,
		map[string]any{"e": u.Email, "p": u.Password}, &other)
	for _, proto := range []string{"graphql-transport-ws", "graphql-ws"} {
		t.Run(proto, func(t *testing.T) {
			var login struct{ Login authPayload }
			ta.client().Do(t, `mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { accessToken refreshToken } }`,
				map[string]any{"e": u.Email, "p": u.Password}, &login)
			sock := openSocket(t, ta, proto, login.Login.AccessToken)
			kept := openSocket(t, ta, proto, other.Login.AccessToken)
			ta.client().Do(t, `mutation($r: String!) { logout(refreshToken: $r) }`, map[string]any{"r": login.Login.RefreshToken}, nil)
			if code, text := sock.closeCode(); code != 4403 {
				t.Fatalf("after logout: close %d %q, want 4403", code, text)
			}
			kept.subscribe("1", `query { me { id } }`, nil)
			if m := kept.next(); m.ID != "1" || (m.Type != "next" && m.Type != "data") {
				t.Fatalf("the other login's socket: got %s %s", m.Type, m.Payload)
			}
		})
	}
}

// TestOperationsPerSocketCapped: a socket runs at most the configured
// number of operations at once; one over is RATE_LIMITED, and stopping
// one makes room.
func TestOperationsPerSocketCapped(t *testing.T) {
	ta := startApp(t)
	u := ta.register(t, "ada")
	s := createSession(t, u, "many")
	sock := openSocket(t, ta, "graphql-transport-ws", u.Access)
	const limit = 100 // server.DefaultWebSocketOperations
	// One more than the cap. gqlgen starts each operation on its own
	// goroutine, so which one is refused is not known in advance.
	for i := range limit + 1 {
		sock.subscribe(fmt.Sprint("op", i), sessionExecutionsQ, map[string]any{"s": s.ID})
	}
	m := sock.next()
	if !strings.Contains(string(m.Payload), "RATE_LIMITED") {
		t.Fatalf("operation over the cap: got %s %s %s", m.ID, m.Type, m.Payload)
	}
	refused := m.ID
	if m := sock.next(); m.ID != refused || m.Type != "complete" {
		t.Fatalf("after the refusal: %s %s %s", m.ID, m.Type, m.Payload)
	}
	stop := "op0"
	if refused == stop {
		stop = "op1"
	}
	sock.send(rawMsg{Type: "complete", ID: stop})
	// Room again, once the stop is processed (asynchronously). Nothing
	// else may have been refused meanwhile: the marker's answer is next.
	deadline := time.Now().Add(20 * time.Second)
	for n := 0; ; n++ {
		id := fmt.Sprint("retry", n)
		sock.subscribe(id, `query { me { id } }`, nil)
		m := sock.next()
		for m.ID != id { // the stopped operation may still answer
			if m.ID != stop {
				t.Fatalf("waiting for %s: got %s %s %s", id, m.ID, m.Type, m.Payload)
			}
			m = sock.next()
		}
		if !strings.Contains(string(m.Payload), "RATE_LIMITED") {
			return
		}
		sock.next() // its complete
		if time.Now().After(deadline) {
			t.Fatal("no room after stopping an operation")
		}
	}
}

// TestAccessChangesApplyToTheNextAction: chat and edits authorize against
// a session read held for a moment (access.Recent); a demotion or removal
// still applies to the very next action, since it drops that read.
func TestAccessChangesApplyToTheNextAction(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	owner, bob := ta.register(t, "owner"), ta.register(t, "bob")
	s := createSession(t, owner, "recent") // code "print(1)"
	join(t, bob, *s.InviteCode)
	insert := func(base int) map[string]any {
		return map[string]any{"s": s.ID, "in": map[string]any{"baseRevision": base,
			"ops": []map[string]any{{"insert": "#"}, {"retain": 8 + base}}}}
	}
	bob.Do(t, sendQ, map[string]any{"s": s.ID, "b": "hi"}, nil) // the reads are now held
	bob.Do(t, editQ, insert(0), nil)

	owner.Do(t, roleQ, map[string]any{"s": s.ID, "u": bob.ID, "r": "VIEWER"}, nil)
	bob.Fail(t, "FORBIDDEN", editQ, insert(1))
	var sent struct{ SendMessage struct{ ID string } }
	bob.Do(t, sendQ, map[string]any{"s": s.ID, "b": "viewers chat"}, &sent)

	// after: the next message arrives whether the subscription is live
	// before it is sent or replays it.
	sock := openSocket(t, ta, "graphql-transport-ws", bob.Access)
	sock.subscribe("1", `subscription($s: ID!, $a: ID) { messageAdded(sessionId: $s, after: $a) { id } }`, map[string]any{"s": s.ID, "a": sent.SendMessage.ID})
	owner.Do(t, sendQ, map[string]any{"s": s.ID, "b": "live"}, nil)
	if m := sock.next(); m.Type != "next" {
		t.Fatalf("subscribed: got %s %s", m.Type, m.Payload)
	}

	owner.Do(t, removeQ, map[string]any{"s": s.ID, "u": bob.ID}, nil)
	bob.Fail(t, "NOT_FOUND", sendQ, map[string]any{"s": s.ID, "b": "still here?"})
	if m := sock.next(); m.Type != "error" || !strings.Contains(string(m.Payload), "NOT_FOUND") {
		t.Fatalf("after removal: got %s %s, want an error with NOT_FOUND", m.Type, m.Payload)
	}
	// A new subscription right after is refused too: the held read went.
	sock.subscribe("2", `subscription($s: ID!) { typing(sessionId: $s) { typing } }`, map[string]any{"s": s.ID})
	if m := sock.next(); !strings.Contains(string(m.Payload), `"NOT_FOUND"`) || strings.Contains(string(m.Payload), `"typing":{`) {
		t.Fatalf("subscribing after removal: got %s %s, want NOT_FOUND", m.Type, m.Payload)
	}
}
