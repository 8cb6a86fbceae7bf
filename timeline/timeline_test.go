package timeline

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/events"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/mongo"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
)

var storeURI string

func TestMain(m *testing.M) { os.Exit(mongotest.Main(m, &storeURI)) }

// store is the real store, with an edit log of the test's making (edits
// at chosen times), paged like the real one: EditsSince(after) returns
// the edits from a snapshot at a multiple of 32 at or before after.
type store struct {
	*mongo.DB
	mu    sync.Mutex
	edits []*codecrafter.Edit
}

func (s *store) EditsSince(_ context.Context, _ string, after int) (int, string, []*codecrafter.Edit, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.edits) == 0 {
		return 0, "", nil, false, nil
	}
	base := min(after, len(s.edits)-1)
	base -= base % 32
	return base, "", append([]*codecrafter.Edit(nil), s.edits[base:]...), true, nil
}

func (s *store) addEdit(user string, at time.Time) *codecrafter.Edit {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &codecrafter.Edit{Revision: len(s.edits) + 1, UserID: user, CreatedAt: at}
	s.edits = append(s.edits, e)
	return e
}

// live stands for the chat's and the editor's subscriptions: the test
// sends what they would.
type live struct {
	msgs  chan *codecrafter.Message
	edits chan *codecrafter.Edit
}

func (l *live) MessageAdded(ctx context.Context, _ string, _ *string) (<-chan *codecrafter.Message, error) {
	return l.msgs, nil
}

func (l *live) CodeEdited(ctx context.Context, _ string, _ *int) (<-chan *codecrafter.Edit, error) {
	return l.edits, nil
}

type fixture struct {
	svc  *Service
	st   *store
	bus  codecrafter.Bus
	live *live
	sid  string
	t0   time.Time
	now  time.Time
}

// setup makes a session of "a" with "b" in it, on a clock at t0 + 1 h.
func setup(t *testing.T) *fixture { t.Helper(); return setupTB(t) }

