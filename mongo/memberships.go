package mongo

import (
	"context"
	"errors"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/codecrafter/codecrafter"
)

// A user's membership document lists the sessions they take part in,
// for SessionsForUser: {_id: userId, sessionIds: [...]}.
//
// Invariant: while a session lists a participant, the participant's
// membership lists the session. Extra entries are harmless:
// SessionsForUser fetches every listed session and keeps those that still
// list the user. So, without transactions:
//   - an entry is added before the session write that makes the user a
//     participant (CreateSession, a join in UpdateSession), and again
//     after it, in case a reader pruned it in between (when the session
//     did not list the user yet);
//   - an entry is removed only after the write that ends the membership
//     (a removal in UpdateSession, DeleteSession), or by a reader that
//     finds it stale, and always by prune, which then re-reads the
//     session and adds the entry back if the user has rejoined meanwhile.
//
// A crash anywhere leaves extra entries at worst. The one way to lose an
// entry needs two things in the same few milliseconds: a reader pruning
// an entry just added for a session not yet written, and the writer then
// crashing between its session write and its second add.

type membershipDoc struct {
	SessionIDs []string `bson:"sessionIds"`
}

// addMemberships lists sessionID in each user's membership.
func (db *DB) addMemberships(ctx context.Context, userIDs []string, sessionID string) error {
	for _, u := range userIDs {
		err := upsertByID(ctx, db.memberships, u, bson.D{{Key: "$addToSet", Value: bson.D{{Key: "sessionIds", Value: sessionID}}}})
		if err != nil {
			return err
		}
	}
	return nil
}

// prune removes sessionID from userID's membership, then puts it back if
// the session lists the user (again).
func (db *DB) prune(ctx context.Context, userID, sessionID string) error {
	_, err := db.memberships.UpdateOne(ctx, bson.D{byID(userID)},
		bson.D{{Key: "$pull", Value: bson.D{{Key: "sessionIds", Value: sessionID}}}})
	if err != nil {
		return dbErr(err, "membership")
	}
	s, err := db.Session(ctx, sessionID)
	switch {
	case codecrafter.IsCode(err, codecrafter.ENOTFOUND):
		return nil
	case err != nil:
		return err
	}
	if _, ok := s.Participant(userID); ok {
		return db.addMemberships(ctx, []string{userID}, sessionID)
	}
	return nil
}

// SessionsForUser returns the sessions userID takes part in, the most
// recently created first: the user's membership, then an _id lookup per
// session. Stale entries are skipped and pruned.
func (db *DB) SessionsForUser(ctx context.Context, userID string) ([]*codecrafter.Session, error) {
	var m membershipDoc
	err := db.memberships.FindOne(ctx, bson.D{byID(userID)}).Decode(&m)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, dbErr(err, "membership")
	}
	ids := unique(m.SessionIDs)
	docs, err := fetchByIDs[sessionDoc](ctx, db.sessions, ids, nil)
	if err != nil {
		return nil, err
	}
	var out []*codecrafter.Session
	for i, d := range docs {
		if d != nil && d.hasParticipant(userID) {
			out = append(out, d.session())
			continue
		}
		if err := db.prune(ctx, userID, ids[i]); err != nil {
			db.logger.WarnContext(ctx, "mongo: pruning a stale membership", "user", userID, "session", ids[i], "err", err)
		}
	}
	slices.SortFunc(out, func(a, b *codecrafter.Session) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out, nil
}
