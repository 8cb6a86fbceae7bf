package mongo

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/codecrafter/codecrafter"
)

type sessionDoc struct {
	ID           string           `bson:"_id"`
	Title        string           `bson:"title"`
	Language     string           `bson:"language"`
	Code         string           `bson:"code"`
	Revision     int              `bson:"revision"`
	OwnerID      string           `bson:"ownerId"`
	InviteCode   string           `bson:"inviteCode"`
	Participants []participantDoc `bson:"participants"`
	CreatedAt    time.Time        `bson:"createdAt"`
	UpdatedAt    time.Time        `bson:"updatedAt"`
	Version      int64            `bson:"version"`
}

type participantDoc struct {
	UserID   string    `bson:"userId"`
	Role     string    `bson:"role"`
	JoinedAt time.Time `bson:"joinedAt"`
}

func toSessionDoc(s *codecrafter.Session) *sessionDoc {
	d := &sessionDoc{
		ID: s.ID, Title: s.Title, Language: s.Language, Code: s.Code, Revision: s.Revision,
		OwnerID: s.OwnerID, InviteCode: s.InviteCode, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
		Version:      s.Version,
		Participants: make([]participantDoc, len(s.Participants)),
	}
	for i, p := range s.Participants {
		d.Participants[i] = participantDoc{UserID: p.UserID, Role: string(p.Role), JoinedAt: p.JoinedAt}
	}
	return d
}

func (d *sessionDoc) session() *codecrafter.Session {
	s := &codecrafter.Session{
		ID: d.ID, Title: d.Title, Language: d.Language, Code: d.Code, Revision: d.Revision,
		OwnerID: d.OwnerID, InviteCode: d.InviteCode, CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC(),
		Version: d.Version,
	}
	for _, p := range d.Participants {
		s.Participants = append(s.Participants, codecrafter.Participant{UserID: p.UserID, Role: codecrafter.Role(p.Role), JoinedAt: p.JoinedAt.UTC()})
	}
	return s
}

// CreateSession stores s with Version 1 (and sets s.Version); CONFLICT
// when its invite code (or id) is taken.
func (db *DB) CreateSession(ctx context.Context, s *codecrafter.Session) error {
	d := toSessionDoc(s)
	d.Version = 1
	if _, err := db.sessions.InsertOne(ctx, d); err != nil {
		if isDuplicate(err) {
			return codecrafter.Wrap(err, codecrafter.ECONFLICT, "a session with this invite code already exists")
		}
		return dbErr(err, "session")
	}
	s.Version = 1
	return nil
}

// Session returns the session with id; NOT_FOUND when there is none.
func (db *DB) Session(ctx context.Context, id string) (*codecrafter.Session, error) {
	return db.findSession(ctx, bson.D{{Key: "_id", Value: id}})
}

// SessionByInviteCode returns the session with that invite code.
func (db *DB) SessionByInviteCode(ctx context.Context, code string) (*codecrafter.Session, error) {
	return db.findSession(ctx, bson.D{{Key: "inviteCode", Value: code}})
}

func (db *DB) findSession(ctx context.Context, filter bson.D) (*codecrafter.Session, error) {
	var d sessionDoc
	if err := db.sessions.FindOne(ctx, filter).Decode(&d); err != nil {
		return nil, dbErr(err, "session")
	}
	return d.session(), nil
}

// SessionsForUser returns the sessions userID takes part in, the most
// recently created first.
func (db *DB) SessionsForUser(ctx context.Context, userID string) ([]*codecrafter.Session, error) {
	cur, err := db.sessions.Find(ctx,
		bson.D{{Key: "participants.userId", Value: userID}},
		options.Find().SetSort(bson.D{{Key: "createdAt", Value: -1}, {Key: "_id", Value: -1}}))
	if err != nil {
		return nil, dbErr(err, "session")
	}
	var docs []sessionDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr(err, "session")
	}
	out := make([]*codecrafter.Session, len(docs))
	for i := range docs {
		out[i] = docs[i].session()
	}
	return out, nil
}

// UpdateSession reads the session, applies fn to a copy and stores it if
// the stored Version is still the one read; otherwise it tries again.
func (db *DB) UpdateSession(ctx context.Context, id string, fn func(*codecrafter.Session) error) (*codecrafter.Session, error) {
	for try := 0; try < maxTries; try++ {
		cur, err := db.Session(ctx, id)
		if err != nil {
			return nil, err
		}
		s := *cur
		s.Participants = slices.Clone(cur.Participants)
		if err := fn(&s); err != nil {
			return nil, err
		}
		s.ID, s.Version = id, cur.Version+1
		err = db.sessions.FindOneAndReplace(ctx,
			bson.D{{Key: "_id", Value: id}, {Key: "version", Value: cur.Version}},
			toSessionDoc(&s),
		).Err()
		switch {
		case err == nil:
			return &s, nil
		case isDuplicate(err):
			return nil, codecrafter.Wrap(err, codecrafter.ECONFLICT, "a session with this invite code already exists")
		case !errors.Is(err, mongo.ErrNoDocuments):
			return nil, dbErr(err, "session")
		}
		if err := backoff(ctx, try); err != nil {
			return nil, err
		}
	}
	return nil, codecrafter.Errorf(codecrafter.ECONFLICT, "the session is changing too fast; try again")
}

// DeleteSession removes the session; NOT_FOUND when there is none.
func (db *DB) DeleteSession(ctx context.Context, id string) error {
	res, err := db.sessions.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return dbErr(err, "session")
	}
	if res.DeletedCount == 0 {
		return codecrafter.Errorf(codecrafter.ENOTFOUND, "session not found")
	}
	return nil
}
