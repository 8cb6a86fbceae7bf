package mongo

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/codecrafter/codecrafter"
)

var _ codecrafter.MemberEventStore = (*DB)(nil)

// Membership events live in pages like chat messages (see messages.go):
// memberPages {_id: "<sessionId>/<page>", count, events: [...]} holds
// events page*chatPageSize+1 .. page*chatPageSize+count, appended by one
// guarded update of the last page, so Seq is the position: no gaps, no
// reordering, without a lock. Sessions have few of them: no hint cache.

type memberPage struct {
	Count  int           `bson:"count"`
	Events []memberEntry `bson:"events"`
}

type memberEntry struct {
	Kind   codecrafter.MemberEventKind `bson:"kind"`
	UserID string                      `bson:"userId"`
	Role   codecrafter.Role            `bson:"role,omitempty"`
	At     time.Time                   `bson:"at"`
}

// AppendMemberEvent stores e as its session's next event.
func (db *DB) AppendMemberEvent(ctx context.Context, e *codecrafter.MemberEvent) error {
	entry := memberEntry{Kind: e.Kind, UserID: e.UserID, Role: e.Role, At: e.At}
	for page := 0; ; {
		id := chatPageID(e.SessionID, page)
		var after memberPage
		err := db.memberPages.FindOneAndUpdate(ctx,
			bson.D{byID(id), {Key: "count", Value: bson.D{{Key: "$in", Value: notFull}}}},
			bson.D{{Key: "$push", Value: bson.D{{Key: "events", Value: entry}}}, {Key: "$inc", Value: bson.D{{Key: "count", Value: 1}}}},
			options.FindOneAndUpdate().SetReturnDocument(options.After),
		).Decode(&after)
		switch {
		case err == nil:
			e.Seq = page*chatPageSize + after.Count
			return nil
		case err != mongo.ErrNoDocuments:
			return dbErr(err, "member event")
		}
		// Full, or not there yet.
		there, err := exists(ctx, db.memberPages, id, "member event")
		if err != nil {
			return err
		}
		if there {
			page++
			continue
		}
		_, err = db.memberPages.InsertOne(ctx, bson.D{byID(id), {Key: "count", Value: 1}, {Key: "events", Value: bson.A{entry}}})
		if err == nil {
			e.Seq = page*chatPageSize + 1
			return nil
		}
		if !isDuplicate(err) {
			return dbErr(err, "member event")
		}
		// Another writer created it: append to it.
	}
}

// MemberEvents returns up to limit events with Seq above after, oldest first.
func (db *DB) MemberEvents(ctx context.Context, sessionID string, after, limit int) ([]*codecrafter.MemberEvent, error) {
	var out []*codecrafter.MemberEvent
	for page := after / chatPageSize; len(out) < limit; page++ {
		var p memberPage
		err := db.memberPages.FindOne(ctx, bson.D{byID(chatPageID(sessionID, page))}).Decode(&p)
		if err == mongo.ErrNoDocuments {
			break
		}
		if err != nil {
			return nil, dbErr(err, "member event")
		}
		for i, m := range p.Events {
			seq := page*chatPageSize + i + 1
			if seq <= after || len(out) == limit {
				continue
			}
			out = append(out, &codecrafter.MemberEvent{SessionID: sessionID, Seq: seq, Kind: m.Kind, UserID: m.UserID, Role: m.Role, At: m.At.UTC()})
		}
		if len(p.Events) < chatPageSize {
			break
		}
	}
	return out, nil
}