func setupTB(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{st: &store{DB: mongotest.Open(t, storeURI)}, bus: inmem.NewBus(), sid: codecrafter.NewID(),
		live: &live{msgs: make(chan *codecrafter.Message), edits: make(chan *codecrafter.Edit)},
		t0:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	f.now = f.t0.Add(time.Hour)
	f.svc = New(f.st, f.bus, f.live, f.live, slog.New(slog.DiscardHandler))
	f.svc.now = func() time.Time { return f.now }
	err := f.st.CreateSession(t.Context(), &codecrafter.Session{ID: f.sid, Title: "t", Language: "python", OwnerID: "a",
		InviteCode: codecrafter.RandomToken(12), CreatedAt: f.t0, UpdatedAt: f.t0, Participants: []codecrafter.Participant{
			{UserID: "a", Role: codecrafter.RoleOwner, JoinedAt: f.t0}, {UserID: "b", Role: codecrafter.RoleEditor, JoinedAt: f.t0}}})
	must(t, err)
	return f
}

func (f *fixture) at(s float64) time.Time { return f.t0.Add(time.Duration(s * float64(time.Second))) }

func (f *fixture) member(t *testing.T, kind codecrafter.MemberEventKind, user string, role codecrafter.Role, at time.Time) *codecrafter.MemberEvent {
	t.Helper()
	e := &codecrafter.MemberEvent{SessionID: f.sid, Kind: kind, UserID: user, Role: role, At: at}
	must(t, f.st.AppendMemberEvent(t.Context(), e))
	return e
}

func (f *fixture) message(t *testing.T, user, body string, at time.Time) *codecrafter.Message {
	t.Helper()
	m := &codecrafter.Message{SessionID: f.sid, UserID: user, Body: body, CreatedAt: at}
	must(t, f.st.AppendMessage(t.Context(), m))
	return m
}

func (f *fixture) run(t *testing.T, user string, finished time.Time) *codecrafter.Execution {
	t.Helper()
	return f.runTB(t, user, finished)
}

func (f *fixture) runTB(t testing.TB, user string, finished time.Time) *codecrafter.Execution {
	t.Helper()
	ctx := context.Background()
	e := &codecrafter.Execution{ID: codecrafter.NewID(), SessionID: f.sid, UserID: user, Language: "python", Code: "print(1)",
		TimeLimit: time.Second, MemoryLimitMB: 64, Status: codecrafter.StatusQueued, CreatedAt: finished.Add(-time.Second),
		Output: []codecrafter.OutputChunk{{Seq: 1, Status: codecrafter.StatusQueued}}}
	must(t, f.st.CreateExecution(ctx, e))
	_, err := f.st.ClaimExecution(ctx, e.ID, "w", finished.Add(-time.Second), codecrafter.OutputChunk{Status: codecrafter.StatusRunning}, codecrafter.AnyAttempt)
	must(t, err)
	done, err := f.st.FinishExecution(ctx, e.ID, 1, codecrafter.Result{Status: codecrafter.StatusSucceeded, Stdout: "1\n", FinishedAt: finished},
		codecrafter.OutputChunk{Status: codecrafter.StatusSucceeded})
	must(t, err)
	return done
}

// story: a joins; a and b edit, b also after a pause; chat; a run; c joins, becomes a VIEWER, leaves.
func (f *fixture) story(t *testing.T) []string {
	f.member(t, codecrafter.MemberJoined, "a", codecrafter.RoleOwner, f.at(0))
	f.member(t, codecrafter.MemberJoined, "b", codecrafter.RoleEditor, f.at(0.5))
	for _, e := range []struct {
		user string
		at   float64
	}{{"a", 1}, {"a", 2}, {"b", 2.5}, {"a", 3.9}, {"b", 5.4}, {"a", 7}} {
		f.st.addEdit(e.user, f.at(e.at))
	}
	f.message(t, "b", "hi", f.at(7.5))
	f.run(t, "a", f.at(9))
	f.member(t, codecrafter.MemberJoined, "c", codecrafter.RoleEditor, f.at(10))
	f.member(t, codecrafter.MemberRoleChanged, "c", codecrafter.RoleViewer, f.at(10)) // same millisecond: seq order
	f.member(t, codecrafter.MemberLeft, "c", codecrafter.RoleViewer, f.at(11))
	return []string{
		"JOINED a OWNER", "JOINED b EDITOR",
		"EDITS a 1..4 (3) at 3.9", // a's edits 1, 2, 4: each less than 3 s after a's previous one
		"EDITS b 3..5 (2) at 5.4", // b's, with a's in between
		"EDITS a 6..6 (1) at 7",   // 3.1 s after a's last
		"MESSAGE b hi", "RUN a SUCCEEDED",
		"JOINED c EDITOR", "ROLE_CHANGED c VIEWER", "LEFT c",
	}
}

func (f *fixture) show(it *Item) string {
	s := string(it.Kind) + " " + it.UserID
	switch it.Kind {
	case KindEdits:
		s += fmt.Sprintf(" %d..%d (%d) at %g", it.FromRevision, it.ToRevision, it.EditCount, it.At.Sub(f.t0).Seconds())
	case KindMessage:
		s += " " + it.Message.Body
	case KindRun:
		s += " " + string(it.Execution.Status)
	}
	if it.Role != "" {
		s += " " + string(it.Role)
	}
	return s
}

func (f *fixture) shows(items []*Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = f.show(it)
	}
	return out
}

func as(user string) context.Context { return codecrafter.WithUserID(context.Background(), user) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := codecrafter.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

// TestPage: one order over every source, edit bursts per author split by
// pauses, paging with after gives the same items once each; outsiders
// get NOT_FOUND.
func TestPage(t *testing.T) {
	t.Parallel()
	f := setup(t)
	want := f.story(t)
	all, err := f.svc.Page(as("b"), f.sid, nil, MaxLimit)
	must(t, err)
	if got := f.shows(all); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("timeline:\n%q\nwant\n%q", got, want)
	}
	for _, limit := range []int{1, 2, 3} {
		var paged []*Item
		var after *string
		for {
			p, err := f.svc.Page(as("a"), f.sid, after, limit)
			must(t, err)
			if len(p) == 0 {
				break
			}
			paged = append(paged, p...)
			after = &p[len(p)-1].Cursor
		}
		if len(paged) != len(all) {
			t.Fatalf("limit %d: %d items, want %d", limit, len(paged), len(all))
		}
		for i := range all {
			if paged[i].Cursor != all[i].Cursor || f.show(paged[i]) != f.show(all[i]) {
				t.Fatalf("limit %d: item %d %s, want %s", limit, i, f.show(paged[i]), f.show(all[i]))
			}
		}
	}
	_, err = f.svc.Page(as("eve"), f.sid, nil, 10)
	wantCode(t, err, codecrafter.ENOTFOUND)
	_, err = f.svc.Page(as("a"), codecrafter.NewID(), nil, 10)
	wantCode(t, err, codecrafter.ENOTFOUND)
	bad := "nope"
	_, err = f.svc.Page(as("a"), f.sid, &bad, 10)
	wantCode(t, err, codecrafter.EINVALID)
	for _, l := range []int{0, MaxLimit + 1} {
		_, err = f.svc.Page(as("a"), f.sid, nil, l)
		wantCode(t, err, codecrafter.EINVALID)
	}
}

