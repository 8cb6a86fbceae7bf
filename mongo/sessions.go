package mongo

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/codecrafter/codecrafter"
)

type sessionDoc struct {
	ID         string `bson:"_id"`
	Title      string `bson:"title"`
	Language   string `bson:"language"`
	Code       string `bson:"code"`
	Revision   int    `bson:"revision"`
	OwnerID    string `bson:"ownerId"`
	InviteCode string `bson:"inviteCode"`
	// Absent in documents from before invites could be turned off.
	InviteDisabled bool             `bson:"inviteDisabled,omitempty"`
	Participants   []participantDoc `bson:"participants"`
	Former         []formerDoc      `bson:"former,omitempty"`
	CreatedAt      time.Time        `bson:"createdAt"`
	UpdatedAt      time.Time        `bson:"updatedAt"`
	Version        int64            `bson:"version"`
}

type formerDoc struct {
	UserID  string    `bson:"userId"`
	Role    string    `bson:"role"`
	Removed bool      `bson:"removed,omitempty"`
	LeftAt  time.Time `bson:"leftAt"`
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
		Version: s.Version, InviteDisabled: s.InviteDisabled,
		Participants: make([]participantDoc, len(s.Participants)),
	}
	for i, p := range s.Participants {
		d.Participants[i] = participantDoc{UserID: p.UserID, Role: string(p.Role), JoinedAt: p.JoinedAt}
	}
	for _, f := range s.Former {
		d.Former = append(d.Former, formerDoc{UserID: f.UserID, Role: string(f.Role), Removed: f.Removed, LeftAt: f.LeftAt})
	}
	return d
}

func (d *sessionDoc) session() *codecrafter.Session {
	s := &codecrafter.Session{
		ID: d.ID, Title: d.Title, Language: d.Language, Code: d.Code, Revision: d.Revision,
		OwnerID: d.OwnerID, InviteCode: d.InviteCode, CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC(),
		Version: d.Version, InviteDisabled: d.InviteDisabled,
	}
	for _, p := range d.Participants {
		s.Participants = append(s.Participants, codecrafter.Participant{UserID: p.UserID, Role: codecrafter.Role(p.Role), JoinedAt: p.JoinedAt.UTC()})
	}
	for _, f := range d.Former {
		s.Former = append(s.Former, codecrafter.FormerParticipant{UserID: f.UserID, Role: codecrafter.Role(f.Role), Removed: f.Removed, LeftAt: f.LeftAt.UTC()})
	}
	return s
}

// hasParticipant reports whether the document lists userID.
func (d *sessionDoc) hasParticipant(userID string) bool {
	return slices.ContainsFunc(d.Participants, func(p participantDoc) bool { return p.UserID == userID })
}

// CreateSession stores s with Version 1 (and sets s.Version); CONFLICT
// when its invite code (or id) is taken. The invite code's lookup and the
// participants' memberships come first (see lookup and memberships).
func (db *DB) CreateSession(ctx context.Context, s *codecrafter.Session) error {
	takeover, err := db.invites.claim(ctx, s.InviteCode, s.ID, db.holdsInvite(s.InviteCode))
	if err != nil {
		return inviteErr(err)
	}
	members := participantIDs(s.Participants)
	if err := db.addMemberships(ctx, members, s.ID); err != nil {
		return err
	}
	db.testHook(s.ID)
	d := toSessionDoc(s)
	d.Version = 1
	if _, err := db.sessions.InsertOne(ctx, d); err != nil {
		return inviteErr(err)
	}
	s.Version = 1
	db.afterSessionWrite(ctx, s.ID, sessionChange{takeover: takeover, code: s.InviteCode, joined: members})
	return nil
}

// inviteErr translates an error of a write that may have hit a taken
// invite code.
func inviteErr(err error) error {
	if errors.Is(err, errTaken) || isDuplicate(err) {
		return codecrafter.Wrap(err, codecrafter.ECONFLICT, "a session with this invite code already exists")
	}
	return dbErr(err, "session")
}

// holdsInvite returns claim's check: does session ref hold code?
func (db *DB) holdsInvite(code string) func(context.Context, string) (bool, error) {
	return func(ctx context.Context, ref string) (bool, error) {
		s, err := db.Session(ctx, ref)
		if codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
			return false, nil
		}
		return err == nil && s.InviteCode == code, err
	}
}

// sessionChange is the bookkeeping due after a session write commits.
type sessionChange struct {
	takeover      bool   // point the lookup of code at the session
	code, oldCode string // oldCode, when set, is released
	joined, left  []string
}

// afterSessionWrite brings lookups and memberships up to date once a
// session write has committed. A failure here leaves them stale in a way
// readers detect and repair, so it is only logged.
func (db *DB) afterSessionWrite(ctx context.Context, id string, c sessionChange) {
	warn := func(what string, err error) {
		if err != nil {
			db.logger.WarnContext(ctx, "mongo: "+what+" after a session write", "session", id, "err", err)
		}
	}
	if c.takeover {
		warn("pointing the invite code lookup at the session", db.invites.set(ctx, c.code, id))
	}
	if c.oldCode != "" {
		warn("releasing the old invite code", db.invites.release(ctx, c.oldCode, id))
	}
	warn("adding memberships", db.addMemberships(ctx, c.joined, id))
	for _, u := range c.left {
		warn("removing a membership", db.prune(ctx, u, id))
	}
}

// Session returns the session with id; NOT_FOUND when there is none.
func (db *DB) Session(ctx context.Context, id string) (*codecrafter.Session, error) {
	return db.findSession(ctx, bson.D{byID(id)})
}

