package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/executions/exectest"
	"github.com/codecrafter/codecrafter/mongo"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
)

// mongoURI is an embedded FerretDB shared by the tests (one database each).
var mongoURI string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "worker-test")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	srv, err := mongo.StartEmbedded(ctx, dir, slog.New(slog.DiscardHandler))
	cancel()
	if err != nil {
		panic(err)
	}
	mongoURI = srv.URI()
	code := m.Run()
	srv.Close()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// store is what the tests need of a store: runs and sessions.
type store interface {
	codecrafter.ExecutionStore
	codecrafter.SessionStore
}

// eachStore runs test against the in-memory fake and the mongo store.
func eachStore(t *testing.T, test func(t *testing.T, s store)) {
	t.Run("fake", func(t *testing.T) {
		t.Parallel()
		test(t, exectest.NewStore())
	})
	t.Run("mongo", func(t *testing.T) {
		t.Parallel()
		test(t, mongotest.Open(t, mongoURI))
	})
}
