package mongo

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/codecrafter/codecrafter"
)

var _ codecrafter.MessageStore = (*DB)(nil)

// Chat messages live in pages read by _id (see lookup.go for why):
// chatPages {_id: "<sessionId>/<page>", count, msgs: [...]} holds messages
// page*chatPageSize+1 .. page*chatPageSize+count of a session, in order.
// A message is appended by one guarded update of the last page (count
// still below the page size), so its Seq is its position and every earlier
// message is stored before it: no gaps, no reordering, across replicas and
// without a lock. Page p+1 is created only once page p is full.
const chatPageSize = 32

type chatPage struct {
	Count int             `bson:"count"`
	Msgs  []bson.RawValue `bson:"msgs"` // packed strings; documents (chatMsg) before
}

// A message in its page is packed into one string (packedMsg as JSON), as
// edits are (mongo/edits.go): the embedded store decodes the whole page on
// every append, twice, and a string is one value to it where a document
// is several (−40 % CPU per append on a full page).
type packedMsg struct {
	UserID string `json:"u"`
	Body   string `json:"b"`
	At     int64  `json:"t"` // Unix milliseconds
}

// chatMsg is how a message was stored before packedMsg; still read.
type chatMsg struct {
	UserID string    `bson:"userId"`
	Body   string    `bson:"body"`
	At     time.Time `bson:"at"`
}

func packMsg(m *codecrafter.Message) string {
	b, _ := json.Marshal(packedMsg{UserID: m.UserID, Body: m.Body, At: m.CreatedAt.UnixMilli()})
	return string(b)
}

// unpackMsg reads message seq of sessionID from its page entry, in either
// format.
func unpackMsg(sessionID string, seq int, v bson.RawValue) (*codecrafter.Message, error) {
	m := &codecrafter.Message{ID: codecrafter.MessageID(sessionID, seq), SessionID: sessionID, Seq: seq}
	if s, ok := v.StringValueOK(); ok {
		var p packedMsg
		if err := json.Unmarshal([]byte(s), &p); err != nil {
			return nil, codecrafter.Wrap(err, codecrafter.EINTERNAL, "chat: message "+strconv.Itoa(seq)+" unreadable")
		}
		m.UserID, m.Body, m.CreatedAt = p.UserID, p.Body, time.UnixMilli(p.At).UTC()
		return m, nil
	}
	var d chatMsg
	if err := v.Unmarshal(&d); err != nil {
		return nil, codecrafter.Wrap(err, codecrafter.EINTERNAL, "chat: message "+strconv.Itoa(seq)+" unreadable")
	}
	m.UserID, m.Body, m.CreatedAt = d.UserID, d.Body, d.At.UTC()
	return m, nil
}

// notFull is the guard of an append: the page has room. ($in, not $lt:
// the embedded server's proxy checks $in guards itself, see ferret/guard.go.)
var notFull = func() bson.A {
	a := make(bson.A, chatPageSize)
	for i := range a {
		a[i] = i
	}
	return a
}()

// AppendMessage stores m as the session's next message.
func (db *DB) AppendMessage(ctx context.Context, m *codecrafter.Message) error {
	return db.AppendMessages(ctx, []*codecrafter.Message{m})
}

// AppendMessages stores ms, all of one session, as its next messages in
// order: as many as the last page has room for in one update.
func (db *DB) AppendMessages(ctx context.Context, ms []*codecrafter.Message) error {
	for len(ms) > 0 {
		n, err := db.appendSome(ctx, ms)
		if err != nil {
			return err
		}
		ms = ms[n:]
	}
	return nil
}

// chatHint is what this process last saw of a session's last page.
type chatHint struct{ page, count int }

