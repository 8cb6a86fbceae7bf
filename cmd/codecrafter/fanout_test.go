package main

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
)

// TestManySubscribersAllReceive: many identical messageAdded subscriptions
// (several sockets per user, shared encodings) started after a first
// message, while the next is sent: every one of them gets it, once.
var manySubscribers = 100

func TestManySubscribersAllReceive(t *testing.T) {
	ta := startApp(t, func(c *config) { c.WSConnectsPerMin = 1 << 20 })
	owner := ta.register(t, "owner")
	s := createSession(t, owner, "crowd")
	users := []*user{owner}
	for i := range manySubscribers / 25 {
		u := ta.register(t, fmt.Sprint("u", i))
		join(t, u, *s.InviteCode)
		users = append(users, u)
	}
	var first struct{ SendMessage chatEvent }
	owner.Do(t, sendQ, map[string]any{"s": s.ID, "b": "first"}, &first)
	vars := map[string]any{"s": s.ID, "a": first.SendMessage.ID}

	// Sixteen at a time, and a message while some are live and some are
	// still setting up.
	socks := make([]*rawSocket, manySubscribers)
	sem := make(chan struct{}, 16)
	var dialing sync.WaitGroup
	for i := range manySubscribers {
		sem <- struct{}{}
		dialing.Go(func() {
			defer func() { <-sem }()
			proto := []string{"graphql-transport-ws", "graphql-ws"}[i%2]
			sock := openSocket(t, ta, proto, users[i%len(users)].Access)
			sock.subscribe("chat", messageAddedQ, vars)
			socks[i] = sock
		})
		if i == manySubscribers/2 {
			owner.Do(t, sendQ, map[string]any{"s": s.ID, "b": "second"}, nil)
		}
	}
	dialing.Wait()
	owner.Do(t, sendQ, map[string]any{"s": s.ID, "b": "third"}, nil)
	var wg sync.WaitGroup
	for i, sock := range socks {
		wg.Go(func() {
			for _, want := range []string{"second", "third"} {
				d, err := sock.awaitWithin("chat", func(map[string]json.RawMessage) bool { return true }, 20e9)
				if err != nil {
					t.Errorf("socket %d waiting for %q: %v", i, want, err)
					return
				}
				var m chatEvent
				if json.Unmarshal(d["messageAdded"], &m); m.Body != want {
					t.Errorf("socket %d: got %q, want %q", i, m.Body, want)
					return
				}
			}
		})
	}
	wg.Wait()
}
