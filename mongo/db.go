// Package mongo stores users, sessions, refresh tokens and executions in
// MongoDB, or in the embedded FerretDB server (package ferret) by default.
//
// It sticks to what FerretDB v1 supports: single-document updates whose
// filter is the guard (no transactions, TTL indexes, $expr or positional
// updates), and explicit expiry fields cleaned up as it goes. Guarded
// writes are findAndModify commands with an {_id, guards...} query: the
// embedded server's proxy makes those atomic and spares FerretDB a
// collection scan for them (see package ferret).
package mongo

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/codecrafter/codecrafter"
)

// DB is a database of the store.
type DB struct {
	client *mongo.Client
	logger *slog.Logger

	users, sessions, executions *mongo.Collection
	refreshTokens, families     *mongo.Collection

	// Lookups and indexes read by _id (see lookup.go, memberships.go,
	// execindex.go), and the record of their backfill (migrate.go).
	emails, invites              lookup
	memberships                  *mongo.Collection
	execLists, execPages, active *mongo.Collection
	meta                         *mongo.Collection
	chatPages                    *mongo.Collection // see messages.go
	memberPages                  *mongo.Collection // see memberevents.go
	// chatHints remembers each session's last chat page, so that an
	// append usually takes one update; a stale hint costs a few reads.
	chatHints sync.Map // session id -> int

	editPages *mongo.Collection // see edits.go
	// editHints remembers each session's last edit page (a lower bound).
	editHints sync.Map // session id -> int

	// beforeSessionWrite, when set by a test, runs between the writes
	// that come before a session write and the write itself.
	beforeSessionWrite func(sessionID string)
}

var (
	_ codecrafter.UserStore         = (*DB)(nil)
	_ codecrafter.SessionStore      = (*DB)(nil)
	_ codecrafter.RefreshTokenStore = (*DB)(nil)
	_ codecrafter.ExecutionStore    = (*DB)(nil)
)

