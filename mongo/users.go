package mongo

import (
	"context"
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

// CreateUser stores u; CONFLICT when the email (or id) is taken.
func (db *DB) CreateUser(ctx context.Context, u *codecrafter.User) error {
	_, err := db.users.InsertOne(ctx, userDoc{ID: u.ID, Email: u.Email, Name: u.Name, PasswordHash: u.PasswordHash, CreatedAt: u.CreatedAt})
	if isDuplicate(err) {
		return codecrafter.Wrap(err, codecrafter.ECONFLICT, "an account with this email already exists")
	}
	return dbErr(err, "user")
}

// User returns the user with id; NOT_FOUND when there is none.
func (db *DB) User(ctx context.Context, id string) (*codecrafter.User, error) {
	return db.findUser(ctx, bson.D{{Key: "_id", Value: id}})
}

// UserByEmail looks up a normalised email; NOT_FOUND when there is none.
func (db *DB) UserByEmail(ctx context.Context, email string) (*codecrafter.User, error) {
	return db.findUser(ctx, bson.D{{Key: "email", Value: email}})
}

func (db *DB) findUser(ctx context.Context, filter bson.D) (*codecrafter.User, error) {
	var d userDoc
	if err := db.users.FindOne(ctx, filter).Decode(&d); err != nil {
		return nil, dbErr(err, "user")
	}
	return d.user(), nil
}

// Users returns the users with these ids that exist, in any order.
func (db *DB) Users(ctx context.Context, ids []string) ([]*codecrafter.User, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cur, err := db.users.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	if err != nil {
		return nil, dbErr(err, "user")
	}
	var docs []userDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr(err, "user")
	}
	users := make([]*codecrafter.User, len(docs))
	for i := range docs {
		users[i] = docs[i].user()
	}
	return users, nil
}
