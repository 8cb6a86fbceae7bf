package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// await reads s until operation id sends data for which match holds, and
// returns that data; other messages are skipped. It fails on an error of
// id, or after 20 s.
func (s *rawSocket) await(id string, match func(data map[string]json.RawMessage) bool) map[string]json.RawMessage {
	s.t.Helper()
	d, err := s.awaitWithin(id, match, 20*time.Second)
	if err != nil {
		s.t.Fatalf("waiting on operation %s: %v", id, err)
	}
	return d
}

// awaitWithin is await that returns the read error (a timeout) instead of
// failing.
func (s *rawSocket) awaitWithin(id string, match func(data map[string]json.RawMessage) bool, d time.Duration) (map[string]json.RawMessage, error) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		var m rawMsg
		if q := s.held[id]; len(q) > 0 {
			m, s.held[id] = q[0], q[1:]
		} else {
			var err error
			if m, err = s.read(time.Until(deadline)); err != nil {
				return nil, err
			}
		}
		if m.ID != id {
			if m.ID != "" { // another operation's: keep it for its own wait
				s.held[m.ID] = append(s.held[m.ID], m)
			}
			continue
		}
		if m.Type == "error" {
			s.t.Fatalf("operation %s: error %s", id, m.Payload)
		}
		if m.Type != "next" && m.Type != "data" {
			continue
		}
		var p struct {
			Data   map[string]json.RawMessage
			Errors json.RawMessage
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil || p.Errors != nil {
			s.t.Fatalf("operation %s: %s (%v)", id, m.Payload, err)
		}
		if match(p.Data) {
			return p.Data, nil
		}
	}
}

// seen repeats act until s's operation id sends data that match holds
// for: a subscription just sent may not be live yet, and an event has no
// replay (typing).
func (s *rawSocket) seen(id string, act func(), match func(data map[string]json.RawMessage) bool) {
	s.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		act()
		if _, err := s.awaitWithin(id, match, time.Second); err == nil {
			return
		}
	}
	s.t.Fatalf("operation %s never saw the event", id)
}

type chatEvent struct {
	ID     string
	Body   string
	Author struct{ ID, Name string }
}

type userFlag struct {
	User   struct{ ID string }
	Typing *bool
	Online *bool
}

func field[T any](t testing.TB, data map[string]json.RawMessage, name string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data[name], &v); err != nil {
		t.Fatalf("%s: %s: %v", name, data[name], err)
	}
	return v
}

const (
	messageAddedQ = `subscription($s: ID!, $a: ID) { messageAdded(sessionId: $s, after: $a) { id body author { id name } } }`
	typingQ       = `subscription($s: ID!) { typing(sessionId: $s) { user { id } typing } }`
	presenceQ     = `subscription($s: ID!) { presence(sessionId: $s) { user { id } online } }`
	sendQ         = `mutation($s: ID!, $b: String!) { sendMessage(sessionId: $s, body: $b) { id body } }`
)

