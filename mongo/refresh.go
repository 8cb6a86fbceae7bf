package mongo

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/codecrafter/codecrafter"
)

// A refresh token is a document keyed by its hash; usedAt is set by the
// first ConsumeRefreshToken. A revoked family is a document of the
// families collection that lasts until its expiresAt. Expired records
// are swept by StartRefreshSweeper (there are no TTL indexes in
// FerretDB), off the request path.

type refreshDoc struct {
	Hash      string     `bson:"_id"`
	FamilyID  string     `bson:"familyId"`
	UserID    string     `bson:"userId"`
	CreatedAt time.Time  `bson:"createdAt"`
	ExpiresAt time.Time  `bson:"expiresAt"`
	UsedAt    *time.Time `bson:"usedAt,omitempty"`
}

func errBadRefresh() error {
	return codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "the refresh token is invalid or expired: sign in again")
}

// CreateRefreshToken stores t unused.
func (db *DB) CreateRefreshToken(ctx context.Context, t codecrafter.RefreshToken) error {
	_, err := db.refreshTokens.InsertOne(ctx, refreshDoc{
		Hash: t.Hash, FamilyID: t.FamilyID, UserID: t.UserID, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt,
	})
	if err != nil {
		return dbErr(err, "refresh token")
	}
	return nil
}

// ConsumeRefreshToken marks the token used, atomically: the
// findAndModify guarded by "usedAt absent" succeeds once.
func (db *DB) ConsumeRefreshToken(ctx context.Context, hash string, now time.Time) (*codecrafter.RefreshToken, bool, error) {
	var d refreshDoc
	err := db.refreshTokens.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: hash}, {Key: "usedAt", Value: bson.D{{Key: "$exists", Value: false}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "usedAt", Value: now}}}},
	).Decode(&d)
	reused := false
	if errors.Is(err, mongo.ErrNoDocuments) { // used already, or unknown
		reused = true
		err = db.refreshTokens.FindOne(ctx, bson.D{{Key: "_id", Value: hash}}).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, false, errBadRefresh()
		}
	}
	if err != nil {
		return nil, false, dbErr(err, "refresh token")
	}
	if !now.Before(d.ExpiresAt) {
		return nil, false, errBadRefresh()
	}
	switch err := db.families.FindOne(ctx, bson.D{{Key: "_id", Value: d.FamilyID}}).Err(); {
	case err == nil: // revoked
		return nil, false, errBadRefresh()
	case !errors.Is(err, mongo.ErrNoDocuments):
		return nil, false, dbErr(err, "refresh token")
	}
	usedAt := now // the first use is this one
	if d.UsedAt != nil {
		usedAt = *d.UsedAt
	}
	return &codecrafter.RefreshToken{
		Hash: d.Hash, FamilyID: d.FamilyID, UserID: d.UserID,
		CreatedAt: d.CreatedAt.UTC(), ExpiresAt: d.ExpiresAt.UTC(), UsedAt: usedAt.UTC(),
	}, reused, nil
}

// RevokeRefreshFamily records the family as revoked until until (or
// later, when revoked before with a later time), and when.
func (db *DB) RevokeRefreshFamily(ctx context.Context, familyID string, until time.Time) error {
	_, err := db.families.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: familyID}},
		bson.D{{Key: "$max", Value: bson.D{{Key: "expiresAt", Value: until}, {Key: "revokedAt", Value: time.Now()}}}},
		options.UpdateOne().SetUpsert(true))
	return dbErr(err, "refresh token family")
}

// RevokedFamiliesSince returns the families revoked at or after since
// (kept as long as the family record: longer than RevokedHistory).
func (db *DB) RevokedFamiliesSince(ctx context.Context, since time.Time) ([]string, error) {
	cur, err := db.families.Find(ctx, bson.D{{Key: "revokedAt", Value: bson.D{{Key: "$gte", Value: since}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, dbErr(err, "refresh token family")
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr(err, "refresh token family")
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	return ids, nil
}

// sweepBatch is how many expired records one delete removes: the
// embedded store runs one write at a time, so a sweep is many short
// deletes that other writes slip between, not one long one.
const sweepBatch = 200

// StartRefreshSweeper deletes expired refresh tokens and revoked-family
// records now and then every interval, in a goroutine that stop ends
// (and waits for).
func (db *DB) StartRefreshSweeper(every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if _, err := db.SweepRefreshTokens(ctx, time.Now()); err != nil && ctx.Err() == nil {
				db.logger.WarnContext(ctx, "mongo: sweeping expired refresh tokens", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// SweepRefreshTokens deletes the refresh tokens and revoked-family
// records that expired before now, and returns how many it deleted.
func (db *DB) SweepRefreshTokens(ctx context.Context, now time.Time) (int64, error) {
	expired := bson.D{{Key: "expiresAt", Value: bson.D{{Key: "$lt", Value: now}}}}
	var total int64
	for _, c := range []*mongo.Collection{db.refreshTokens, db.families} {
		for {
			// Reads are not held by the embedded store's write lock; only
			// the delete of each batch is.
			cur, err := c.Find(ctx, expired, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetLimit(sweepBatch))
			if err != nil {
				return total, dbErr(err, c.Name())
			}
			var docs []struct {
				ID string `bson:"_id"`
			}
			if err := cur.All(ctx, &docs); err != nil {
				return total, dbErr(err, c.Name())
			}
			if len(docs) == 0 {
				break
			}
			ids := make([]string, len(docs))
			for i, d := range docs {
				ids[i] = d.ID
			}
			res, err := c.DeleteMany(ctx, append(bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}, expired...))
			if err != nil {
				return total, dbErr(err, c.Name())
			}
			total += res.DeletedCount
			if len(docs) < sweepBatch || res.DeletedCount == 0 {
				break
			}
		}
	}
	return total, nil
}
