package mongo

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/codecrafter/codecrafter"
)

// Two small indexes of the executions, read by _id (see lookup.go for why).
//
// A session's list: executionLists {_id: sessionId, n} counts its runs,
// and executionPages {_id: "<sessionId>/<page>", entries: [{id, at}]}
// holds run k (from 1) in page (k-1)/pageSize, at being its createdAt.
// Pages, not one array: FerretDB rewrites a whole document on every
// update. CreateExecution takes a number and adds the entry before it
// inserts the execution, so a crash leaves an entry without a run (skipped
// by readers), never a run without an entry. ListExecutions reads pages
// from the last until it has enough entries, plus one more page, and
// sorts them by createdAt: exact unless a run lands more than pageSize
// runs of its session away from its createdAt order.
//
// The active set: activeExecutions {_id, addedAt, userId, unsent} has an
// entry for every QUEUED or RUNNING execution. It is inserted before the
// execution; unsent is cleared after MarkSent's write (so the dispatcher
// reads only the outbox, not every pending run); it is deleted after the
// write that ends the run. PendingExecutions, StuckExecutions and
// UnsentExecutions read the set and fetch each execution to check it, and
// delete entries whose execution is final (a crash after the final write)
// or has been missing for orphanAge (a crash before the insert): the
// reaper's StuckExecutions reads the whole set, so such leftovers last one
// reaper round. CountActive counts the user's entries without fetching
// them: a leftover counts against its user until then. (Entries written
// before may hold claimed, set before a claim's write: no longer read.)

const (
	pageSize  = 32
	orphanAge = time.Hour
)

type listEntry struct {
	ID string    `bson:"id"`
	At time.Time `bson:"at"`
}

type activeDoc struct {
	ID      string    `bson:"_id"`
	AddedAt time.Time `bson:"addedAt"`           // the store's clock, for orphanAge
	Claimed bool      `bson:"claimed,omitempty"` // no longer set nor read; see markClaimed
	UserID  string    `bson:"userId,omitempty"`  // for CountActive; absent on older entries
	Unsent  bool      `bson:"unsent,omitempty"`  // for UnsentExecutions
}

// pageID names a page; the session id is everything before the last "/".
func pageID(sessionID string, page int) string { return sessionID + "/" + strconv.Itoa(page) }

// indexExecution adds e to the active set and to its session's list.
func (db *DB) indexExecution(ctx context.Context, e *codecrafter.Execution) error {
	if !e.Status.Final() {
		_, err := db.active.InsertOne(ctx, activeDoc{ID: e.ID, AddedAt: time.Now(), UserID: e.UserID, Unsent: e.Unsent})
		if err != nil && !isDuplicate(err) {
			return dbErr(err, "execution")
		}
	}
	if e.SessionID == "" { // a private run: no list shows it
		return nil
	}
	var head struct {
		N int `bson:"n"`
	}
	var err error
	for range 3 { // see upsertByID
		err = db.execLists.FindOneAndUpdate(ctx, bson.D{byID(e.SessionID)},
			bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}},
			options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After),
		).Decode(&head)
		if !isDuplicate(err) {
			break
		}
	}
	if err != nil {
		return dbErr(err, "execution")
	}
	return upsertByID(ctx, db.execPages, pageID(e.SessionID, (head.N-1)/pageSize),
		bson.D{{Key: "$push", Value: bson.D{{Key: "entries", Value: listEntry{ID: e.ID, At: e.CreatedAt}}}}})
}

// ListExecutions returns a session's executions newest first, without
// output; limit <= 0 means all.
func (db *DB) ListExecutions(ctx context.Context, sessionID string, limit int) ([]*codecrafter.Execution, error) {
	var head struct {
		N int `bson:"n"`
	}
	if err := db.execLists.FindOne(ctx, bson.D{byID(sessionID)}).Decode(&head); err != nil {
		if codecrafter.IsCode(dbErr(err, ""), codecrafter.ENOTFOUND) {
			return nil, nil
		}
		return nil, dbErr(err, "execution")
	}
	page := (head.N - 1) / pageSize
	seen := map[string]bool{}
	var pool []listEntry // entries read, not fetched yet
	readPage := func() error {
		var p struct {
			Entries []listEntry `bson:"entries"`
		}
		err := db.execPages.FindOne(ctx, bson.D{byID(pageID(sessionID, page))}).Decode(&p)
		page--
		if err != nil && !codecrafter.IsCode(dbErr(err, ""), codecrafter.ENOTFOUND) {
			return dbErr(err, "execution")
		}
		for _, e := range p.Entries {
			if !seen[e.ID] {
				seen[e.ID] = true
				pool = append(pool, e)
			}
		}
		return nil
	}

	var out []*codecrafter.Execution
	for {
		want := limit - len(out)
		for page >= 0 && (limit <= 0 || len(pool) < want) {
			if err := readPage(); err != nil {
				return nil, err
			}
		}
		if page >= 0 { // for runs created out of order
			if err := readPage(); err != nil {
				return nil, err
			}
		}
		if len(pool) == 0 {
			return out, nil
		}
		slices.SortFunc(pool, func(a, b listEntry) int {
			if c := b.At.Compare(a.At); c != 0 {
				return c
			}
			return strings.Compare(b.ID, a.ID)
		})
		batch := pool
		if limit > 0 && len(batch) > want {
			batch = batch[:want]
		}
		ids := make([]string, len(batch))
		for i, e := range batch {
			ids[i] = e.ID
		}
		docs, err := fetchByIDs[executionDoc](ctx, db.executions, ids, withoutOutput)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			if d != nil { // nil: a crash before the insert
				out = append(out, d.execution())
			}
		}
		pool = pool[len(batch):]
		if limit > 0 && len(out) >= limit {
			return out, nil
		}
	}
}

