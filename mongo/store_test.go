package mongo_test

import (
	"testing"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
	"github.com/codecrafter/codecrafter/storetest"
)

func TestUsers(t *testing.T) {
	t.Parallel()
	storetest.TestUsers(t, func(t *testing.T) codecrafter.UserStore { return mongotest.New(t) })
}

func TestSessions(t *testing.T) {
	t.Parallel()
	storetest.TestSessions(t, func(t *testing.T) codecrafter.SessionStore { return mongotest.New(t) })
}

func TestRefreshTokens(t *testing.T) {
	t.Parallel()
	storetest.TestRefreshTokens(t, func(t *testing.T) codecrafter.RefreshTokenStore { return mongotest.New(t) })
}

func TestExecutions(t *testing.T) {
	t.Parallel()
	storetest.TestExecutions(t, func(t *testing.T) codecrafter.ExecutionStore { return mongotest.New(t) })
}

func TestMessages(t *testing.T) {
	t.Parallel()
	storetest.TestMessages(t, func(t *testing.T) codecrafter.MessageStore { return mongotest.New(t) })
}

func TestEdits(t *testing.T) {
	t.Parallel()
	storetest.TestEdits(t, func(t *testing.T) codecrafter.EditStore { return mongotest.New(t) })
}