// appendSome appends the first of ms that fit in the last page (all,
// when the hint says there is room), and returns how many.
func (db *DB) appendSome(ctx context.Context, ms []*codecrafter.Message) (int, error) {
	sessionID := ms[0].SessionID
	page, k, err := db.lastChatPage(ctx, sessionID)
	if err != nil {
		return 0, err
	}
	k = min(len(ms), k)
	for {
		msgs := make(bson.A, k)
		for i, m := range ms[:k] {
			msgs[i] = packMsg(m)
		}
		var after chatPage
		err := db.chatPages.FindOneAndUpdate(ctx,
			// Room for k: count at most chatPageSize-k.
			bson.D{byID(chatPageID(sessionID, page)), {Key: "count", Value: bson.D{{Key: "$in", Value: notFull[:chatPageSize-k+1]}}}},
			bson.D{{Key: "$push", Value: bson.D{{Key: "msgs", Value: bson.D{{Key: "$each", Value: msgs}}}}}, {Key: "$inc", Value: bson.D{{Key: "count", Value: k}}}},
			options.FindOneAndUpdate().SetReturnDocument(options.After), // (FerretDB has no projection here)
		).Decode(&after)
		switch {
		case err == nil:
			db.appended(ms[:k], page, after.Count)
			return k, nil
		case err != mongo.ErrNoDocuments:
			return 0, dbErr(err, "message")
		}
		// Less room than k, full, or not there yet.
		there, err := exists(ctx, db.chatPages, chatPageID(sessionID, page), "message")
		if err != nil {
			return 0, err
		}
		if there {
			if k > 1 {
				k = 1 // room for fewer (another replica appended): one at a time
			} else {
				page++ // full: the next one
				k = min(len(ms), chatPageSize)
			}
			continue
		}
		_, err = db.chatPages.InsertOne(ctx, bson.D{byID(chatPageID(sessionID, page)), {Key: "count", Value: k}, {Key: "msgs", Value: msgs}})
		if err == nil {
			db.appended(ms[:k], page, k)
			return k, nil
		}
		if !isDuplicate(err) {
			return 0, dbErr(err, "message")
		}
		// Another writer created it: append to it.
		k = 1
	}
}

// appended numbers ms, the last of which is now message count of page.
func (db *DB) appended(ms []*codecrafter.Message, page, count int) {
	db.chatHints.Store(ms[0].SessionID, chatHint{page, count})
	for i, m := range ms {
		m.Seq = page*chatPageSize + count - len(ms) + 1 + i
		m.ID = codecrafter.MessageID(m.SessionID, m.Seq)
	}
}

// lastChatPage returns the session's last page (0 when it has none) and
// how many messages may go in at once: what the hint says it has room
// for, else a page's worth (the page is found by _id: pages exist from 0
// to the last, contiguously).
func (db *DB) lastChatPage(ctx context.Context, sessionID string) (int, int, error) {
	if h, ok := db.chatHints.Load(sessionID); ok {
		h := h.(chatHint)
		if h.count >= chatPageSize {
			return h.page + 1, chatPageSize, nil
		}
		return h.page, chatPageSize - h.count, nil
	}
	page, err := db.findLastChatPage(ctx, sessionID)
	return page, chatPageSize, err
}

func (db *DB) findLastChatPage(ctx context.Context, sessionID string) (int, error) {
	pageExists := func(p int) (bool, error) {
		return exists(ctx, db.chatPages, chatPageID(sessionID, p), "message")
	}
	ok, err := pageExists(0)
	if err != nil || !ok {
		return 0, err
	}
	lo, hi := 0, 1 // page lo exists; find a hi that does not
	for {
		if ok, err = pageExists(hi); err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 { // the last page is in [lo, hi)
		mid := (lo + hi) / 2
		if ok, err = pageExists(mid); err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// Messages returns up to limit messages with Seq above after, oldest first.
func (db *DB) Messages(ctx context.Context, sessionID string, after, limit int) ([]*codecrafter.Message, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []*codecrafter.Message
	for page := after / chatPageSize; len(out) < limit; page++ {
		var p chatPage
		err := db.chatPages.FindOne(ctx, bson.D{byID(chatPageID(sessionID, page))}).Decode(&p)
		if err == mongo.ErrNoDocuments {
			break
		}
		if err != nil {
			return nil, dbErr(err, "message")
		}
		for i, m := range p.Msgs {
			seq := page*chatPageSize + i + 1
			if seq <= after || len(out) == limit {
				continue
			}
			msg, err := unpackMsg(sessionID, seq, m)
			if err != nil {
				return nil, err
			}
			out = append(out, msg)
		}
		if len(p.Msgs) < chatPageSize {
			break
		}
	}
	return out, nil
}

func chatPageID(sessionID string, page int) string { return sessionID + "/" + strconv.Itoa(page) }
