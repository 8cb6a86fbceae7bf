package ferret_test

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	driver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/ferret"
	"github.com/codecrafter/codecrafter/mongo"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
)

func start(t *testing.T, dir string) *ferret.Server {
	t.Helper()
	e, err := ferret.Start(context.Background(), dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func open(t *testing.T, uri, database string) *mongo.DB {
	t.Helper()
	db, err := mongo.Open(context.Background(), uri, database, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestEmbeddedKeepsDataAcrossRestarts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	u := &codecrafter.User{ID: codecrafter.NewID(), Email: "ada@example.com", Name: "Ada", PasswordHash: "h", CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}

	e := start(t, dir)
	db := open(t, e.URI(), "app")
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	// A collection FerretDB creates on insert, without createIndexes.
	raw := rawClient(t, e.URI())
	if _, err := raw.Database("app").Collection("plain").InsertOne(ctx, bson.D{{Key: "_id", Value: "p1"}}); err != nil {
		t.Fatal(err)
	}
	raw.Disconnect(ctx)
	db.Close(ctx)
	e.Close()

	e = start(t, dir)
	defer e.Close()
	db = open(t, e.URI(), "app")
	defer db.Close(ctx)
	got, err := db.UserByEmail(ctx, u.Email)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if got.ID != u.ID || !got.CreatedAt.Equal(u.CreatedAt) {
		t.Errorf("after restart got %+v, want %+v", got, u)
	}
	if err := db.CreateUser(ctx, &codecrafter.User{ID: codecrafter.NewID(), Email: u.Email}); codecrafter.ErrorCode(err) != codecrafter.ECONFLICT {
		t.Errorf("unique email after restart: %v, want CONFLICT", err)
	}
	// Every collection has the _id index FerretDB lacks, the plain one too.
	for _, table := range tablesWithoutIDIndex(t, filepath.Join(dir, "app.sqlite")) {
		t.Errorf("table %s has no _id index", table)
	}
}

// tablesWithoutIDIndex lists FerretDB tables lacking ensureIDIndex's index.
func tablesWithoutIDIndex(t *testing.T, file string) []string {
	t.Helper()
	s, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.Query(`SELECT table_name FROM _ferretdb_collections WHERE table_name NOT IN
		(SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND name LIKE '%_codecrafter_id')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var missing []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		missing = append(missing, n)
	}
	return missing
}

func rawClient(t *testing.T, uri string) *driver.Client {
	t.Helper()
	c, err := driver.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Two clients with their own connection pools, as the API and a worker
// process would have: their guarded writes must still exclude each other.
func TestEmbeddedWritesAtomicAcrossClients(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := mongotest.Start(t)
	api := open(t, e.URI(), "shared")
	defer api.Close(ctx)
	worker := open(t, e.URI(), "shared")
	defer worker.Close(ctx)

	now := time.Now().UTC()
	for round := range 5 {
		tok := codecrafter.RefreshToken{Hash: codecrafter.NewID(), FamilyID: "f", UserID: "u", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := api.CreateRefreshToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		fresh := make(chan bool, 20)
		for i := range 20 {
			store := api
			if i%2 == 1 {
				store = worker
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, reused, err := store.ConsumeRefreshToken(ctx, tok.Hash, now)
				if err != nil {
					t.Error(err)
				}
				fresh <- !reused
			}()
		}
		wg.Wait()
		close(fresh)
		n := 0
		for f := range fresh {
			if f {
				n++
			}
		}
		if n != 1 {
			t.Errorf("round %d: %d consumers saw the token unused, want 1", round, n)
		}
	}
}

func TestEmbeddedCloseDropsClients(t *testing.T) {
	t.Parallel()
	e := start(t, t.TempDir())
	db := open(t, e.URI(), "app")
	defer db.Close(context.Background())

	begin := time.Now()
	e.Close() // with db still connected
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("Close took %v with a client connected, want well under FerretDB's 3 s grace", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := db.User(ctx, "u1")
	if code := codecrafter.ErrorCode(err); code != codecrafter.EUNAVAILABLE {
		t.Errorf("after Close: %v, code %q, want UNAVAILABLE", err, code)
	}
}

func TestEmbeddedListenAddr(t *testing.T) {
	t.Parallel()
	e, err := ferret.Start(context.Background(), t.TempDir(), slog.New(slog.DiscardHandler), ferret.WithListenAddr("localhost:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	db := open(t, e.URI(), "app")
	defer db.Close(context.Background())
	if err := db.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := ferret.Start(context.Background(), t.TempDir(), slog.New(slog.DiscardHandler), ferret.WithListenAddr("256.0.0.1:1")); err == nil {
		t.Error("StartEmbedded on a bad address: no error")
	}
}

// A guard the proxy does not check itself goes to FerretDB as it is.
func TestEmbeddedUnknownGuardPassesThrough(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := mongotest.Start(t)
	c := rawClient(t, e.URI())
	defer c.Disconnect(ctx)
	coll := c.Database("app").Collection("things")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 5}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		guard bson.D
		match bool
	}{
		{bson.D{{Key: "n", Value: bson.D{{Key: "$gt", Value: 4}}}}, true},
		{bson.D{{Key: "n", Value: bson.D{{Key: "$gt", Value: 5}}}}, false},
		{bson.D{{Key: "n", Value: 5}}, true},
		{bson.D{{Key: "n", Value: 5.0}}, true},
		{bson.D{{Key: "n", Value: "5"}}, false},
		{bson.D{{Key: "m", Value: bson.D{{Key: "$exists", Value: false}}}}, true},
		{bson.D{{Key: "n", Value: bson.D{{Key: "$in", Value: bson.A{1, 5}}}}}, true},
		{bson.D{{Key: "n", Value: bson.D{{Key: "$ne", Value: 5}}}}, false},
	}
	for _, tt := range tests {
		filter := append(bson.D{{Key: "_id", Value: "a"}}, tt.guard...)
		err := coll.FindOneAndUpdate(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "seen", Value: true}}}}).Err()
		if got := err == nil; got != tt.match {
			t.Errorf("guard %v: matched %v (%v), want %v", tt.guard, got, err, tt.match)
		}
	}
}