func next(t *testing.T, ch <-chan *Item) *Item {
	t.Helper()
	select {
	case it, ok := <-ch:
		if !ok {
			t.Fatal("the timeline ended")
		}
		return it
	case <-time.After(20 * time.Second):
		t.Fatal("no timeline item")
		return nil
	}
}

// sendLive hands v to a live source's channel (the follower reads it).
func sendLive[T any](t *testing.T, ch chan T, v T) {
	t.Helper()
	select {
	case ch <- v:
	case <-time.After(20 * time.Second):
		t.Fatal("the follower does not read")
	}
}

// TestFollow: after a cursor, the items after it, then live ones; what
// the live sources repeat of the read is dropped; a growing burst comes
// again with its cursor; membership changes and ended runs come from the
// store and the bus.
func TestFollow(t *testing.T) {
	t.Parallel()
	f := setup(t)
	want := f.story(t)
	all, err := f.svc.Page(as("b"), f.sid, nil, MaxLimit)
	must(t, err)
	ctx, cancel := context.WithCancel(as("b"))
	defer cancel()
	ch, err := f.svc.Follow(ctx, f.sid, &all[4].Cursor) // a's last burst
	must(t, err)
	for i := 5; i < len(want); i++ {
		if it := next(t, ch); it.Cursor != all[i].Cursor || f.show(it) != want[i] {
			t.Fatalf("replayed %s, want %s", f.show(it), want[i])
		}
	}

	// The live sources start where the store was when they subscribed:
	// what the read had already is dropped.
	sendLive(t, f.live.msgs, &codecrafter.Message{SessionID: f.sid, Seq: 1, UserID: "b", Body: "hi", CreatedAt: f.at(7.5)})
	sendLive(t, f.live.edits, f.st.edits[5])
	m := f.message(t, "a", "new", f.at(12))
	sendLive(t, f.live.msgs, m)
	if it := next(t, ch); f.show(it) != "MESSAGE a new" || it.Message.Seq != 2 {
		t.Fatalf("live: %s (%+v)", f.show(it), it.Message)
	}
	// a's burst from revision 6 grows: the same cursor, the new end.
	sendLive(t, f.live.edits, f.st.addEdit("a", f.at(9)))
	if it := next(t, ch); it.Cursor != all[4].Cursor || f.show(it) != "EDITS a 6..7 (2) at 9" {
		t.Fatalf("grown: %s (cursor %q, want %q)", f.show(it), it.Cursor, all[4].Cursor)
	}
	// Membership, from the store on the doorbell.
	e := f.member(t, codecrafter.MemberJoined, "d", codecrafter.RoleEditor, f.at(13))
	must(t, f.bus.Publish(t.Context(), codecrafter.MembersTopic(f.sid), codecrafter.EncodeMemberEvent(e)))
	if it := next(t, ch); f.show(it) != "JOINED d EDITOR" {
		t.Fatalf("live member: %s", f.show(it))
	}
	// A run once it ended: its status changes before, the read run, and a
	// repeat are not items.
	old, err := f.st.ListExecutions(t.Context(), f.sid, 1)
	must(t, err)
	running := &codecrafter.Execution{ID: codecrafter.NewID(), SessionID: f.sid, UserID: "b", Status: codecrafter.StatusRunning}
	ended := *running
	fin := f.at(14)
	ended.Status, ended.FinishedAt = codecrafter.StatusFailed, &fin
	for _, e := range []*codecrafter.Execution{old[0], running, &ended, &ended} {
		must(t, f.bus.Publish(t.Context(), codecrafter.SessionExecutionsTopic(f.sid), events.EncodeExecution(e)))
	}
	if it := next(t, ch); f.show(it) != "RUN b FAILED" || it.Execution.ID != ended.ID {
		t.Fatalf("live run: %s", f.show(it))
	}
	sendLive(t, f.live.msgs, f.message(t, "b", "end", f.at(15)))
	if it := next(t, ch); f.show(it) != "MESSAGE b end" {
		t.Fatalf("after the run: %s (a repeat?)", f.show(it))
	}
	cancel()
	for range ch { // closes once ctx ended
	}

	_, err = f.svc.Follow(as("eve"), f.sid, nil)
	wantCode(t, err, codecrafter.ENOTFOUND)
}

