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
// are swept now and then (there are no TTL indexes in FerretDB).

type refreshDoc struct {
	Hash      string     `bson:"_id"`
	FamilyID  string     `bson:"familyId"`
	UserID    string     `bson:"userId"`
	CreatedAt time.Time  `bson:"createdAt"`
	ExpiresAt time.Time  `bson:"expiresAt"`
	UsedAt    *time.Time `bson:"usedAt,omitempty"`
}

// cleanupEvery is how often CreateRefreshToken sweeps expired records.
const cleanupEvery = time.Hour

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
	db.maybeCleanup(ctx)
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
	return &codecrafter.RefreshToken{
		Hash: d.Hash, FamilyID: d.FamilyID, UserID: d.UserID,
		CreatedAt: d.CreatedAt.UTC(), ExpiresAt: d.ExpiresAt.UTC(),
	}, reused, nil
}

// RevokeRefreshFamily records the family as revoked until until (or
// later, when revoked before with a later time).
func (db *DB) RevokeRefreshFamily(ctx context.Context, familyID string, until time.Time) error {
	_, err := db.families.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: familyID}},
		bson.D{{Key: "$max", Value: bson.D{{Key: "expiresAt", Value: until}}}},
		options.UpdateOne().SetUpsert(true))
	return dbErr(err, "refresh token family")
}

// maybeCleanup deletes expired tokens and family records, at most once
// per cleanupEvery; a failure is only logged.
func (db *DB) maybeCleanup(ctx context.Context) {
	now := time.Now()
	last := db.lastCleanup.Load()
	if now.UnixNano()-last < int64(cleanupEvery) || !db.lastCleanup.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	expired := bson.D{{Key: "expiresAt", Value: bson.D{{Key: "$lt", Value: now}}}}
	for _, c := range []*mongo.Collection{db.refreshTokens, db.families} {
		if res, err := c.DeleteMany(ctx, expired); err != nil {
			db.logger.WarnContext(ctx, "mongo: sweeping expired records", "collection", c.Name(), "err", err)
		} else if res.DeletedCount > 0 {
			db.logger.DebugContext(ctx, "mongo: swept expired records", "collection", c.Name(), "n", res.DeletedCount)
		}
	}
}
