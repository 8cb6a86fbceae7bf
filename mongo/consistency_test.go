package mongo

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/ferret"
)

// These tests write the state a crash between two writes leaves, straight
// into the collections, and check that reads see through it and repair
// it, and that writes are not blocked by it.

var ctx = context.Background()

func newTestDB(t *testing.T) (*DB, string) {
	t.Helper()
	e, err := ferret.Start(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return openTestDB(t, e.URI(), "test"), e.URI()
}

func openTestDB(t *testing.T, uri, database string) *DB {
	t.Helper()
	db, err := Open(ctx, uri, database, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(ctx) })
	return db
}

func must(t *testing.T, err error) {
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

func wantRef(t *testing.T, l lookup, key, want string) {
	t.Helper()
	ref, found, err := l.ref(ctx, key)
	must(t, err)
	if !found || ref != want {
		t.Errorf("lookup %s names %q (found %v), want %q", key, ref, found, want)
	}
}

func newUser(email string) *codecrafter.User {
	return &codecrafter.User{ID: codecrafter.NewID(), Email: email, Name: "Ada", PasswordHash: "h", CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
}

func newSession(owner string, others ...string) *codecrafter.Session {
	now := time.Now().UTC().Truncate(time.Millisecond)
	s := &codecrafter.Session{
		ID: codecrafter.NewID(), Title: "t", Language: "python", OwnerID: owner, InviteCode: codecrafter.RandomToken(9),
		Participants: []codecrafter.Participant{{UserID: owner, Role: codecrafter.RoleOwner, JoinedAt: now}},
		CreatedAt:    now, UpdatedAt: now,
	}
	for _, u := range others {
		s.Participants = append(s.Participants, codecrafter.Participant{UserID: u, Role: codecrafter.RoleEditor, JoinedAt: now})
	}
	return s
}

func TestEmailLookupLeftByCrash(t *testing.T) {
	t.Parallel()
	db, _ := newTestDB(t)

	// A sign-up that crashed after claiming the email.
	_, err := db.emails.coll.InsertOne(ctx, bson.D{byID("ada@example.com"), {Key: "userId", Value: "ghost"}})
	must(t, err)
	_, err = db.UserByEmail(ctx, "ada@example.com")
	wantCode(t, err, codecrafter.ENOTFOUND)
	u := newUser("ada@example.com")
	must(t, db.CreateUser(ctx, u))
	wantRef(t, db.emails, u.Email, u.ID)
	got, err := db.UserByEmail(ctx, u.Email)
	must(t, err)
	if got.ID != u.ID {
		t.Errorf("UserByEmail = %s, want %s", got.ID, u.ID)
	}
	wantCode(t, db.CreateUser(ctx, newUser(u.Email)), codecrafter.ECONFLICT)

	// A takeover that crashed after inserting its user, before pointing
	// the lookup at it.
	bob := newUser("bob@example.com")
	must(t, db.CreateUser(ctx, bob))
	must(t, db.emails.set(ctx, bob.Email, "ghost"))
	got, err = db.UserByEmail(ctx, bob.Email)
	must(t, err)
	if got.ID != bob.ID {
		t.Errorf("UserByEmail = %s, want %s", got.ID, bob.ID)
	}
	wantRef(t, db.emails, bob.Email, bob.ID) // repaired
	wantCode(t, db.CreateUser(ctx, newUser(bob.Email)), codecrafter.ECONFLICT)
}

func TestInviteLookupLeftByCrash(t *testing.T) {
	t.Parallel()
	db, _ := newTestDB(t)

	// A session creation that crashed after claiming its code.
	s := newSession("u1")
	must(t, db.invites.set(ctx, s.InviteCode, "ghost"))
	_, err := db.SessionByInviteCode(ctx, s.InviteCode)
	wantCode(t, err, codecrafter.ENOTFOUND)
	must(t, db.CreateSession(ctx, s))
	wantRef(t, db.invites, s.InviteCode, s.ID)
	got, err := db.SessionByInviteCode(ctx, s.InviteCode)
	must(t, err)
	if got.ID != s.ID {
		t.Errorf("SessionByInviteCode = %s, want %s", got.ID, s.ID)
	}

	// A lookup naming the wrong session (a takeover that crashed before
	// pointing it at its session).
	must(t, db.invites.set(ctx, s.InviteCode, "ghost"))
	got, err = db.SessionByInviteCode(ctx, s.InviteCode)
	must(t, err)
	if got.ID != s.ID {
		t.Errorf("SessionByInviteCode = %s, want %s", got.ID, s.ID)
	}
	wantRef(t, db.invites, s.InviteCode, s.ID)

	// A deletion that crashed before releasing the code.
	_, err = db.sessions.DeleteOne(ctx, bson.D{byID(s.ID)})
	must(t, err)
	_, err = db.SessionByInviteCode(ctx, s.InviteCode)
	wantCode(t, err, codecrafter.ENOTFOUND)
	again := newSession("u2")
	again.InviteCode = s.InviteCode
	must(t, db.CreateSession(ctx, again))
	wantRef(t, db.invites, s.InviteCode, again.ID)
}

func membership(t *testing.T, db *DB, user string) []string {
	t.Helper()
	var m membershipDoc
	err := db.memberships.FindOne(ctx, bson.D{byID(user)}).Decode(&m)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		t.Fatal(err)
	}
	slices.Sort(m.SessionIDs)
	return m.SessionIDs
}

func forUser(t *testing.T, db *DB, user string) []string {
	t.Helper()
	list, err := db.SessionsForUser(ctx, user)
	must(t, err)
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	return ids
}

func TestMembershipLeftByCrash(t *testing.T) {
	t.Parallel()
	db, _ := newTestDB(t)
	kept := newSession("u1", "u2")
	must(t, db.CreateSession(ctx, kept))
	deleted := newSession("u1", "u2")
	must(t, db.CreateSession(ctx, deleted))
	left := newSession("u1", "u2")
	must(t, db.CreateSession(ctx, left))

	// A deletion and a removal that crashed before updating memberships,
	// and a creation that crashed after adding them.
	_, err := db.sessions.DeleteOne(ctx, bson.D{byID(deleted.ID)})
	must(t, err)
	left.Participants = left.Participants[:1]
	_, err = db.sessions.ReplaceOne(ctx, bson.D{byID(left.ID)}, toSessionDoc(left))
	must(t, err)
	must(t, db.addMemberships(ctx, []string{"u2"}, "never-written"))

	if got := forUser(t, db, "u2"); !slices.Equal(got, []string{kept.ID}) {
		t.Errorf("SessionsForUser(u2) = %v, want [%s]", got, kept.ID)
	}
	if got := membership(t, db, "u2"); !slices.Equal(got, []string{kept.ID}) {
		t.Errorf("u2's membership after the read = %v, want it pruned to [%s]", got, kept.ID)
	}
	if got := forUser(t, db, "u1"); len(got) != 2 {
		t.Errorf("SessionsForUser(u1) = %v, want the 2 sessions left", got)
	}

	// Pruning an entry of a session that lists the user (again) keeps it.
	must(t, db.prune(ctx, "u2", kept.ID))
	if got := membership(t, db, "u2"); !slices.Equal(got, []string{kept.ID}) {
		t.Errorf("u2's membership after pruning a valid entry = %v, want [%s]", got, kept.ID)
	}
}

// A reader prunes an entry between the write that adds it and the session
// write that makes it valid: the writer adds it again.
func TestMembershipPrunedBeforeSessionWrite(t *testing.T) {
	t.Parallel()
	db, _ := newTestDB(t)
	db.beforeSessionWrite = func(id string) {
		for _, u := range []string{"u1", "u2"} {
			must(t, db.prune(ctx, u, id))
		}
	}
	s := newSession("u1")
	must(t, db.CreateSession(ctx, s))
	_, err := db.UpdateSession(ctx, s.ID, func(s *codecrafter.Session) error {
		s.Participants = append(s.Participants, codecrafter.Participant{UserID: "u2", Role: codecrafter.RoleViewer, JoinedAt: s.CreatedAt})
		return nil
	})
	must(t, err)
	for _, u := range []string{"u1", "u2"} {
		if got := forUser(t, db, u); !slices.Equal(got, []string{s.ID}) {
			t.Errorf("SessionsForUser(%s) = %v, want [%s]", u, got, s.ID)
		}
	}
}

func newExecution(session string, created time.Time) *codecrafter.Execution {
	return &codecrafter.Execution{
		ID: codecrafter.NewID(), SessionID: session, Language: "python", Code: "print(1)",
		Status: codecrafter.StatusQueued, CreatedAt: created,
		Output: []codecrafter.OutputChunk{{Seq: 1, Status: codecrafter.StatusQueued}},
	}
}

func ids(list []*codecrafter.Execution) []string {
	var out []string
	for _, e := range list {
		out = append(out, e.ID)
	}
	return out
}

func TestExecutionIndexLeftByCrash(t *testing.T) {
	t.Parallel()
	db, _ := newTestDB(t)
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	var want []string // newest first
	for i := range 4 {
		e := newExecution("s1", t0.Add(time.Duration(i)*time.Second))
		must(t, db.CreateExecution(ctx, e))
		want = append([]string{e.ID}, want...)
	}

	// A creation that crashed after indexing, and one after taking a
	// number in the list only.
	ghost := newExecution("s1", t0.Add(time.Minute))
	must(t, db.indexExecution(ctx, ghost))
	_, err := db.execLists.UpdateOne(ctx, bson.D{byID("s1")}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}})
	must(t, err)
	list, err := db.ListExecutions(ctx, "s1", 3)
	must(t, err)
	if got := ids(list); !slices.Equal(got, want[:3]) {
		t.Errorf("ListExecutions = %v, want %v", got, want[:3])
	}

	// A claim that crashed after flagging the entry: still queued.
	must(t, db.markClaimed(ctx, want[0]))
	stuck, err := db.StuckExecutions(ctx, t0.Add(time.Hour))
	must(t, err)
	if len(stuck) != 0 {
		t.Errorf("StuckExecutions = %v, want none", ids(stuck))
	}

	// A finish that crashed before leaving the active set.
	_, err = db.FinishExecution(ctx, want[1], 0, codecrafter.Result{Status: codecrafter.StatusError, FinishedAt: t0}, codecrafter.OutputChunk{Status: codecrafter.StatusError})
	must(t, err)
	_, err = db.active.InsertOne(ctx, activeDoc{ID: want[1], AddedAt: time.Now(), Claimed: true})
	must(t, err)

	pending, err := db.PendingExecutions(ctx)
	must(t, err)
	if got, w := ids(pending), []string{want[3], want[2], want[0]}; !slices.Equal(got, w) {
		t.Errorf("PendingExecutions = %v, want %v", got, w)
	}
	active := func() []string {
		t.Helper()
		cur, err := db.active.Find(ctx, bson.D{})
		must(t, err)
		var docs []activeDoc
		must(t, cur.All(ctx, &docs))
		var out []string
		for _, d := range docs {
			out = append(out, d.ID)
		}
		slices.Sort(out)
		return out
	}
	// The finished run's entry is gone; the ghost's stays, for now.
	wantActive := []string{want[0], want[2], want[3], ghost.ID}
	slices.Sort(wantActive)
	if got := active(); !slices.Equal(got, wantActive) {
		t.Errorf("active set %v, want %v", got, wantActive)
	}
	// An hour on, nothing will insert the ghost any more.
	_, err = db.active.UpdateOne(ctx, bson.D{byID(ghost.ID)}, bson.D{{Key: "$set", Value: bson.D{{Key: "addedAt", Value: time.Now().Add(-orphanAge - time.Minute)}}}})
	must(t, err)
	_, err = db.PendingExecutions(ctx)
	must(t, err)
	wantActive = slices.DeleteFunc(wantActive, func(id string) bool { return id == ghost.ID })
	if got := active(); !slices.Equal(got, wantActive) {
		t.Errorf("active set %v, want %v", got, wantActive)
	}
}

