package editing_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/editing"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/mongo"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
	"github.com/codecrafter/codecrafter/ot"
)

var mongoURI string

func TestMain(m *testing.M) { os.Exit(mongotest.Main(m, &mongoURI)) }

type env struct {
	store  *mongo.DB
	svc    *editing.Service
	sess   *codecrafter.Session
	owner  context.Context
	viewer context.Context
}

func newEnv(t *testing.T, code string) *env {
	t.Helper()
	db := mongotest.Open(t, mongoURI)
	svc := editing.New(db, db, inmem.NewBus(), slog.New(slog.DiscardHandler))
	now := time.Now().UTC().Truncate(time.Millisecond)
	s := &codecrafter.Session{ID: codecrafter.NewID(), Title: "t", Language: "python", Code: code, OwnerID: "owner", InviteCode: codecrafter.NewID(),
		Participants: []codecrafter.Participant{{UserID: "owner", Role: codecrafter.RoleOwner, JoinedAt: now}, {UserID: "viewer", Role: codecrafter.RoleViewer, JoinedAt: now}},
		CreatedAt:    now, UpdatedAt: now}
	if err := db.CreateSession(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	return &env{store: db, svc: svc, sess: s, owner: codecrafter.WithUserID(t.Context(), "owner"), viewer: codecrafter.WithUserID(t.Context(), "viewer")}
}

func ip(n int) *int       { return &n }
func sp(s string) *string { return &s }

// insertAt is an edit inserting text at pos of a document of n code points.
func insertAt(pos, n int, text string) []editing.OpInput {
	var ops []editing.OpInput
	if pos > 0 {
		ops = append(ops, editing.OpInput{Retain: ip(pos)})
	}
	ops = append(ops, editing.OpInput{Insert: sp(text)})
	if n-pos > 0 {
		ops = append(ops, editing.OpInput{Retain: ip(n - pos)})
	}
	return ops
}

func head(t *testing.T, e *env) (int, string) {
	t.Helper()
	rev, code, err := e.svc.Head(e.owner, e.sess)
	if err != nil {
		t.Fatal(err)
	}
	return rev, code
}

// TestConcurrentEditsAtOnePosition: two edits made against revision 0 at
// the same position; the one applied first goes first (the tie-break).
func TestConcurrentEditsAtOnePosition(t *testing.T) {
	e := newEnv(t, "ab")
	first, err := e.svc.Edit(e.owner, e.sess.ID, editing.Input{BaseRevision: 0, Ops: insertAt(1, 2, "X")})
	if err != nil || first.Revision != 1 {
		t.Fatalf("first: %+v, %v", first, err)
	}
	second, err := e.svc.Edit(e.owner, e.sess.ID, editing.Input{BaseRevision: 0, Ops: insertAt(1, 2, "Y")})
	if err != nil || second.Revision != 2 {
		t.Fatalf("second: %+v, %v", second, err)
	}
	if rev, code := head(t, e); rev != 2 || code != "aXYb" {
		t.Fatalf("head %d %q, want 2 aXYb", rev, code)
	}
}

func TestEditErrors(t *testing.T) {
	e := newEnv(t, "héllo 😀")
	cases := []struct {
		name string
		ctx  context.Context
		in   editing.Input
		code string
	}{
		{"too short", e.owner, editing.Input{Ops: []editing.OpInput{{Retain: ip(3)}}}, codecrafter.EINVALID},
		{"counted in bytes", e.owner, editing.Input{Ops: []editing.OpInput{{Retain: ip(len("héllo 😀"))}}}, codecrafter.EINVALID},
		{"two fields", e.owner, editing.Input{Ops: []editing.OpInput{{Retain: ip(7), Insert: sp("x")}}}, codecrafter.EINVALID},
		{"negative", e.owner, editing.Input{Ops: []editing.OpInput{{Retain: ip(-1)}}}, codecrafter.EINVALID},
		{"future base", e.owner, editing.Input{BaseRevision: 5, Ops: []editing.OpInput{{Retain: ip(7)}}}, codecrafter.ECONFLICT},
		{"viewer", e.viewer, editing.Input{Ops: []editing.OpInput{{Retain: ip(7)}}}, codecrafter.EFORBIDDEN},
		{"outsider", codecrafter.WithUserID(t.Context(), "eve"), editing.Input{Ops: []editing.OpInput{{Retain: ip(7)}}}, codecrafter.ENOTFOUND},
		{"seq without clientId is fine, clientId without seq is not", e.owner, editing.Input{ClientID: sp("c"), Ops: []editing.OpInput{{Retain: ip(7)}}}, codecrafter.EINVALID},
	}
	for _, c := range cases {
		if _, err := e.svc.Edit(c.ctx, e.sess.ID, c.in); !codecrafter.IsCode(err, c.code) {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}
	// Code points: "😀" is one.
	if _, err := e.svc.Edit(e.owner, e.sess.ID, editing.Input{Ops: insertAt(7, 7, "!")}); err != nil {
		t.Fatal(err)
	}
	if _, code := head(t, e); code != "héllo 😀!" {
		t.Fatalf("code %q", code)
	}
}

// TestResentEditLandsOnce: the same clientId and seq again returns the edit
// as first applied, even when other edits landed in between.
func TestResentEditLandsOnce(t *testing.T) {
	e := newEnv(t, "")
	in := editing.Input{Ops: insertAt(0, 0, "x"), ClientID: sp("tab-1"), Seq: ip(1)}
	first, err := e.svc.Edit(e.owner, e.sess.ID, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Edit(e.owner, e.sess.ID, editing.Input{BaseRevision: 1, Ops: insertAt(1, 1, "y")}); err != nil {
		t.Fatal(err)
	}
	again, err := e.svc.Edit(e.owner, e.sess.ID, in)
	if err != nil || again.Revision != first.Revision {
		t.Fatalf("resend: %+v, %v; want revision %d", again, err, first.Revision)
	}
	if rev, code := head(t, e); rev != 2 || code != "xy" {
		t.Fatalf("head %d %q, want 2 xy", rev, code)
	}
}

// randomEdit makes a valid edit of doc.
func randomEdit(r *rand.Rand, doc string, who int) []editing.OpInput {
	n := utf8.RuneCountInString(doc)
	pos := r.IntN(n + 1)
	if n > 0 && r.IntN(3) == 0 { // a delete
		k := 1 + r.IntN(min(3, n))
		pos = min(pos, n-k)
		var ops []editing.OpInput
		if pos > 0 {
			ops = append(ops, editing.OpInput{Retain: ip(pos)})
		}
		ops = append(ops, editing.OpInput{Delete: ip(k)})
		if n-pos-k > 0 {
			ops = append(ops, editing.OpInput{Retain: ip(n - pos - k)})
		}
		return ops
	}
	return insertAt(pos, n, []string{"a", "😀", "é", "\n", fmt.Sprint(who)}[r.IntN(5)])
}

// TestRandomConcurrentEditsConverge: several clients edit at once, each
// against the revision it last saw; the server's code is what replaying
// the log gives, and a late subscriber replaying from revision 0 rebuilds
// it exactly.
func TestRandomConcurrentEditsConverge(t *testing.T) {
	const initial = "def f():\n    return 1\n"
	e := newEnv(t, initial)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for c := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 7))
			for range 15 {
				rev, doc, err := e.svc.Head(e.owner, e.sess) // what this client saw last
				if err != nil {
					errs <- err
					return
				}
				for range r.IntN(3) { // and it may be behind by then
					runtime.Gosched()
				}
				if _, err := e.svc.Edit(e.owner, e.sess.ID, editing.Input{BaseRevision: rev, Ops: randomEdit(r, doc, c)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rev, code := head(t, e)
	if rev != 60 {
		t.Fatalf("head revision %d, want 60", rev)
	}
	zero := 0
	ch, err := e.svc.CodeEdited(e.viewer, e.sess.ID, &zero)
	if err != nil {
		t.Fatal(err)
	}
	doc := initial
	for want := 1; want <= rev; want++ {
		select {
		case ed := <-ch:
			if ed.Revision != want {
				t.Fatalf("replayed revision %d, want %d", ed.Revision, want)
			}
			op := make(ot.Operation, len(ed.Ops))
			for i, o := range ed.Ops {
				op[i] = ot.Op{Retain: o.Retain, Insert: o.Insert, Delete: o.Delete}
			}
			if doc, err = ot.Apply(doc, op); err != nil {
				t.Fatalf("revision %d: %v", want, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no revision %d", want)
		}
	}
	if doc != code {
		t.Fatalf("replay gives %q, server has %q", doc, code)
	}
}

// TestCodeEditedGoesLive: a subscriber from the current revision gets the
// next edits live, in order.
func TestCodeEditedGoesLive(t *testing.T) {
	e := newEnv(t, "")
	ch, err := e.svc.CodeEdited(e.viewer, e.sess.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := e.svc.Edit(e.owner, e.sess.ID, editing.Input{BaseRevision: i, Ops: insertAt(i, i, "x")}); err != nil {
			t.Fatal(err)
		}
	}
	for want := 1; want <= 3; want++ {
		select {
		case ed := <-ch:
			if ed.Revision != want || ed.UserID != "owner" {
				t.Fatalf("got %+v, want revision %d", ed, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no revision %d", want)
		}
	}
	late := 9
	if _, err := e.svc.CodeEdited(e.viewer, e.sess.ID, &late); !codecrafter.IsCode(err, codecrafter.ECONFLICT) {
		t.Fatalf("sinceRevision past the head: %v, want CONFLICT", err)
	}
}

func TestCodeAt(t *testing.T) {
	e := newEnv(t, "ab")
	for i := range 40 { // across a page of the log
		if _, err := e.svc.Edit(e.owner, e.sess.ID, editing.Input{BaseRevision: i, Ops: insertAt(2+i, 2+i, "x")}); err != nil {
			t.Fatal(err)
		}
	}
	for _, rev := range []int{0, 1, 31, 32, 33, 40} {
		code, err := e.svc.CodeAt(e.viewer, e.sess.ID, rev)
		if want := "ab" + strings.Repeat("x", rev); err != nil || code != want {
			t.Fatalf("revision %d: %q, %v; want %q", rev, code, err, want)
		}
	}
	if _, err := e.svc.CodeAt(e.viewer, e.sess.ID, 41); !codecrafter.IsCode(err, codecrafter.EINVALID) {
		t.Fatalf("past the head: %v", err)
	}
	if _, err := e.svc.CodeAt(codecrafter.WithUserID(t.Context(), "eve"), e.sess.ID, 0); !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		t.Fatalf("outsider: %v", err)
	}
}

// TestSelectionsMoveWithTheText: a cursor set at an older revision is sent
// moved over the edits since; a user going offline clears theirs.
func TestSelectionsMoveWithTheText(t *testing.T) {
	e := newEnv(t, "hello")
	ch, err := e.svc.Selections(e.viewer, e.sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Someone inserts "😀 " at 0 (revision 1); the viewer's cursor at 5
	// (the end of "hello", seen at revision 0) moves to 7.
	if _, err := e.svc.Edit(e.owner, e.sess.ID, editing.Input{Ops: insertAt(0, 5, "😀 ")}); err != nil {
		t.Fatal(err)
	}
	sel, err := e.svc.SetSelection(e.viewer, e.sess.ID, 0, []ot.Selection{{Anchor: 5, Head: 5}, {Anchor: 0, Head: 2}})
	if err != nil {
		t.Fatal(err)
	}
	want := []ot.Selection{{Anchor: 7, Head: 7}, {Anchor: 2, Head: 4}}
	if sel.Revision != 1 || !slices.Equal(sel.Ranges, want) {
		t.Fatalf("selection %+v, want %v at revision 1", sel, want)
	}
	select {
	case got := <-ch:
		if got.UserID != "viewer" || !slices.Equal(got.Ranges, want) {
			t.Fatalf("subscriber got %+v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no selection event")
	}
	if _, err := e.svc.SetSelection(e.viewer, e.sess.ID, 0, []ot.Selection{{Anchor: 9, Head: 9}}); !codecrafter.IsCode(err, codecrafter.EINVALID) {
		t.Fatalf("a cursor past the end: %v", err)
	}
	if _, err := e.svc.SetSelection(e.viewer, e.sess.ID, 5, nil); !codecrafter.IsCode(err, codecrafter.ECONFLICT) {
		t.Fatalf("a future revision: %v", err)
	}
}

// TestTwoReplicasEditOneSession: two services on one store (two
// replicas) edit one session in turns and at once, several clients each,
// so that batches form; each finds the other's revisions through the
// append's compare-and-set, and the log converges.
func TestTwoReplicasEditOneSession(t *testing.T) {
	e := newEnv(t, "")
	other := editing.New(e.store, e.store, inmem.NewBus(), slog.New(slog.DiscardHandler))
	const clients, edits = 3, 6 // per replica, per client
	var wg sync.WaitGroup
	for i, svc := range []*editing.Service{e.svc, other} {
		for range clients {
			wg.Go(func() {
				for range edits {
					rev, doc, err := svc.Head(e.owner, e.sess)
					if err != nil {
						t.Error(err)
						return
					}
					n := utf8.RuneCountInString(doc)
					if _, err := svc.Edit(e.owner, e.sess.ID, editing.Input{BaseRevision: rev, Ops: insertAt(n, n, fmt.Sprint(i))}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	const total = 2 * clients * edits
	for _, svc := range []*editing.Service{e.svc, other} {
		rev, code, err := svc.Head(e.owner, e.sess)
		if err != nil || rev != total || strings.Count(code, "0") != total/2 || strings.Count(code, "1") != total/2 {
			t.Fatalf("head %d %q %v, want revision %d with %d of each replica's inserts", rev, code, err, total, total/2)
		}
	}
	// The cached history of the first is stale now: an edit through it at
	// the head still lands as the next revision.
	ed, err := e.svc.Edit(e.owner, e.sess.ID, editing.Input{BaseRevision: total, Ops: insertAt(total, total, "!")})
	if err != nil || ed.Revision != total+1 {
		t.Fatalf("edit after the other replica's: %+v, %v", ed, err)
	}
}

// gatedStore holds the first append until gate closes, and records how
// many edits each append stored and the newest stored revision.
type gatedStore struct {
	codecrafter.EditStore
	entered, gate chan struct{} // closed by the first append; closed to let it go on
	once          sync.Once
	mu            sync.Mutex
	writes        []int
	stored        int
}

func (g *gatedStore) AppendEdits(ctx context.Context, edits []*codecrafter.Edit, before string) (int, error) {
	g.once.Do(func() { close(g.entered); <-g.gate })
	n, err := g.EditStore.AppendEdits(ctx, edits, before)
	if err == nil {
		g.mu.Lock()
		g.writes, g.stored = append(g.writes, n), edits[n-1].Revision
		g.mu.Unlock()
	}
	return n, err
}

func (g *gatedStore) storedRevision() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stored
}

// TestEditsQueuedBehindAWriteAreStoredInOne: while a session's write is in
// flight, the edits that arrive queue up and are then stored in one
// write; each is answered only once stored; a resend within the batch
// gets the edit as first applied.
func TestEditsQueuedBehindAWriteAreStoredInOne(t *testing.T) {
	e := newEnv(t, "")
	g := &gatedStore{EditStore: e.store, entered: make(chan struct{}), gate: make(chan struct{})}
	svc := editing.New(e.store, g, inmem.NewBus(), slog.New(slog.DiscardHandler))
	type answer struct {
		ed  *codecrafter.Edit
		err error
		// stored: the newest stored revision when the answer came
		stored int
	}
	answers := make(chan answer, 8)
	edit := func(in editing.Input) {
		ed, err := svc.Edit(e.owner, e.sess.ID, in)
		answers <- answer{ed, err, g.storedRevision()}
	}
	go edit(editing.Input{Ops: insertAt(0, 0, "a")}) // its write waits for the gate
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first edit was not written")
	}
	inputs := []editing.Input{
		{Ops: insertAt(0, 0, "b")},
		{Ops: insertAt(0, 0, "c"), ClientID: sp("tab"), Seq: ip(1)},
		{Ops: insertAt(0, 0, "c"), ClientID: sp("tab"), Seq: ip(1)}, // a resend
		{Ops: insertAt(0, 0, "d")},
		{Ops: []editing.OpInput{{Retain: ip(5)}}}, // invalid: the code at 0 is empty
	}
	// One at a time, so that they queue in this order.
	for i, in := range inputs {
		go edit(in)
		for deadline := time.Now().Add(10 * time.Second); svc.Queued(e.sess.ID) < i+1; {
			if time.Now().After(deadline) {
				t.Fatalf("edit %d not queued", i)
			}
			runtime.Gosched()
		}
	}
	close(g.gate)
	var revs []int
	for range 1 + len(inputs) {
		select {
		case a := <-answers:
			switch {
			case a.err != nil:
				if !codecrafter.IsCode(a.err, codecrafter.EINVALID) {
					t.Fatalf("error %v, want BAD_USER_INPUT for the invalid edit", a.err)
				}
			case a.ed.Revision > a.stored:
				t.Fatalf("revision %d answered when only %d was stored", a.ed.Revision, a.stored)
			default:
				revs = append(revs, a.ed.Revision)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("an edit was not answered")
		}
	}
	slices.Sort(revs)
	if !slices.Equal(revs, []int{1, 2, 3, 3, 4}) {
		t.Fatalf("revisions %v, want 1 2 3 3 4 (the resend shares 3)", revs)
	}
	if !slices.Equal(g.writes, []int{1, 3}) {
		t.Fatalf("writes of %v edits, want 1 then the 3 queued behind it", g.writes)
	}
	if rev, code := head(t, e); rev != 4 || code != "abcd" { // at a tie the one applied first goes first
		t.Fatalf("head %d %q, want 4 abcd", rev, code)
	}
}

// losingStore refuses the first losses appends as if another replica had
// taken the revision each time.
type losingStore struct {
	codecrafter.EditStore
	losses int
}

func (l *losingStore) AppendEdits(ctx context.Context, edits []*codecrafter.Edit, before string) (int, error) {
	if l.losses > 0 {
		l.losses--
		return 0, codecrafter.Errorf(codecrafter.ECONFLICT, "revision %d is taken", edits[0].Revision)
	}
	return l.EditStore.AppendEdits(ctx, edits, before)
}

// TestEditLandsAfterLosingManyTimes: a replica whose writes keep losing to
// another's busy writer retries until its deadline, not a fixed few times
// (a busy replica starved the other that way).
func TestEditLandsAfterLosingManyTimes(t *testing.T) {
	e := newEnv(t, "")
	svc := editing.New(e.store, &losingStore{EditStore: e.store, losses: 30}, inmem.NewBus(), slog.New(slog.DiscardHandler))
	ed, err := svc.Edit(e.owner, e.sess.ID, editing.Input{Ops: insertAt(0, 0, "x")})
	if err != nil || ed.Revision != 1 {
		t.Fatalf("edit after 30 lost appends: %+v, %v", ed, err)
	}
}

// countingSessions counts session reads.
type countingSessions struct {
	codecrafter.SessionStore
	reads atomic.Int64
}

func (c *countingSessions) Session(ctx context.Context, id string) (*codecrafter.Session, error) {
	c.reads.Add(1)
	return c.SessionStore.Session(ctx, id)
}

// TestEditAuthorizationFollowsAccessChanges: while access changes are
// followed, a hot session's edits do not each read the session, and an
// editor made a viewer is refused at once when the change is announced.
func TestEditAuthorizationFollowsAccessChanges(t *testing.T) {
	e := newEnv(t, "")
	bus := inmem.NewBus()
	sessions := &countingSessions{SessionStore: e.store}
	svc := editing.New(sessions, e.store, bus, slog.New(slog.DiscardHandler))
	now := time.Now()
	svc.SetNow(func() time.Time { return now })
	if err := svc.WatchAccess(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UpdateSession(t.Context(), e.sess.ID, func(s *codecrafter.Session) error {
		s.Participants = append(s.Participants, codecrafter.Participant{UserID: "ed", Role: codecrafter.RoleEditor, JoinedAt: s.CreatedAt})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ed := codecrafter.WithUserID(t.Context(), "ed")
	for i := range 10 {
		if _, err := svc.Edit(ed, e.sess.ID, editing.Input{BaseRevision: i, Ops: insertAt(i, i, "x")}); err != nil {
			t.Fatal(err)
		}
	}
	if n := sessions.reads.Load(); n >= 10 {
		t.Fatalf("%d session reads for 10 edits", n)
	}
	if _, err := e.store.UpdateSession(t.Context(), e.sess.ID, func(s *codecrafter.Session) error {
		for i := range s.Participants {
			if s.Participants[i].UserID == "ed" {
				s.Participants[i].Role = codecrafter.RoleViewer
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Announced as the sessions service does, once stored: the next edit
	// is refused (the clock stands still: the read did not expire).
	if !svc.AuthCached(e.sess.ID) {
		t.Fatal("no session read held")
	}
	if err := bus.Publish(t.Context(), codecrafter.AccessTopic, codecrafter.EncodeAccessChange(codecrafter.AccessChange{SessionID: e.sess.ID, UserID: "ed"})); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Edit(ed, e.sess.ID, editing.Input{BaseRevision: 10, Ops: insertAt(10, 10, "y")}); !codecrafter.IsCode(err, codecrafter.EFORBIDDEN) {
		t.Fatalf("an edit after the change to viewer: %v, want FORBIDDEN", err)
	}
}
