package inmem

import (
	"context"
	"sync"

	"github.com/codecrafter/codecrafter"
)

var _ codecrafter.Presence = (*Presence)(nil)

// Presence is the in-process presence registry of a single replica (the
// embedded default): a user is online while they hold at least one
// subscription to the session here.
type Presence struct {
	bus codecrafter.Bus

	mu    sync.Mutex                // held while announcing, so changes go out in order
	holds map[string]map[string]int // session -> user -> holds
}

// NewPresence returns a registry that announces changes on bus.
func NewPresence(bus codecrafter.Bus) *Presence {
	return &Presence{bus: bus, holds: map[string]map[string]int{}}
}

// Hold marks userID online in sessionID until release is called.
func (p *Presence) Hold(ctx context.Context, sessionID, userID string) (func(), error) {
	p.mu.Lock()
	users := p.holds[sessionID]
	if users == nil {
		users = map[string]int{}
		p.holds[sessionID] = users
	}
	if users[userID]++; users[userID] == 1 {
		p.announce(ctx, sessionID, userID, true)
	}
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			users := p.holds[sessionID]
			if users[userID]--; users[userID] > 0 {
				return
			}
			delete(users, userID)
			if len(users) == 0 {
				delete(p.holds, sessionID)
			}
			p.announce(context.WithoutCancel(ctx), sessionID, userID, false)
		})
	}, nil
}

func (p *Presence) announce(ctx context.Context, sessionID, userID string, online bool) {
	c := codecrafter.PresenceChange{SessionID: sessionID, UserID: userID, Online: online}
	_ = p.bus.Publish(ctx, codecrafter.PresenceTopic(sessionID), codecrafter.EncodePresenceChange(c))
}

// Online returns the users online in sessionID.
func (p *Presence) Online(_ context.Context, sessionID string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.holds[sessionID]))
	for u := range p.holds[sessionID] {
		out = append(out, u)
	}
	return out, nil
}
