package realtime_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/mongo"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
	"github.com/codecrafter/codecrafter/realtime"
)

var mongoURI string

func TestMain(m *testing.M) { os.Exit(mongotest.Main(m, &mongoURI)) }

type env struct {
	svc      *realtime.Service
	db       *mongo.DB
	bus      *inmem.Bus
	session  string
	owner    context.Context
	viewer   context.Context
	outsider context.Context
}

func newEnv(t *testing.T, limit codecrafter.Limiter) *env {
	t.Helper()
	db := mongotest.Open(t, mongoURI)
	bus := inmem.NewBus()
	svc := realtime.New(realtime.Config{TypingTTL: 300 * time.Millisecond}, db, db, bus, inmem.NewPresence(bus), limit, slog.New(slog.DiscardHandler))
	now := time.Now().UTC().Truncate(time.Millisecond)
	s := &codecrafter.Session{ID: codecrafter.NewID(), Title: "t", Language: "python", OwnerID: "owner", InviteCode: codecrafter.NewID(),
		Participants: []codecrafter.Participant{{UserID: "owner", Role: codecrafter.RoleOwner, JoinedAt: now}, {UserID: "viewer", Role: codecrafter.RoleViewer, JoinedAt: now}},
		CreatedAt:    now, UpdatedAt: now}
	if err := db.CreateSession(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, db: db, bus: bus, session: s.ID,
		owner:    codecrafter.WithUserID(t.Context(), "owner"),
		viewer:   codecrafter.WithUserID(t.Context(), "viewer"),
		outsider: codecrafter.WithUserID(t.Context(), "outsider"),
	}
}

func next[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	var zero T
	return zero
}

func TestSendValidatesAndViewersChat(t *testing.T) {
	e := newEnv(t, nil)
	m, err := e.svc.Send(e.viewer, e.session, "  hello  ")
	if err != nil || m.Body != "hello" || m.Seq != 1 || m.UserID != "viewer" {
		t.Fatalf("viewer's message: %+v, %v", m, err)
	}
	for _, c := range []struct{ body, code string }{
		{"   ", codecrafter.EINVALID},
		{strings.Repeat("é", codecrafter.MaxMessageLen+1), codecrafter.EINVALID},
		{"\xff", codecrafter.EINVALID},
	} {
		if _, err := e.svc.Send(e.owner, e.session, c.body); !codecrafter.IsCode(err, c.code) {
			t.Errorf("body %.10q: %v, want %s", c.body, err, c.code)
		}
	}
	if _, err := e.svc.Send(e.owner, e.session, strings.Repeat("é", codecrafter.MaxMessageLen)); err != nil {
		t.Errorf("4000 characters: %v", err)
	}
	if _, err := e.svc.Send(e.outsider, e.session, "hi"); !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		t.Errorf("outsider: %v, want NOT_FOUND", err)
	}
	if _, err := e.svc.Messages(e.outsider, e.session, nil, 10); !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		t.Errorf("outsider reads: %v, want NOT_FOUND", err)
	}
}

