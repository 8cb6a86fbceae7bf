package exectest

import (
	"testing"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
)

// Stores is what the execution service and worker need of a store.
type Stores interface {
	codecrafter.ExecutionStore
	codecrafter.SessionStore
}

// EachStore runs test against the in-memory fake and against a fresh
// database on the mongo server at mongoURI, in parallel.
func EachStore(t *testing.T, mongoURI string, test func(t *testing.T, s Stores)) {
	t.Run("fake", func(t *testing.T) {
		t.Parallel()
		test(t, NewStore())
	})
	t.Run("mongo", func(t *testing.T) {
		t.Parallel()
		test(t, mongotest.Open(t, mongoURI))
	})
}
