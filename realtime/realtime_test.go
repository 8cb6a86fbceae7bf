package realtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/bustest"
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
	return newEnvWith(t, limit, inmem.NewBus(), nil)
}

// newEnvWith makes an env on bus; wrap, if set, stands between the service
// and bus.
func newEnvWith(t *testing.T, limit codecrafter.Limiter, bus *inmem.Bus, wrap codecrafter.Bus) *env {
	t.Helper()
	db := mongotest.Open(t, mongoURI)
	var svcBus codecrafter.Bus = bus
	if wrap != nil {
		svcBus = wrap
	}
	svc := realtime.New(realtime.Config{TypingTTL: 300 * time.Millisecond}, db, db, svcBus, inmem.NewPresence(bus), limit, slog.New(slog.DiscardHandler))
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

// expectSeqs reads messages from..to, each once, in order.
func expectSeqs(t *testing.T, ch <-chan *codecrafter.Message, from, to int) {
	t.Helper()
	for want := from; want <= to; want++ {
		if m := next(t, ch); m.Seq != want || m.Body != fmt.Sprint("m", want) {
			t.Fatalf("got seq %d %q, want %d", m.Seq, m.Body, want)
		}
	}
}

func sendN(t *testing.T, e *env, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := e.svc.Send(e.owner, e.session, fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMessageAddedSurvivesSlowSubscription: a reader that falls behind
// (more unread messages than MessageAdded buffers) is dropped by the session's follower, then watches again from
// the store: it misses nothing and sees nothing twice.
func TestMessageAddedSurvivesSlowSubscription(t *testing.T) {
	bus := inmem.NewBusWithBuffer(2)
	e := newEnvWith(t, nil, bus, nil)
	e.svc = realtime.New(realtime.Config{MessageBuffer: 4}, e.db, e.db, bus, inmem.NewPresence(bus), nil, slog.New(slog.DiscardHandler))
	sendN(t, e, 1, 3) // before the subscription: not streamed
	ch, err := e.svc.MessageAdded(e.viewer, e.session, nil)
	if err != nil {
		t.Fatal(err)
	}
	sendN(t, e, 4, 30) // not read meanwhile: far more than the 4 buffered
	expectSeqs(t, ch, 4, 30)
	sendN(t, e, 31, 31) // live again, and no duplicate came before it
	expectSeqs(t, ch, 31, 31)
}

// TestMessageAddedSurvivesConnectionLoss: the bus ends the subscription
// (its connection dropped) and refuses new ones for a while; messages
// stored meanwhile come from the store once it is back.
func TestMessageAddedSurvivesConnectionLoss(t *testing.T) {
	inner := inmem.NewBus()
	bus := bustest.NewFlaky(inner)
	e := newEnvWith(t, nil, inner, bus)
	ch, err := e.svc.MessageAdded(e.viewer, e.session, nil)
	if err != nil {
		t.Fatal(err)
	}
	sendN(t, e, 1, 1)
	expectSeqs(t, ch, 1, 1)
	bus.Drop()
	sendN(t, e, 2, 4)
	select {
	case <-bus.Refused: // the follower tried to subscribe again
	case <-time.After(10 * time.Second):
		t.Fatal("no resubscription")
	}
	bus.Up()
	expectSeqs(t, ch, 2, 4)
	sendN(t, e, 5, 5)
	expectSeqs(t, ch, 5, 5)
}

// TestMessageAddedStartsAtTail: without after, the stream starts above
// the last stored message, found by a search over long histories too.
func TestMessageAddedStartsAtTail(t *testing.T) {
	e := newEnv(t, nil)
	stored := 0
	for _, n := range []int{0, 1, 99, 100, 101, 200, 345} {
		for ; stored < n; stored++ {
			m := &codecrafter.Message{SessionID: e.session, UserID: "owner", Body: fmt.Sprint("m", stored+1), CreatedAt: time.Now()}
			if err := e.db.AppendMessage(t.Context(), m); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(e.viewer)
		ch, err := e.svc.MessageAdded(ctx, e.session, nil)
		if err != nil {
			t.Fatal(err)
		}
		stored++
		sendN(t, e, stored, stored)
		expectSeqs(t, ch, stored, stored)
		cancel()
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

// countingMessages counts store reads of messages.
type countingMessages struct {
	codecrafter.MessageStore
	reads atomic.Int32
}

func (c *countingMessages) Messages(ctx context.Context, sessionID string, after, limit int) ([]*codecrafter.Message, error) {
	c.reads.Add(1)
	return c.MessageStore.Messages(ctx, sessionID, after, limit)
}

// TestMessageAddedWaitsForReorderedEvents: two messages whose events reach
// the bus in the wrong order (concurrent senders) are delivered in order
// without a store read; one whose predecessor never comes is read from the
// store.
func TestMessageAddedWaitsForReorderedEvents(t *testing.T) {
	e := newEnv(t, nil)
	store := &countingMessages{MessageStore: e.db}
	svc := realtime.New(realtime.Config{}, e.db, store, e.bus, inmem.NewPresence(e.bus), nil, slog.New(slog.DiscardHandler))
	ch, err := svc.MessageAdded(e.viewer, e.session, nil)
	if err != nil {
		t.Fatal(err)
	}
	event := func(m *codecrafter.Message) {
		b, _ := json.Marshal(map[string]any{"seq": m.Seq, "userId": m.UserID, "body": m.Body, "at": m.CreatedAt})
		if err := e.bus.Publish(t.Context(), codecrafter.ChatTopic(e.session), b); err != nil {
			t.Fatal(err)
		}
	}
	var ms []*codecrafter.Message
	for i := range 3 {
		m := &codecrafter.Message{SessionID: e.session, UserID: "owner", Body: fmt.Sprint("m", i+1), CreatedAt: time.Now()}
		if err := e.db.AppendMessage(t.Context(), m); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	before := store.reads.Load()
	event(ms[1])
	event(ms[0])
	for _, want := range []int{1, 2} {
		if m := next(t, ch); m.Seq != want {
			t.Fatalf("got seq %d, want %d", m.Seq, want)
		}
	}
	if n := store.reads.Load() - before; n != 0 {
		t.Fatalf("%d store reads for a reordered pair", n)
	}
	// A message whose predecessor's event is lost: read from the store.
	m4 := &codecrafter.Message{SessionID: e.session, UserID: "owner", Body: "m4", CreatedAt: time.Now()}
	if err := e.db.AppendMessage(t.Context(), m4); err != nil {
		t.Fatal(err)
	}
	event(m4)
	for _, want := range []int{3, 4} {
		if m := next(t, ch); m.Seq != want {
			t.Fatalf("got seq %d, want %d", m.Seq, want)
		}
	}
}

// flakyMessages lets the first pass reads through, then fails the next
// fails ones.
type flakyMessages struct {
	codecrafter.MessageStore
	pass, fails atomic.Int32
}

func (f *flakyMessages) Messages(ctx context.Context, sessionID string, after, limit int) ([]*codecrafter.Message, error) {
	if f.pass.Add(-1) < 0 && f.fails.Add(-1) >= 0 {
		return nil, codecrafter.Errorf(codecrafter.EUNAVAILABLE, "the database is unavailable")
	}
	return f.MessageStore.Messages(ctx, sessionID, after, limit)
}

// TestMessageAddedRetriesTheStore: a replay the store fails is tried
// again by itself, with no later message to trigger it. (The first read,
// the session's tail where its follower starts, passes: a failure there
// is returned to the subscriber.)
func TestMessageAddedRetriesTheStore(t *testing.T) {
	e := newEnv(t, nil)
	var first string
	for i := range 3 {
		m, err := e.svc.Send(e.owner, e.session, fmt.Sprint("m", i+1))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = m.ID
		}
	}
	store := &flakyMessages{MessageStore: e.db}
	store.pass.Store(1)
	store.fails.Store(2) // the follower's catch-up and the subscriber's replay
	svc := realtime.New(realtime.Config{}, e.db, store, e.bus, inmem.NewPresence(e.bus), nil, slog.New(slog.DiscardHandler))
	ch, err := svc.MessageAdded(e.viewer, e.session, &first)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{2, 3} {
		if m := next(t, ch); m.Seq != want {
			t.Fatalf("got seq %d, want %d", m.Seq, want)
		}
	}
	if store.fails.Load() > 0 {
		t.Fatal("the store never failed")
	}
}

// watcher records what WatchMessages gives it.
type watcher struct {
	refuse bool // emit refuses from the second message on
	n      int
	got    chan *codecrafter.Message
	ended  chan error
}

func newWatcher(refuse bool) *watcher {
	return &watcher{refuse: refuse, got: make(chan *codecrafter.Message, 100), ended: make(chan error, 1)}
}

func (w *watcher) emit(m *codecrafter.Message) bool {
	if w.n++; w.refuse && w.n > 1 {
		return false
	}
	w.got <- m
	return true
}

func (w *watcher) end(err error) { w.ended <- err }

// TestWatchMessages: watchers of a session share its follower (one tail
// read, the same *Message for all); an outsider gets NOT_FOUND at once and
// no call; a watcher that cannot keep up is ended with UNAVAILABLE saying
// where to resume, and one whose ctx ends with nil.
func TestWatchMessages(t *testing.T) {
	e := newEnv(t, nil)
	sendN(t, e, 1, 2)
	store := &countingMessages{MessageStore: e.db}
	svc := realtime.New(realtime.Config{}, e.db, store, e.bus, inmem.NewPresence(e.bus), nil, slog.New(slog.DiscardHandler))
	out := newWatcher(false)
	if err := svc.WatchMessages(e.outsider, e.session, nil, out.emit, out.end); !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		t.Fatalf("outsider: %v, want NOT_FOUND", err)
	}
	ctx, cancel := context.WithCancel(e.viewer)
	defer cancel()
	var ws []*watcher
	for i := range 10 {
		w := newWatcher(i == 0)
		if err := svc.WatchMessages(ctx, e.session, nil, w.emit, w.end); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	sendN(t, e, 3, 4)
	first := next(t, ws[0].got)
	for _, w := range ws[1:] {
		if m := next(t, w.got); m != first {
			t.Fatalf("watchers got different *Message values for seq %d (%d)", first.Seq, m.Seq)
		}
	}
	for _, w := range ws[1:] {
		if m := next(t, w.got); m.Seq != 4 {
			t.Fatalf("got seq %d, want 4", m.Seq)
		}
	}
	// The tail and the follower's first catch-up: not one per watcher.
	if n := store.reads.Load(); n > 2 {
		t.Errorf("%d store reads for 10 watchers", n)
	}
	err := next(t, ws[0].ended)
	if !codecrafter.IsCode(err, codecrafter.EUNAVAILABLE) || !strings.Contains(codecrafter.ErrorMessage(err), first.ID) {
		t.Fatalf("slow watcher ended with %v, want UNAVAILABLE naming %s", err, first.ID)
	}
	cancel()
	for _, w := range ws[1:] {
		if err := next(t, w.ended); err != nil {
			t.Fatalf("ended with %v, want nil", err)
		}
	}
	select {
	case m := <-out.got:
		t.Fatalf("outsider got %+v", m)
	case err := <-out.ended:
		t.Fatalf("outsider ended: %v", err)
	default:
	}
}

// gatedMessages holds the first append until released and counts appends.
type gatedMessages struct {
	codecrafter.MessageStore
	started chan struct{} // closed when the first append begins
	release chan struct{}
	once    sync.Once
	appends atomic.Int32
	failing atomic.Bool
}

func (g *gatedMessages) AppendMessages(ctx context.Context, ms []*codecrafter.Message) error {
	if g.appends.Add(1) == 1 {
		g.once.Do(func() { close(g.started) })
		<-g.release
	}
	if g.failing.Load() {
		return codecrafter.Errorf(codecrafter.EUNAVAILABLE, "store down")
	}
	return g.MessageStore.AppendMessages(ctx, ms)
}

// TestSendsCommitInGroups: messages sent while a write is in flight are
// stored together in the next write, each once, in a gapless order, and
// each sender gets its own message back; a failed write fails its senders
// only.
func TestSendsCommitInGroups(t *testing.T) {
	e := newEnv(t, nil)
	store := &gatedMessages{MessageStore: e.db, started: make(chan struct{}), release: make(chan struct{})}
	svc := realtime.New(realtime.Config{}, e.db, store, e.bus, inmem.NewPresence(e.bus), nil, slog.New(slog.DiscardHandler))
	live, err := svc.MessageAdded(e.viewer, e.session, nil)
	if err != nil {
		t.Fatal(err)
	}
	type sent struct {
		m   *codecrafter.Message
		err error
	}
	results := make(chan sent, 20)
	send := func(body string) {
		m, err := svc.Send(e.owner, e.session, body)
		results <- sent{m, err}
	}
	go send("first")
	<-store.started
	const n = 10
	for i := range n {
		go send(fmt.Sprint("m", i))
	}
	deadline := time.After(10 * time.Second)
	for svc.Waiting(e.session) < n { // all queued behind the first write
		select {
		case <-deadline:
			t.Fatalf("%d queued", svc.Waiting(e.session))
		case <-time.After(time.Millisecond):
		}
	}
	close(store.release)
	seqs := map[int]string{}
	for range n + 1 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if _, dup := seqs[r.m.Seq]; dup {
			t.Fatalf("seq %d twice", r.m.Seq)
		}
		seqs[r.m.Seq] = r.m.Body
	}
	if got := store.appends.Load(); got != 2 {
		t.Fatalf("%d appends for %d messages, want 2 (one, then the rest together)", got, n+1)
	}
	for seq := 1; seq <= n+1; seq++ {
		m := next(t, live)
		if m.Seq != seq || m.Body != seqs[seq] {
			t.Fatalf("live: seq %d %q, want %d %q", m.Seq, m.Body, seq, seqs[seq])
		}
	}
	store.failing.Store(true)
	if _, err := svc.Send(e.owner, e.session, "lost?"); !codecrafter.IsCode(err, codecrafter.EUNAVAILABLE) {
		t.Fatalf("a failed write: %v, want UNAVAILABLE", err)
	}
}