// TestRealtimeBetweenProtocols: a graphql-transport-ws client and a
// legacy graphql-ws client in one session see each other's messages,
// typing and presence; a viewer may chat; a reconnect with after misses
// nothing and sees nothing twice.
func TestRealtimeBetweenProtocols(t *testing.T) {
	ta := startApp(t)
	ada, bob := ta.register(t, "ada"), ta.register(t, "bob")
	s := createSession(t, ada, "pairing")
	join(t, bob, *s.InviteCode)
	ada.Do(t, `mutation($s: ID!, $u: ID!) { setParticipantRole(sessionId: $s, userId: $u, role: VIEWER) { role } }`, map[string]any{"s": s.ID, "u": bob.ID}, nil)
	vars := map[string]any{"s": s.ID}

	// A first message, so that the chat subscriptions can start after it:
	// with after, nothing sent once they are live or before is missed.
	var first struct{ SendMessage chatEvent }
	ada.Do(t, sendQ, map[string]any{"s": s.ID, "b": "first"}, &first)
	chatVars := map[string]any{"s": s.ID, "a": first.SendMessage.ID}

	bobSock := openSocket(t, ta, "graphql-ws", bob.Access)
	bobSock.subscribe("presence", presenceQ, vars)
	bobSock.await("presence", func(d map[string]json.RawMessage) bool { // bob holds a subscription: he is online
		f := field[userFlag](t, d, "presence")
		return f.User.ID == bob.ID && *f.Online
	})
	bobSock.subscribe("chat", messageAddedQ, chatVars)
	bobSock.subscribe("typing", typingQ, vars)

	adaSock := openSocket(t, ta, "graphql-transport-ws", ada.Access)
	adaSock.subscribe("chat", messageAddedQ, chatVars)
	adaSock.subscribe("typing", typingQ, vars)
	bobSock.await("presence", func(d map[string]json.RawMessage) bool {
		f := field[userFlag](t, d, "presence")
		return f.User.ID == ada.ID && *f.Online
	})

	// Participant.online follows.
	var got struct {
		Session struct {
			Participants []struct {
				User   struct{ ID string }
				Online bool
			}
		}
	}
	ada.Do(t, `query($s: ID!) { session(id: $s) { participants { user { id } online } } }`, vars, &got)
	for _, p := range got.Session.Participants {
		if !p.Online {
			t.Fatalf("participant %s not online: %+v", p.User.ID, got)
		}
	}

	// Typing both ways (repeated until the just-started subscription is
	// live: typing has no replay), then cleared by sending.
	typing := func(user string, on bool) func(map[string]json.RawMessage) bool {
		return func(d map[string]json.RawMessage) bool {
			f := field[userFlag](t, d, "typing")
			return f.User.ID == user && *f.Typing == on
		}
	}
	adaSock.seen("typing", func() { bob.Do(t, `mutation($s: ID!) { setTyping(sessionId: $s, typing: true) }`, vars, nil) }, typing(bob.ID, true))
	bobSock.seen("typing", func() { ada.Do(t, `mutation($s: ID!) { setTyping(sessionId: $s, typing: true) }`, vars, nil) }, typing(ada.ID, true))
	// Chat both ways (bob is a VIEWER: viewers chat).
	bob.Do(t, sendQ, map[string]any{"s": s.ID, "b": "hello from bob"}, nil)
	adaSock.await("typing", typing(bob.ID, false))
	var ids []string
	for _, sock := range []*rawSocket{adaSock, bobSock} {
		m := field[chatEvent](t, sock.await("chat", func(map[string]json.RawMessage) bool { return true }), "messageAdded")
		if m.Body != "hello from bob" || m.Author.ID != bob.ID {
			t.Fatalf("got %+v", m)
		}
		ids = append(ids, m.ID)
	}
	ada.Do(t, sendQ, map[string]any{"s": s.ID, "b": "hi bob"}, nil)
	if m := field[chatEvent](t, bobSock.await("chat", func(map[string]json.RawMessage) bool { return true }), "messageAdded"); m.Body != "hi bob" {
		t.Fatalf("bob got %+v", m)
	}
	bobSock.await("typing", typing(ada.ID, false))

	// Ada goes away: bob sees her offline.
	adaSock.conn.Close()
	bobSock.await("presence", func(d map[string]json.RawMessage) bool {
		f := field[userFlag](t, d, "presence")
		return f.User.ID == ada.ID && !*f.Online
	})

	// Bob resumes after the first message while more are sent.
	for i := range 5 {
		ada.Do(t, sendQ, map[string]any{"s": s.ID, "b": fmt.Sprint("m", i)}, nil)
	}
	bobSock.subscribe("resume", messageAddedQ, map[string]any{"s": s.ID, "a": ids[0]})
	want := []string{"hi bob", "m0", "m1", "m2", "m3", "m4", "late"}
	ada.Do(t, sendQ, map[string]any{"s": s.ID, "b": "late"}, nil) // while bob replays
	for _, w := range want {
		m := field[chatEvent](t, bobSock.await("resume", func(map[string]json.RawMessage) bool { return true }), "messageAdded")
		if m.Body != w {
			t.Fatalf("resumed: got %q, want %q", m.Body, w)
		}
	}
	// The history pages the same way.
	var hist struct{ Messages []chatEvent }
	bob.Do(t, `query($s: ID!, $a: ID) { messages(sessionId: $s, after: $a, limit: 3) { id body } }`, map[string]any{"s": s.ID, "a": ids[0]}, &hist)
	if len(hist.Messages) != 3 || hist.Messages[0].Body != "hi bob" || hist.Messages[2].Body != "m1" {
		t.Fatalf("messages: %+v", hist.Messages)
	}
}