// SessionByInviteCode returns the session with that invite code: the
// code's lookup, then the session it names.
func (db *DB) SessionByInviteCode(ctx context.Context, code string) (*codecrafter.Session, error) {
	ref, found, err := db.invites.ref(ctx, code)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, codecrafter.Errorf(codecrafter.ENOTFOUND, "session not found")
	}
	s, err := db.Session(ctx, ref)
	if err == nil && s.InviteCode == code {
		return s, nil
	}
	if err != nil && !codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		return nil, err
	}
	// The lookup's session is gone or has another code now (a crash
	// before its lookup was released), or a crash left the lookup naming
	// the wrong session: ask the sessions collection itself.
	s, err = db.findSession(ctx, bson.D{{Key: "inviteCode", Value: code}})
	if err != nil {
		return nil, err
	}
	if err := db.invites.repoint(ctx, code, ref, s.ID); err != nil {
		db.logger.WarnContext(ctx, "mongo: repairing an invite code lookup", "session", s.ID, "err", err)
	}
	return s, nil
}

func (db *DB) findSession(ctx context.Context, filter bson.D) (*codecrafter.Session, error) {
	var d sessionDoc
	if err := db.sessions.FindOne(ctx, filter).Decode(&d); err != nil {
		return nil, dbErr(err, "session")
	}
	return d.session(), nil
}

// sessionRetryLimit bounds how long UpdateSession keeps losing races
// when ctx has no earlier deadline.
const sessionRetryLimit = 30 * time.Second

// UpdateSession reads the session, applies fn to a copy and stores it if
// the stored Version is still the one read; otherwise it tries again. A
// new invite code is claimed, and new participants' memberships added,
// before the write; the rest follows it (afterSessionWrite).
//
// Writers in this process take turns (sessionLocks), so only other
// processes' writes make a try lose, and each loss is someone else's
// success: it retries until ctx ends (at most sessionRetryLimit) rather
// than a fixed number of times, with a growing jittered backoff.
func (db *DB) UpdateSession(ctx context.Context, id string, fn func(*codecrafter.Session) error) (*codecrafter.Session, error) {
	unlock, err := sessionLocks.lock(ctx, lockKey{db, id})
	if err != nil {
		return nil, err
	}
	s, c, err := db.updateSession(ctx, id, fn)
	unlock()
	if err != nil {
		return nil, err
	}
	db.afterSessionWrite(ctx, id, c)
	return s, nil
}

func (db *DB) updateSession(ctx context.Context, id string, fn func(*codecrafter.Session) error) (*codecrafter.Session, sessionChange, error) {
	var none sessionChange
	giveUp := time.Now().Add(sessionRetryLimit)
	for try := 0; ; try++ {
		cur, err := db.Session(ctx, id)
		if err != nil {
			return nil, none, err
		}
		s := *cur
		s.Participants = slices.Clone(cur.Participants)
		s.Former = slices.Clone(cur.Former)
		if err := fn(&s); err != nil {
			return nil, none, err
		}
		s.ID, s.Version = id, cur.Version+1

		before, after := participantIDs(cur.Participants), participantIDs(s.Participants)
		c := sessionChange{code: s.InviteCode, joined: minus(after, before), left: minus(before, after)}
		if s.InviteCode != cur.InviteCode {
			c.oldCode = cur.InviteCode
			if c.takeover, err = db.invites.claim(ctx, s.InviteCode, id, db.holdsInvite(s.InviteCode)); err != nil {
				return nil, none, inviteErr(err)
			}
		}
		if err := db.addMemberships(ctx, c.joined, id); err != nil {
			return nil, none, err
		}
		db.testHook(id)
		err = db.sessions.FindOneAndReplace(ctx,
			bson.D{byID(id), {Key: "version", Value: cur.Version}},
			toSessionDoc(&s),
		).Err()
		switch {
		case err == nil:
			return &s, c, nil
		case !errors.Is(err, mongo.ErrNoDocuments):
			return nil, none, inviteErr(err)
		}
		if time.Now().After(giveUp) {
			return nil, none, codecrafter.Errorf(codecrafter.ECONFLICT, "the session is changing too fast; try again")
		}
		if err := raceBackoff(ctx, try); err != nil {
			return nil, none, err
		}
	}
}

// raceBackoff waits a random time below a ceiling that doubles with each
// lost race, from 1 ms up to 64 ms ("full jitter"): racing writers spread
// out instead of colliding again in step.
func raceBackoff(ctx context.Context, try int) error {
	t := time.NewTimer(rand.N(time.Millisecond << min(try, 6)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return dbErr(ctx.Err(), "")
	case <-t.C:
		return nil
	}
}

// DeleteSession removes the session; NOT_FOUND when there is none. Then
// it releases the invite code and the memberships the deleted document
// listed (ids are never reused, so nothing can make them valid again).
func (db *DB) DeleteSession(ctx context.Context, id string) error {
	var d sessionDoc
	if err := db.sessions.FindOneAndDelete(ctx, bson.D{byID(id)}).Decode(&d); err != nil {
		return dbErr(err, "session")
	}
	db.afterSessionWrite(ctx, id, sessionChange{oldCode: d.InviteCode, left: participantIDs(d.session().Participants)})
	return nil
}

func (db *DB) testHook(sessionID string) {
	if db.beforeSessionWrite != nil {
		db.beforeSessionWrite(sessionID)
	}
}

func participantIDs(ps []codecrafter.Participant) []string {
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.UserID
	}
	return ids
}

// minus returns the elements of a not in b.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
