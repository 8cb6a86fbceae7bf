package mongo

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/codecrafter/codecrafter"
)

// lookupsVersion is the version of the lookups and indexes (lookup.go,
// memberships.go, execindex.go) this code keeps; storeMeta's "lookups"
// document records the version a database has been filled for.
const lookupsVersion = 1

// migrate fills the lookups and indexes from the main collections once
// per database, for data written before they existed. Every step is
// idempotent, so a crash or two processes opening the database at once
// only redo some of it. Processes of an older version must be stopped
// first: their writes skip the lookups.
func (db *DB) migrate(ctx context.Context) error {
	var m struct {
		Version int `bson:"version"`
	}
	err := db.meta.FindOne(ctx, bson.D{byID("lookups")}).Decode(&m)
	if err == nil && m.Version >= lookupsVersion {
		return nil
	}
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return dbErr(err, "")
	}
	start := time.Now()
	for _, step := range []func(context.Context) error{db.migrateUsers, db.migrateSessions, db.migrateExecutions} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	if err := upsertByID(ctx, db.meta, "lookups", bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: lookupsVersion}}}}); err != nil {
		return err
	}
	db.logger.InfoContext(ctx, "mongo: lookups filled", "version", lookupsVersion, "took", time.Since(start))
	return nil
}

// each decodes every document of c (with projection) into a T and calls fn.
func each[T any](ctx context.Context, c *mongo.Collection, projection bson.D, fn func(*T) error) error {
	cur, err := c.Find(ctx, bson.D{}, options.Find().SetProjection(projection))
	if err != nil {
		return dbErr(err, "")
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		var d T
		if err := cur.Decode(&d); err != nil {
			return dbErr(err, "")
		}
		if err := fn(&d); err != nil {
			return err
		}
	}
	return dbErr(cur.Err(), "")
}

func (db *DB) migrateUsers(ctx context.Context) error {
	return each(ctx, db.users, bson.D{{Key: "email", Value: 1}}, func(d *userDoc) error {
		return db.emails.set(ctx, d.Email, d.ID) // the unique index makes d the holder
	})
}

func (db *DB) migrateSessions(ctx context.Context) error {
	return each(ctx, db.sessions, bson.D{{Key: "inviteCode", Value: 1}, {Key: "participants", Value: 1}}, func(d *sessionDoc) error {
		if err := db.invites.set(ctx, d.InviteCode, d.ID); err != nil {
			return err
		}
		return db.addMemberships(ctx, participantIDs(d.session().Participants), d.ID)
	})
}

func (db *DB) migrateExecutions(ctx context.Context) error {
	lists := map[string][]listEntry{}
	err := each(ctx, db.executions, bson.D{{Key: "sessionId", Value: 1}, {Key: "createdAt", Value: 1}, {Key: "status", Value: 1}}, func(d *executionDoc) error {
		if !codecrafter.ExecutionStatus(d.Status).Final() {
			err := upsertByID(ctx, db.active, d.ID, bson.D{{Key: "$setOnInsert", Value: bson.D{
				{Key: "addedAt", Value: time.Now()},
				{Key: "claimed", Value: d.Status == string(codecrafter.StatusRunning)},
			}}})
			if err != nil {
				return err
			}
		}
		if d.SessionID != "" {
			lists[d.SessionID] = append(lists[d.SessionID], listEntry{ID: d.ID, At: d.CreatedAt})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for session, entries := range lists {
		if err := db.migrateList(ctx, session, entries); err != nil {
			return err
		}
	}
	return nil
}

// migrateList writes a session's list unless it has one: its pages, then
// its count, each only if absent.
func (db *DB) migrateList(ctx context.Context, sessionID string, entries []listEntry) error {
	switch err := db.execLists.FindOne(ctx, bson.D{byID(sessionID)}).Err(); {
	case err == nil:
		return nil
	case !errors.Is(err, mongo.ErrNoDocuments):
		return dbErr(err, "")
	}
	slices.SortFunc(entries, func(a, b listEntry) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	insert := func(c *mongo.Collection, doc bson.D) error {
		if _, err := c.InsertOne(ctx, doc); err != nil && !isDuplicate(err) {
			return dbErr(err, "")
		}
		return nil
	}
	for page := 0; page*pageSize < len(entries); page++ {
		chunk := entries[page*pageSize : min((page+1)*pageSize, len(entries))]
		if err := insert(db.execPages, bson.D{byID(pageID(sessionID, page)), {Key: "entries", Value: chunk}}); err != nil {
			return err
		}
	}
	return insert(db.execLists, bson.D{byID(sessionID), {Key: "n", Value: len(entries)}})
}