// Open connects to the server at uri, checks it answers and creates the
// indexes of database.
func Open(ctx context.Context, uri, database string, logger *slog.Logger) (*DB, error) {
	opts := options.Client().
		SetAppName("codecrafter").
		SetServerSelectionTimeout(10 * time.Second).
		ApplyURI(uri) // settings in the URI win
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, dbErr(err, "")
	}
	d := client.Database(database)
	db := &DB{
		client:        client,
		logger:        logger,
		users:         d.Collection("users"),
		sessions:      d.Collection("sessions"),
		executions:    d.Collection("executions"),
		refreshTokens: d.Collection("refreshTokens"),
		families:      d.Collection("revokedRefreshFamilies"),
		emails:        lookup{coll: d.Collection("userEmails"), field: "userId"},
		invites:       lookup{coll: d.Collection("inviteCodes"), field: "sessionId"},
		memberships:   d.Collection("userSessions"),
		execLists:     d.Collection("executionLists"),
		execPages:     d.Collection("executionPages"),
		active:        d.Collection("activeExecutions"),
		meta:          d.Collection("storeMeta"),
		chatPages:     d.Collection("chatPages"),
		memberPages:   d.Collection("memberPages"),
		editPages:     d.Collection("editPages"),
	}
	if err := db.Ping(ctx); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	for _, step := range []func(context.Context) error{db.createCollections, db.createIndexes, db.migrate} {
		if err := step(ctx); err != nil {
			_ = client.Disconnect(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	return db, nil
}

// createCollections creates the collections that have no index but _id
// up front: the embedded server's proxy then gives their tables the _id
// index FerretDB lacks (see ensureIDIndex).
func (db *DB) createCollections(ctx context.Context) error {
	d := db.users.Database()
	have, err := d.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return dbErr(err, "")
	}
	for _, c := range []*mongo.Collection{db.emails.coll, db.invites.coll, db.memberships, db.execLists, db.execPages, db.active, db.meta, db.chatPages, db.memberPages, db.editPages} {
		if slices.Contains(have, c.Name()) {
			continue
		}
		err := d.CreateCollection(ctx, c.Name())
		var ce mongo.CommandError
		if err != nil && !(errors.As(err, &ce) && ce.Code == codeNamespaceExists) { // another process
			return dbErr(err, "")
		}
	}
	return nil
}

// codeNamespaceExists is the server's error code for creating a
// collection that exists.
const codeNamespaceExists = 48

func (db *DB) createIndexes(ctx context.Context) error {
	asc := func(keys ...string) bson.D {
		d := bson.D{}
		for _, k := range keys {
			d = append(d, bson.E{Key: k, Value: 1})
		}
		return d
	}
	// A fresh builder each: the driver names the index in it.
	unique := func() *options.IndexOptionsBuilder { return options.Index().SetUnique(true) }
	indexes := map[*mongo.Collection][]mongo.IndexModel{
		db.users: {{Keys: asc("email"), Options: unique()}},
		db.sessions: {
			{Keys: asc("inviteCode"), Options: unique()},
			{Keys: asc("participants.userId")},
			{Keys: bson.D{{Key: "createdAt", Value: -1}}},
		},
		db.executions: {
			{Keys: bson.D{{Key: "sessionId", Value: 1}, {Key: "createdAt", Value: -1}}},
			{Keys: asc("status", "startedAt")},
		},
		db.refreshTokens: {{Keys: asc("familyId")}, {Keys: asc("expiresAt")}},
		db.families:      {{Keys: asc("expiresAt")}},
	}
	for c, models := range indexes {
		// One at a time: FerretDB v1.24 panics on a createIndexes naming
		// two indexes that exist already.
		for _, m := range models {
			if _, err := c.Indexes().CreateOne(ctx, m); err != nil {
				return dbErr(err, "")
			}
		}
	}
	return nil
}

// Close disconnects from the server.
func (db *DB) Close(ctx context.Context) error {
	return dbErr(db.client.Disconnect(ctx), "")
}

// Ping checks the server answers.
func (db *DB) Ping(ctx context.Context) error {
	return dbErr(db.client.Ping(ctx, nil), "")
}

// dbErr translates a driver error into a *codecrafter.Error; what names
// the thing looked for or written, for NOT_FOUND and CONFLICT messages.
func dbErr(err error, what string) error {
	var e *codecrafter.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return err
	case errors.Is(err, mongo.ErrNoDocuments):
		return codecrafter.Wrap(err, codecrafter.ENOTFOUND, what+" not found")
	case isDuplicate(err):
		return codecrafter.Wrap(err, codecrafter.ECONFLICT, what+" already exists")
	// Only the caller cancels; the database may be fine, and nobody is
	// waiting for the answer.
	case errors.Is(err, context.Canceled):
		return codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "the request was cancelled")
	// No server to talk to, whether the driver's selection timeout (a
	// deadline of its own) or the caller's ran out first.
	case errors.As(err, new(topology.ServerSelectionError)):
		return codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "the database is unavailable; try again")
	// The caller's deadline passed mid-operation.
	case errors.Is(err, context.DeadlineExceeded):
		return codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "the request timed out; try again")
	case unavailable(err):
		return codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "the database is unavailable; try again")
	default:
		return codecrafter.Wrap(err, codecrafter.EINTERNAL, "database error")
	}
}

// isDuplicate reports a unique index violation. FerretDB reports one
// caused by an update as an internal error with SQLite's message.
func isDuplicate(err error) bool {
	var ce mongo.CommandError
	return mongo.IsDuplicateKeyError(err) ||
		errors.As(err, &ce) && strings.Contains(ce.Message, "UNIQUE constraint failed")
}

func unavailable(err error) bool {
	return mongo.IsNetworkError(err) || mongo.IsTimeout(err) ||
		errors.Is(err, mongo.ErrClientDisconnected) || errors.Is(err, topology.ErrTopologyClosed)
}

// maxTries bounds read-then-conditional-write loops. A try fails only when
// another write to the same document got in between, so n writers racing
// all land within n tries.
const maxTries = 30

// backoff waits a little, more after each lost race, so racing writers
// spread out.
func backoff(ctx context.Context, try int) error {
	t := time.NewTimer(rand.N(time.Duration(try+1) * time.Millisecond))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return dbErr(ctx.Err(), "")
	case <-t.C:
		return nil
	}
}

// after returns the document as it is after a findAndModify.
func returnAfter() *options.FindOneAndUpdateOptionsBuilder {
	return options.FindOneAndUpdate().SetReturnDocument(options.After)
}