// PendingExecutions returns QUEUED and RUNNING executions, oldest first.
func (db *DB) PendingExecutions(ctx context.Context) ([]*codecrafter.Execution, error) {
	out, err := db.activeExecutions(ctx, bson.D{})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *codecrafter.Execution) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// StuckExecutions returns RUNNING executions started before the time,
// oldest first, without output. It reads the whole active set (the
// reaper's round, which drops the crash leftovers there).
func (db *DB) StuckExecutions(ctx context.Context, startedBefore time.Time) ([]*codecrafter.Execution, error) {
	active, err := db.activeExecutions(ctx, bson.D{})
	if err != nil {
		return nil, err
	}
	var out []*codecrafter.Execution
	for _, e := range active {
		if e.Status == codecrafter.StatusRunning && e.StartedAt != nil && e.StartedAt.Before(startedBefore) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *codecrafter.Execution) int {
		if c := a.StartedAt.Compare(*b.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// UnsentExecutions returns the QUEUED, unsent executions (those flagged
// unsent in the active set), oldest first; it clears the flag of entries
// whose execution is sent or claimed (a crash before MarkSent's second
// write).
func (db *DB) UnsentExecutions(ctx context.Context) ([]*codecrafter.Execution, error) {
	flagged, err := db.activeExecutions(ctx, bson.D{{Key: "unsent", Value: true}})
	if err != nil {
		return nil, err
	}
	var out []*codecrafter.Execution
	for _, e := range flagged {
		if e.Status == codecrafter.StatusQueued && e.Unsent {
			out = append(out, e)
		} else {
			db.clearUnsent(ctx, e.ID)
		}
	}
	slices.SortFunc(out, func(a, b *codecrafter.Execution) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// clearUnsent drops the unsent flag of id's active entry; a failure
// leaves a flag UnsentExecutions clears later.
func (db *DB) clearUnsent(ctx context.Context, id string) {
	_, err := db.active.UpdateOne(ctx, bson.D{byID(id)}, bson.D{{Key: "$unset", Value: bson.D{{Key: "unsent", Value: ""}}}})
	if err != nil {
		db.logger.WarnContext(ctx, "mongo: clearing the unsent flag of an active execution", "execution", id, "err", err)
	}
}

// CountActive counts the user's entries in the active set: their QUEUED
// and RUNNING executions, and any crash leftover the reaper has not
// dropped yet (see above). It runs on every execute: a count, without
// fetching the executions, keeps it to one read.
func (db *DB) CountActive(ctx context.Context, userID string) (int, error) {
	n, err := db.active.CountDocuments(ctx, bson.D{{Key: "userId", Value: userID}})
	return int(n), dbErr(err, "execution")
}

// activeExecutions fetches the executions of the active set's entries
// that match filter, without output, and drops entries left by crashes.
func (db *DB) activeExecutions(ctx context.Context, filter bson.D) ([]*codecrafter.Execution, error) {
	cur, err := db.active.Find(ctx, filter)
	if err != nil {
		return nil, dbErr(err, "execution")
	}
	var entries []activeDoc
	if err := cur.All(ctx, &entries); err != nil {
		return nil, dbErr(err, "execution")
	}
	ids := make([]string, len(entries))
	for i, a := range entries {
		ids[i] = a.ID
	}
	docs, err := fetchByIDs[executionDoc](ctx, db.executions, ids, withoutOutput)
	if err != nil {
		return nil, err
	}
	var out []*codecrafter.Execution
	for i, d := range docs {
		switch {
		case d == nil && time.Since(entries[i].AddedAt) > orphanAge,
			d != nil && codecrafter.ExecutionStatus(d.Status).Final():
			db.deactivate(ctx, ids[i])
		case d != nil:
			out = append(out, d.execution())
		}
	}
	return out, nil
}

// deactivate drops id from the active set once its execution is final;
// a failure leaves an entry the readers drop later.
func (db *DB) deactivate(ctx context.Context, id string) {
	if _, err := db.active.DeleteOne(ctx, bson.D{byID(id)}); err != nil {
		db.logger.WarnContext(ctx, "mongo: dropping an execution from the active set", "execution", id, "err", err)
	}
}

// markClaimed flags id's active entry, as claims did before: the flag is
// no longer read (StuckExecutions reads every entry), and claims no longer
// pay a write for it. Kept for the tests of entries older servers left.
func (db *DB) markClaimed(ctx context.Context, id string) error {
	_, err := db.active.UpdateOne(ctx, bson.D{byID(id)}, bson.D{{Key: "$set", Value: bson.D{{Key: "claimed", Value: true}}}})
	return dbErr(err, "execution")
}