func TestSendRateLimited(t *testing.T) {
	e := newEnv(t, inmem.NewLimiter(3, time.Minute))
	for i := range 3 {
		if _, err := e.svc.Send(e.owner, e.session, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.svc.Send(e.owner, e.session, "one too many")
	var ce *codecrafter.Error
	if !codecrafter.IsCode(err, codecrafter.ERATELIMITED) || !asErr(err, &ce) || ce.RetryAfter <= 0 {
		t.Fatalf("4th message: %v, want RATE_LIMITED with a retry time", err)
	}
	if _, err := e.svc.Send(e.viewer, e.session, "another user"); err != nil {
		t.Fatalf("another user is limited too: %v", err)
	}
}

// TestMessageAddedResumes: a subscriber with after replays what it missed
// from the store, then goes on live: every message once, in order, even
// while messages keep arriving across the switch.
func TestMessageAddedResumes(t *testing.T) {
	e := newEnv(t, nil)
	var ids []string
	for i := range 40 {
		m, err := e.svc.Send(e.owner, e.session, fmt.Sprint("m", i+1))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	ctx, cancel := context.WithCancel(e.viewer)
	defer cancel()
	ch, err := e.svc.MessageAdded(ctx, e.session, &ids[4]) // seen 1..5
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { // more messages while the subscriber replays
		for i := 40; i < 80; i++ {
			if _, err := e.svc.Send(e.owner, e.session, fmt.Sprint("m", i+1)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for want := 6; want <= 80; want++ {
		m := next(t, ch)
		if m.Seq != want || m.Body != fmt.Sprint("m", want) {
			t.Fatalf("got seq %d %q, want %d", m.Seq, m.Body, want)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Someone else's id, or garbage, is refused.
	bad := codecrafter.MessageID(codecrafter.NewID(), 3)
	if _, err := e.svc.MessageAdded(ctx, e.session, &bad); !codecrafter.IsCode(err, codecrafter.EINVALID) {
		t.Fatalf("after of another session: %v", err)
	}
	if _, err := e.svc.MessageAdded(e.outsider, e.session, nil); !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		t.Fatalf("outsider subscribes: %v", err)
	}
}

// TestMessageAddedFillsBusGaps: a message the bus lost is read from the
// store when the next one shows the gap.
func TestMessageAddedFillsBusGaps(t *testing.T) {
	e := newEnv(t, nil)
	ch, err := e.svc.MessageAdded(e.viewer, e.session, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Send(e.owner, e.session, "one"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, ch); m.Seq != 1 {
		t.Fatalf("first: %d", m.Seq)
	}
	// Stored without a bus event (a lost one), then one more sent.
	if err := e.db.AppendMessage(t.Context(), &codecrafter.Message{SessionID: e.session, UserID: "owner", Body: "lost", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Send(e.owner, e.session, "three"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lost", "three"} {
		if m := next(t, ch); m.Body != want {
			t.Fatalf("got %q, want %q", m.Body, want)
		}
	}
}

func TestTypingLapsesAndClearsOnSend(t *testing.T) {
	e := newEnv(t, nil)
	ch, err := e.svc.Typing(e.viewer, e.session)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetTyping(e.owner, e.session, true); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.UserID != "owner" || !ev.Typing {
		t.Fatalf("got %+v", ev)
	}
	// No refresh: it lapses by itself (TTL 300 ms in this test).
	if ev := next(t, ch); ev.UserID != "owner" || ev.Typing {
		t.Fatalf("got %+v, want owner not typing", ev)
	}
	// Sending a message clears it.
	if err := e.svc.SetTyping(e.owner, e.session, true); err != nil {
		t.Fatal(err)
	}
	next(t, ch)
	if _, err := e.svc.Send(e.owner, e.session, "done"); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Typing {
		t.Fatalf("after sending: %+v", ev)
	}
	if err := e.svc.SetTyping(e.outsider, e.session, true); !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		t.Fatalf("outsider types: %v", err)
	}
}

func TestPresence(t *testing.T) {
	e := newEnv(t, nil)
	ownerCtx, ownerGone := context.WithCancel(e.owner)
	e.svc.Hold(ownerCtx, e.session)
	ch, err := e.svc.PresenceEvents(e.viewer, e.session)
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.UserID != "owner" || !ev.Online {
		t.Fatalf("first event %+v, want owner online", ev)
	}
	viewerCtx, viewerGone := context.WithCancel(e.viewer)
	e.svc.Hold(viewerCtx, e.session)
	e.svc.Hold(viewerCtx, e.session) // two subscriptions: one presence
	if ev := next(t, ch); ev.UserID != "viewer" || !ev.Online {
		t.Fatalf("got %+v, want viewer online", ev)
	}
	if !e.svc.Online(e.owner, e.session, "viewer") {
		t.Fatal("viewer not online")
	}
	ownerGone()
	if ev := next(t, ch); ev.UserID != "owner" || ev.Online {
		t.Fatalf("got %+v, want owner offline", ev)
	}
	viewerGone()
	if ev := next(t, ch); ev.UserID != "viewer" || ev.Online {
		t.Fatalf("got %+v, want viewer offline", ev)
	}
}

func asErr(err error, target **codecrafter.Error) bool {
	e, ok := err.(*codecrafter.Error)
	*target = e
	return ok
}
