// Package mongotest gives tests a store on an embedded FerretDB of their
// own: no service to run, a few milliseconds to start.
package mongotest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/ferret"
	"github.com/codecrafter/codecrafter/mongo"
)

// Start starts an embedded server with its files in t.TempDir(), closed
// when t ends.
func Start(t testing.TB) *ferret.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := ferret.Start(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("mongotest: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// New returns a store on a fresh database of a new embedded server; both
// close when t ends, the store first.
func New(t testing.TB) *mongo.DB {
	t.Helper()
	return Open(t, Start(t).URI())
}

// Open opens a fresh database on the server at uri, closed when t ends.
func Open(t testing.TB, uri string) *mongo.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := mongo.Open(ctx, uri, "test_"+codecrafter.NewID(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("mongotest: %v", err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	return db
}

// Main runs a test binary's tests with one embedded server shared by all
// of them (each opens its own database with Open(t, *uri)), then checks
// for leaked goroutines. Call it from TestMain: os.Exit(mongotest.Main(m, &uri)).
func Main(m *testing.M, uri *string) int {
	dir, err := os.MkdirTemp("", "mongotest-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	srv, err := ferret.Start(ctx, dir, slog.New(slog.DiscardHandler))
	cancel()
	if err != nil {
		panic(err)
	}
	*uri = srv.URI()
	code := m.Run()
	srv.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	return code
}
