package mongo

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/sync/errgroup"

	"github.com/codecrafter/codecrafter"
)

// The embedded FerretDB answers only a filter that is exactly {_id: x}
// without decoding the whole collection, so every hot read here is a few
// _id lookups. Secondary keys get lookup collections, kept without
// transactions, in an order that survives a crash at any point; a reader
// checks what a lookup says against the document it names and never trusts
// it alone. The main collections, with their unique indexes, stay the
// truth (and serve MongoDB as before).

// A lookup maps a unique key of a main collection (a user's email, a
// session's invite code) to the _id of the document holding it:
// {_id: key, <field>: id}.
//
// Invariant: while a document holds a key, the key's lookup exists. It
// names the holder, except after a crash between a takeover's write and
// its set. And a lookup may name a document that does not hold the key: a
// writer that crashed or failed after claiming it, a release that never
// came. So a reader checks the document the lookup names and, when that
// does not hold the key, falls back to the indexed query on the main
// collection (a scan on FerretDB, only for such leftovers) and repoints
// the lookup. A lookup with no holder blocks nobody: claim takes it over.
type lookup struct {
	coll  *mongo.Collection
	field string // userId, sessionId
}

// errTaken is claim's answer for a key another document holds.
var errTaken = errors.New("mongo: the key is taken")

// ref returns the id the lookup of key names; found is false when there
// is no lookup.
func (l lookup) ref(ctx context.Context, key string) (id string, found bool, err error) {
	raw, err := l.coll.FindOne(ctx, bson.D{byID(key)}).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return "", false, nil
	}
	if err != nil {
		return "", false, dbErr(err, "lookup")
	}
	id, _ = raw.Lookup(l.field).StringValueOK()
	return id, true, nil
}

// claim makes sure key has a lookup before the caller writes a document
// holding it, so the invariant holds whenever that write lands. It returns
// errTaken when the lookup names another document that holds key
// (holds(ref)); takeover is true when the lookup names a document that
// does not (a writer that crashed, or lost a race): the caller then writes
// its document, the main collection's unique index deciding any race, and
// on success points the lookup at it with set. It never removes a lookup:
// a writer that lost the race may have claimed it for the winner.
func (l lookup) claim(ctx context.Context, key, id string, holds func(ctx context.Context, ref string) (bool, error)) (takeover bool, err error) {
	for try := 0; try < maxTries; try++ {
		_, err := l.coll.InsertOne(ctx, bson.D{byID(key), {Key: l.field, Value: id}})
		if err == nil {
			return false, nil
		}
		if !isDuplicate(err) {
			return false, dbErr(err, "lookup")
		}
		ref, found, err := l.ref(ctx, key)
		switch {
		case err != nil:
			return false, err
		case !found: // released meanwhile: insert again
			continue
		case ref == id:
			return false, nil
		}
		held, err := holds(ctx, ref)
		if err != nil {
			return false, err
		}
		if held {
			return false, errTaken
		}
		return true, nil
	}
	return false, codecrafter.Errorf(codecrafter.ECONFLICT, "the key is changing too fast; try again")
}

// set points key at id, which holds it now.
func (l lookup) set(ctx context.Context, key, id string) error {
	return upsertByID(ctx, l.coll, key, bson.D{{Key: "$set", Value: bson.D{{Key: l.field, Value: id}}}})
}

// repoint points key at to if it still names from.
func (l lookup) repoint(ctx context.Context, key, from, to string) error {
	err := l.coll.FindOneAndUpdate(ctx,
		bson.D{byID(key), {Key: l.field, Value: from}},
		bson.D{{Key: "$set", Value: bson.D{{Key: l.field, Value: to}}}},
	).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil
	}
	return dbErr(err, "lookup")
}

// release removes key's lookup if it still names id, once id's document
// no longer holds key. (A findAndModify: the proxy spares FerretDB a scan
// for a guarded one, not for a guarded delete.) Only if another document
// took the key over in between, and crashed after its write but before
// its set, would this leave a holder without a lookup: for invite codes,
// 12 random bytes, that needs a collision.
func (l lookup) release(ctx context.Context, key, id string) error {
	err := l.coll.FindOneAndDelete(ctx, bson.D{byID(key), {Key: l.field, Value: id}}).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil
	}
	return dbErr(err, "lookup")
}

// upsertByID applies update to the document id, creating it if need be.
// MongoDB may refuse one of two racing upserts that both insert as a
// duplicate: the retry then updates.
func upsertByID(ctx context.Context, c *mongo.Collection, id string, update bson.D) error {
	var err error
	for range 3 {
		_, err = c.UpdateOne(ctx, bson.D{byID(id)}, update, options.UpdateOne().SetUpsert(true))
		if !isDuplicate(err) {
			break
		}
	}
	return dbErr(err, c.Name())
}

// fetchConcurrency bounds the _id lookups fetchByIDs runs at once.
const fetchConcurrency = 8

// fetchByIDs decodes the documents with these ids, one _id lookup each (a
// few at a time); out[i] is nil when ids[i] has none.
func fetchByIDs[T any](ctx context.Context, c *mongo.Collection, ids []string, projection bson.D) ([]*T, error) {
	out := make([]*T, len(ids))
	opts := options.FindOne()
	if projection != nil {
		opts.SetProjection(projection)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchConcurrency)
	for i, id := range ids {
		g.Go(func() error {
			var d T
			err := c.FindOne(ctx, bson.D{byID(id)}, opts).Decode(&d)
			if errors.Is(err, mongo.ErrNoDocuments) {
				return nil
			}
			if err != nil {
				return dbErr(err, c.Name())
			}
			out[i] = &d
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

func byID(id string) bson.E { return bson.E{Key: "_id", Value: id} }