// TestFollowResendsOpenBursts: resuming after a cursor, a burst at or
// before it whose author is still typing is sent again first, whole (the
// log is read back to where it began, however long it is).
func TestFollowResendsOpenBursts(t *testing.T) {
	t.Parallel()
	f := setup(t)
	const n = 300 // several pages of the log, each edit 1 s after the last
	for i := range n {
		f.st.addEdit("a", f.at(float64(i)))
	}
	f.message(t, "b", "while a types", f.at(n-10))
	f.now = f.at(n) // a's last edit 1 s ago
	all, err := f.svc.Page(as("b"), f.sid, nil, MaxLimit)
	must(t, err)
	if got := f.shows(all); len(got) != 2 || got[0] != fmt.Sprintf("EDITS a 1..%d (%d) at %d", n, n, n-1) || got[1] != "MESSAGE b while a types" {
		t.Fatalf("timeline %q", got)
	}
	ctx, cancel := context.WithCancel(as("b"))
	ch, err := f.svc.Follow(ctx, f.sid, &all[1].Cursor)
	must(t, err)
	if it := next(t, ch); it.Cursor != all[0].Cursor || f.show(it) != f.show(all[0]) {
		t.Fatalf("sent again: %s, want %s", f.show(it), f.show(all[0]))
	}
	sendLive(t, f.live.edits, f.st.addEdit("a", f.at(n)))
	if it := next(t, ch); it.Cursor != all[0].Cursor || it.ToRevision != n+1 {
		t.Fatalf("grown: %s", f.show(it))
	}
	cancel()
	for range ch {
	}

	// Once a paused, nothing is sent again.
	f.now = f.at(n + 4)
	ctx, cancel = context.WithCancel(as("b"))
	defer cancel()
	ch, err = f.svc.Follow(ctx, f.sid, &all[1].Cursor)
	must(t, err)
	sendLive(t, f.live.msgs, f.message(t, "a", "done", f.at(n+4)))
	if it := next(t, ch); f.show(it) != "MESSAGE a done" {
		t.Fatalf("resumed with %s", f.show(it))
	}
}

// TestPageLongHistory: paging deep into a long chat, log and run list
// (read from near the cursor, not from the start) gives what one read of
// everything gives, and so does a subscription resuming half way.
func TestPageLongHistory(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for i := range 150 {
		f.message(t, "b", fmt.Sprint("m", i), f.at(float64(i*60)))
		f.st.addEdit([]string{"a", "b"}[i%2], f.at(float64(i*60+30)))
	}
	for i := range 70 {
		f.run(t, "a", f.at(float64(i*250+10)))
	}
	all, err := f.svc.Page(as("a"), f.sid, nil, MaxLimit)
	must(t, err)
	for after := &all[len(all)-1].Cursor; ; {
		p, err := f.svc.Page(as("a"), f.sid, after, MaxLimit)
		must(t, err)
		if len(p) == 0 {
			break
		}
		all = append(all, p...)
		after = &p[len(p)-1].Cursor
	}
	if len(all) != 150+150+70 {
		t.Fatalf("%d items, want %d", len(all), 370)
	}
	for i := 1; i < len(all); i++ {
		if all[i].key.cmp(all[i-1].key) <= 0 {
			t.Fatalf("item %d %s not after %s", i, f.show(all[i]), f.show(all[i-1]))
		}
	}
	var paged []*Item
	for after := &all[200].Cursor; ; {
		p, err := f.svc.Page(as("b"), f.sid, after, 40)
		must(t, err)
		if len(p) == 0 {
			break
		}
		paged = append(paged, p...)
		after = &p[len(p)-1].Cursor
	}
	if got, want := f.shows(paged), f.shows(all[201:]); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("paged from item 200:\n%q\nwant\n%q", got, want)
	}
	ctx, cancel := context.WithCancel(as("b"))
	defer cancel()
	ch, err := f.svc.Follow(ctx, f.sid, &all[200].Cursor)
	must(t, err)
	for i := 201; i < len(all); i++ {
		if it := next(t, ch); it.Cursor != all[i].Cursor {
			t.Fatalf("replayed %s, want item %d %s", f.show(it), i, f.show(all[i]))
		}
	}
	cancel()
	for range ch {
	}
}
