package mongo_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/mongo"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
)

// TestContextErrors: a request the client cancelled or that ran out of
// time is not reported as the database being down; an unreachable or
// closed database is.
func TestContextErrors(t *testing.T) {
	t.Parallel()
	db := mongotest.New(t)
	want := func(t *testing.T, err error, message string) {
		t.Helper()
		if !codecrafter.IsCode(err, codecrafter.EUNAVAILABLE) || !strings.HasPrefix(codecrafter.ErrorMessage(err), message) {
			t.Errorf("err = %v, want UNAVAILABLE %q", err, message)
		}
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := db.User(cancelled, codecrafter.NewID())
	want(t, err, "the request was cancelled")
	_, _, err = db.ConsumeRefreshToken(cancelled, "h", time.Now())
	want(t, err, "the request was cancelled")

	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err = db.User(expired, codecrafter.NewID())
	want(t, err, "the request timed out")

	// The driver's own server-selection deadline is the database's fault.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = mongo.Open(ctx, "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200", "x", slog.New(slog.DiscardHandler))
	want(t, err, "the database is unavailable")

	closed := mongotest.New(t)
	if err := closed.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = closed.User(ctx, codecrafter.NewID())
	want(t, err, "the database is unavailable")
}