// TestChatErrors: bad bodies and outsiders get the right codes.
func TestChatErrors(t *testing.T) {
	ta := startApp(t)
	ada, eve := ta.register(t, "ada"), ta.register(t, "eve")
	s := createSession(t, ada, "chat")
	vars := func(b string) map[string]any { return map[string]any{"s": s.ID, "b": b} }
	ada.Fail(t, "BAD_USER_INPUT", sendQ, vars("   "))
	ada.Fail(t, "BAD_USER_INPUT", sendQ, vars(string(make([]rune, 4001))))
	eve.Fail(t, "NOT_FOUND", sendQ, vars("hi"))
	eve.Fail(t, "NOT_FOUND", `query($s: ID!) { messages(sessionId: $s) { id } }`, map[string]any{"s": s.ID})
	ada.Fail(t, "BAD_USER_INPUT", `query($s: ID!) { messages(sessionId: $s, after: "nope") { id } }`, map[string]any{"s": s.ID})
	ada.Fail(t, "BAD_USER_INPUT", `query($s: ID!) { messages(sessionId: $s, limit: 1000) { id } }`, map[string]any{"s": s.ID})
}

// TestIdenticalSubscriptionsShareNothingPrivate: the transport encodes an
// event once for identical subscriptions (same query, variables and
// user); each of them still gets it, and a field only its user may see
// (email) never reaches another user's subscription through that
// sharing.
func TestIdenticalSubscriptionsShareNothingPrivate(t *testing.T) {
	ta := startApp(t)
	ada, bob := ta.register(t, "ada"), ta.register(t, "bob")
	s := createSession(t, ada, "private")
	join(t, bob, *s.InviteCode)
	var first struct{ SendMessage chatEvent }
	ada.Do(t, sendQ, map[string]any{"s": s.ID, "b": "first"}, &first)
	const q = `subscription($s: ID!, $a: ID) { messageAdded(sessionId: $s, after: $a) { body author { id email } } }`
	vars := map[string]any{"s": s.ID, "a": first.SendMessage.ID}
	type sub struct {
		sock  *rawSocket
		user  string
		email bool // may see the author's email (the author themself)
	}
	var subs []sub
	for _, proto := range []string{"graphql-transport-ws", "graphql-ws"} {
		for range 2 { // two identical subscriptions of each user per protocol
			a := openSocket(t, ta, proto, ada.Access)
			a.subscribe("chat", q, vars)
			b := openSocket(t, ta, proto, bob.Access)
			b.subscribe("chat", q, vars)
			subs = append(subs, sub{a, ada.ID, true}, sub{b, bob.ID, false})
		}
	}
	for i := range 3 {
		ada.Do(t, sendQ, map[string]any{"s": s.ID, "b": fmt.Sprint("m", i)}, nil)
	}
	type event struct {
		Body   string
		Author struct {
			ID    string
			Email *string
		}
	}
	for _, sb := range subs {
		for i := range 3 {
			ev := field[event](t, sb.sock.await("chat", func(map[string]json.RawMessage) bool { return true }), "messageAdded")
			if ev.Body != fmt.Sprint("m", i) || ev.Author.ID != ada.ID {
				t.Fatalf("%s got %+v, want m%d by ada", sb.user, ev, i)
			}
			if (ev.Author.Email != nil) != sb.email {
				t.Fatalf("%s sees author email %v", sb.user, ev.Author.Email)
			}
		}
	}
}
