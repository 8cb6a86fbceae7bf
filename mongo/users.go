package mongo

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/codecrafter/codecrafter"
)

type userDoc struct {
	ID           string    `bson:"_id"`
	Email        string    `bson:"email"`
	Name         string    `bson:"name"`
	PasswordHash string    `bson:"passwordHash"`
	CreatedAt    time.Time `bson:"createdAt"`
}

func (d *userDoc) user() *codecrafter.User {
	return &codecrafter.User{ID: d.ID, Email: d.Email, Name: d.Name, PasswordHash: d.PasswordHash, CreatedAt: d.CreatedAt.UTC()}
}

// CreateUser stores u; CONFLICT when the email (or id) is taken. The
// email's lookup comes first (see lookup); the unique index on users.email
// decides between racing sign-ups, whatever their lookups say.
func (db *DB) CreateUser(ctx context.Context, u *codecrafter.User) error {
	takeover, err := db.emails.claim(ctx, u.Email, u.ID, func(ctx context.Context, ref string) (bool, error) {
		holder, err := db.User(ctx, ref)
		if codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
			return false, nil
		}
		return err == nil && holder.Email == u.Email, err
	})
	if errors.Is(err, errTaken) {
		return codecrafter.Errorf(codecrafter.ECONFLICT, "an account with this email already exists")
	}
	if err != nil {
		return err
	}
	_, err = db.users.InsertOne(ctx, userDoc{ID: u.ID, Email: u.Email, Name: u.Name, PasswordHash: u.PasswordHash, CreatedAt: u.CreatedAt})
	if isDuplicate(err) {
		return codecrafter.Wrap(err, codecrafter.ECONFLICT, "an account with this email already exists")
	}
	if err != nil {
		return dbErr(err, "user")
	}
	if takeover {
		if err := db.emails.set(ctx, u.Email, u.ID); err != nil {
			// UserByEmail repairs it.
			db.logger.WarnContext(ctx, "mongo: pointing an email lookup at its new user", "user", u.ID, "err", err)
		}
	}
	return nil
}

// User returns the user with id; NOT_FOUND when there is none.
func (db *DB) User(ctx context.Context, id string) (*codecrafter.User, error) {
	return db.findUser(ctx, bson.D{byID(id)})
}

// UserByEmail looks up a normalised email; NOT_FOUND when there is none.
// Two _id lookups: the email's lookup, then the user it names.
func (db *DB) UserByEmail(ctx context.Context, email string) (*codecrafter.User, error) {
	ref, found, err := db.emails.ref(ctx, email)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, codecrafter.Errorf(codecrafter.ENOTFOUND, "user not found")
	}
	u, err := db.User(ctx, ref)
	if err == nil && u.Email == email {
		return u, nil
	}
	if err != nil && !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		return nil, err
	}
	// A lookup left by a crash: ask the users collection itself.
	u, err = db.findUser(ctx, bson.D{{Key: "email", Value: email}})
	if err != nil {
		return nil, err
	}
	if err := db.emails.repoint(ctx, email, ref, u.ID); err != nil {
		db.logger.WarnContext(ctx, "mongo: repairing an email lookup", "user", u.ID, "err", err)
	}
	return u, nil
}

func (db *DB) findUser(ctx context.Context, filter bson.D) (*codecrafter.User, error) {
	var d userDoc
	if err := db.users.FindOne(ctx, filter).Decode(&d); err != nil {
		return nil, dbErr(err, "user")
	}
	return d.user(), nil
}

// Users returns the users with these ids that exist, in any order: an
// _id lookup each ($in is a collection scan on FerretDB).
func (db *DB) Users(ctx context.Context, ids []string) ([]*codecrafter.User, error) {
	docs, err := fetchByIDs[userDoc](ctx, db.users, unique(ids), nil)
	if err != nil {
		return nil, err
	}
	var users []*codecrafter.User
	for _, d := range docs {
		if d != nil {
			users = append(users, d.user())
		}
	}
	return users, nil
}

// unique returns ids without repeats, in their first order.
func unique(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
