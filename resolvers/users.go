package resolvers

import (
	"context"
	"sync"

	"github.com/codecrafter/codecrafter"
)

// maxCachedUsers bounds userCache; when full it starts over.
const maxCachedUsers = 10000

// userCache keeps users by id. A user never changes once created (the API
// has no way to), and every chat message, presence or typing event names
// one: without it each event sent to a subscriber reads the store again.
type userCache struct {
	mu    sync.Mutex
	users map[string]*codecrafter.User
}

func (c *userCache) get(ctx context.Context, store codecrafter.UserStore, id string) (*codecrafter.User, error) {
	c.mu.Lock()
	u, ok := c.users[id]
	c.mu.Unlock()
	if ok {
		return u, nil
	}
	u, err := store.User(ctx, id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users == nil || len(c.users) >= maxCachedUsers {
		c.users = map[string]*codecrafter.User{}
	}
	c.users[id] = u
	return u, nil
}