// A database written before the lookups existed gets them when opened.
func TestMigrate(t *testing.T) {
	t.Parallel()
	db, uri := newTestDB(t)
	legacy := db.client.Database("legacy")
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	insert := func(coll string, docs ...any) {
		t.Helper()
		_, err := legacy.Collection(coll).InsertMany(ctx, docs)
		must(t, err)
	}
	u := newUser("ada@example.com")
	insert("users", userDoc{ID: u.ID, Email: u.Email, Name: u.Name, PasswordHash: u.PasswordHash, CreatedAt: u.CreatedAt})
	s1, s2 := newSession(u.ID, "u2"), newSession("u2")
	s2.CreatedAt = s1.CreatedAt.Add(time.Second)
	insert("sessions", toSessionDoc(s1), toSessionDoc(s2))
	var runs []any
	var want []string
	for i := range 40 {
		e := newExecution(s1.ID, t0.Add(-time.Duration(i)*time.Second))
		if i > 0 {
			e.Status = codecrafter.StatusSucceeded
		}
		runs = append(runs, toExecutionDoc(e))
		want = append(want, e.ID)
	}
	insert("executions", runs...)

	m := openTestDB(t, uri, "legacy")
	got, err := m.UserByEmail(ctx, u.Email)
	must(t, err)
	if got.ID != u.ID {
		t.Errorf("UserByEmail = %s, want %s", got.ID, u.ID)
	}
	found, err := m.SessionByInviteCode(ctx, s2.InviteCode)
	must(t, err)
	if found.ID != s2.ID {
		t.Errorf("SessionByInviteCode = %s, want %s", found.ID, s2.ID)
	}
	if got := forUser(t, m, "u2"); !slices.Equal(got, []string{s2.ID, s1.ID}) {
		t.Errorf("SessionsForUser(u2) = %v, want [%s %s]", got, s2.ID, s1.ID)
	}
	list, err := m.ListExecutions(ctx, s1.ID, 35)
	must(t, err)
	if got := ids(list); !slices.Equal(got, want[:35]) {
		t.Errorf("ListExecutions = %v, want %v", got, want[:35])
	}
	pending, err := m.PendingExecutions(ctx)
	must(t, err)
	if got := ids(pending); !slices.Equal(got, want[:1]) {
		t.Errorf("PendingExecutions = %v, want %v", got, want[:1])
	}

	// Done once: a new run is listed once after opening again.
	e := newExecution(s1.ID, t0.Add(time.Second))
	must(t, m.CreateExecution(ctx, e))
	again := openTestDB(t, uri, "legacy")
	list, err = again.ListExecutions(ctx, s1.ID, 3)
	must(t, err)
	if got, w := ids(list), []string{e.ID, want[0], want[1]}; !slices.Equal(got, w) {
		t.Errorf("after reopening, ListExecutions = %v, want %v", got, w)
	}
}
