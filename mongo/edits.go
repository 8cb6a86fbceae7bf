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

var _ codecrafter.EditStore = (*DB)(nil)

// A session's edit log lives in pages read by _id, like the chat (see
// messages.go): editPages {_id: "<sessionId>/<page>", count, edits: [...]}
// holds revisions page*editPageSize+1 .. page*editPageSize+count, and
// {_id: "<sessionId>/<page>/base", base} the code at revision
// page*editPageSize (see editBaseID), so a load reads a snapshot and at
// most a page's worth of edits more than it needs. Storing revision n is a
// compare-and-set on the page's count (n-1 stored, n not), lock-free
// across replicas; a page is created only once the one before is full.
const editPageSize = 32

type editPage struct {
	Count int             `bson:"count"`
	Base  *string         `bson:"base"`  // pages written before the base had its own document
	Edits []bson.RawValue `bson:"edits"` // packed strings; documents (editDoc) before
}

// A page's base is a document of its own, {_id: "<sessionId>/<page>/base",
// base}, written once before the page: an append rewrites the page (the
// embedded store rewrites a whole document on every update), and the code
// may be 64 KiB where the page's edits are a few.
func editBaseID(sessionID string, page int) string { return editPageID(sessionID, page) + "/base" }

// An edit in its page is packed into one string (packedEdit as JSON): the
// embedded store decodes the whole page on every append (twice: the
// guard's lookup, then the update), and a string is one value to it
// where a document of fields and ops is dozens. The position gives the
// revision.
type packedEdit struct {
	UserID    string            `json:"u"`
	ClientID  string            `json:"c,omitempty"`
	ClientSeq int               `json:"s,omitempty"`
	Ops       []json.RawMessage `json:"o"` // retain n: n, insert s: "s", delete n: -n
	At        int64             `json:"t"` // Unix milliseconds
}

// editDoc is how an edit was stored before packedEdit; still read.
type editDoc struct {
	UserID    string    `bson:"userId"`
	ClientID  string    `bson:"clientId,omitempty"`
	ClientSeq int       `bson:"clientSeq,omitempty"`
	Ops       []textOp  `bson:"ops"`
	At        time.Time `bson:"at"`
}

type textOp struct {
	Retain int    `bson:"r,omitempty"`
	Insert string `bson:"i,omitempty"`
	Delete int    `bson:"d,omitempty"`
}

func packEdit(e *codecrafter.Edit) string {
	p := packedEdit{UserID: e.UserID, ClientID: e.ClientID, ClientSeq: e.ClientSeq, Ops: make([]json.RawMessage, len(e.Ops)), At: e.CreatedAt.UnixMilli()}
	for i, op := range e.Ops {
		switch {
		case op.Retain > 0:
			p.Ops[i] = strconv.AppendInt(nil, int64(op.Retain), 10)
		case op.Delete > 0:
			p.Ops[i] = strconv.AppendInt(nil, -int64(op.Delete), 10)
		default:
			p.Ops[i], _ = json.Marshal(op.Insert)
		}
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// unpackEdit reads revision rev of sessionID from its page entry, in
// either format.
func unpackEdit(sessionID string, rev int, v bson.RawValue) (*codecrafter.Edit, error) {
	e := &codecrafter.Edit{SessionID: sessionID, Revision: rev}
	if s, ok := v.StringValueOK(); ok {
		var p packedEdit
		if err := json.Unmarshal([]byte(s), &p); err != nil {
			return nil, codecrafter.Wrap(err, codecrafter.EINTERNAL, "edit log: revision "+strconv.Itoa(rev)+" unreadable")
		}
		e.UserID, e.ClientID, e.ClientSeq, e.CreatedAt = p.UserID, p.ClientID, p.ClientSeq, time.UnixMilli(p.At).UTC()
		e.Ops = make([]codecrafter.TextOp, len(p.Ops))
		for i, o := range p.Ops {
			if len(o) > 0 && o[0] == '"' {
				if err := json.Unmarshal(o, &e.Ops[i].Insert); err != nil {
					return nil, codecrafter.Wrap(err, codecrafter.EINTERNAL, "edit log: revision "+strconv.Itoa(rev)+" unreadable")
				}
				continue
			}
			n, err := strconv.Atoi(string(o))
			if err != nil || n == 0 {
				return nil, codecrafter.Errorf(codecrafter.EINTERNAL, "edit log: revision %d: bad op %s", rev, o)
			}
			if n > 0 {
				e.Ops[i].Retain = n
			} else {
				e.Ops[i].Delete = -n
			}
		}
		return e, nil
	}
	var d editDoc
	if err := v.Unmarshal(&d); err != nil {
		return nil, dbErr(err, "edit")
	}
	e.UserID, e.ClientID, e.ClientSeq, e.CreatedAt = d.UserID, d.ClientID, d.ClientSeq, d.At.UTC()
	e.Ops = make([]codecrafter.TextOp, len(d.Ops))
	for i, op := range d.Ops {
		e.Ops[i] = codecrafter.TextOp{Retain: op.Retain, Insert: op.Insert, Delete: op.Delete}
	}
	return e, nil
}

// AppendEdits stores edits up to the end of the page holding the first,
// in one write: a batch costs one round trip (and one rewrite of the
// page, which FerretDB rewrites whole on every update) instead of one a
// revision.
func (db *DB) AppendEdits(ctx context.Context, edits []*codecrafter.Edit, before string) (int, error) {
	first := edits[0].Revision
	if first < 1 { // no revision 0 to follow
		return 0, revisionConflict(first)
	}
	page, i := (first-1)/editPageSize, (first-1)%editPageSize
	n := min(len(edits), editPageSize-i)
	id := editPageID(edits[0].SessionID, page)
	docs := make(bson.A, n)
	for j, e := range edits[:n] {
		docs[j] = packEdit(e)
	}
	if i > 0 {
		// The guard is the compare-and-set: the page holds exactly the
		// revisions before the first.
		err := db.editPages.FindOneAndUpdate(ctx,
			bson.D{byID(id), {Key: "count", Value: i}},
			bson.D{
				{Key: "$push", Value: bson.D{{Key: "edits", Value: bson.D{{Key: "$each", Value: docs}}}}},
				{Key: "$inc", Value: bson.D{{Key: "count", Value: n}}},
			},
		).Err()
		if err == mongo.ErrNoDocuments {
			return 0, revisionConflict(first)
		}
		if err != nil {
			return 0, dbErr(err, "edit")
		}
		db.editStored(edits[0].SessionID, page)
		return n, nil
	}
	if page > 0 {
		// Revision first-1 is the last of the page before. (By _id alone:
		// the embedded store pushes only that down; a count guard in the
		// filter would decode every page of the collection.)
		var prev struct{ Count int }
		err := db.editPages.FindOne(ctx, bson.D{byID(editPageID(edits[0].SessionID, page-1))},
			options.FindOne().SetProjection(bson.D{{Key: "count", Value: 1}})).Decode(&prev)
		if err == mongo.ErrNoDocuments || err == nil && prev.Count != editPageSize {
			return 0, revisionConflict(first)
		}
		if err != nil {
			return 0, dbErr(err, "edit")
		}
	}
	// The base first, so that a page never lacks one; every writer of the
	// page's first revision writes the same base (the code at the durable
	// revision before), so a duplicate is another's and as good.
	if _, err := db.editPages.InsertOne(ctx, bson.D{byID(editBaseID(edits[0].SessionID, page)), {Key: "base", Value: before}}); err != nil && !isDuplicate(err) {
		return 0, dbErr(err, "edit")
	}
	_, err := db.editPages.InsertOne(ctx, bson.D{byID(id), {Key: "count", Value: n}, {Key: "edits", Value: docs}})
	if isDuplicate(err) {
		return 0, revisionConflict(first)
	}
	if err != nil {
		return 0, dbErr(err, "edit")
	}
	db.editStored(edits[0].SessionID, page)
	return n, nil
}

func revisionConflict(rev int) error {
	return codecrafter.Errorf(codecrafter.ECONFLICT, "revision %d is taken, or the one before is missing", rev)
}

// editStored raises the session's last-page hint to page. (A racing
// writer may lower it again: a low hint only costs reads.)
func (db *DB) editStored(sessionID string, page int) {
	if p, ok := db.editHints.Load(sessionID); !ok || p.(int) < page {
		db.editHints.Store(sessionID, page)
	}
}

// EditsSince returns the snapshot of the page holding revision after+1
// (or of the last page) and every edit from there to the newest.
func (db *DB) EditsSince(ctx context.Context, sessionID string, after int) (base int, code string, edits []*codecrafter.Edit, ok bool, err error) {
	last, ok, err := db.lastEditPage(ctx, sessionID)
	if err != nil || !ok {
		return 0, "", nil, false, err
	}
	q := min(max(after, 0)/editPageSize, last)
	// Read on until a page is missing or not full: pages appended since
	// lastEditPage looked are read too.
	for page := q; ; page++ {
		var p editPage
		err := db.editPages.FindOne(ctx, bson.D{byID(editPageID(sessionID, page))}).Decode(&p)
		if err == mongo.ErrNoDocuments && page > q {
			break
		}
		if err != nil {
			return 0, "", nil, false, dbErr(err, "edit page")
		}
		if page == q {
			if p.Base != nil {
				code = *p.Base
			} else {
				var b struct{ Base string }
				if err := db.editPages.FindOne(ctx, bson.D{byID(editBaseID(sessionID, page))}).Decode(&b); err != nil {
					return 0, "", nil, false, dbErr(err, "edit page base")
				}
				code = b.Base
			}
		}
		for i, v := range p.Edits {
			e, err := unpackEdit(sessionID, page*editPageSize+i+1, v)
			if err != nil {
				return 0, "", nil, false, err
			}
			edits = append(edits, e)
		}
		if len(p.Edits) < editPageSize {
			break
		}
	}
	db.editStored(sessionID, q+(len(edits)-1)/editPageSize)
	return q * editPageSize, code, edits, true, nil
}

// lastEditPage returns the session's last page (ok false when it has
// none): a galloping search by _id from the hint, or from page 0 (pages
// exist from 0 to the last, contiguously).
func (db *DB) lastEditPage(ctx context.Context, sessionID string) (int, bool, error) {
	exists := func(p int) (bool, error) {
		return exists(ctx, db.editPages, editPageID(sessionID, p), "edit page")
	}
	lo := 0 // a page that exists
	if p, ok := db.editHints.Load(sessionID); ok {
		lo = p.(int)
	} else if ok, err := exists(0); err != nil || !ok {
		return 0, false, err
	}
	step := 1
	hi := lo + step // find a hi that does not exist
	for {
		ok, err := exists(hi)
		if err != nil {
			return 0, false, err
		}
		if !ok {
			break
		}
		lo, step = hi, step*2
		hi = lo + step
	}
	for hi-lo > 1 { // the last page is in [lo, hi)
		mid := (lo + hi) / 2
		ok, err := exists(mid)
		if err != nil {
			return 0, false, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, true, nil
}

func editPageID(sessionID string, page int) string { return sessionID + "/" + strconv.Itoa(page) }

// exists reports whether coll holds a document with id. A FindOne by _id,
// not CountDocuments: the embedded store runs a count as an aggregate,
// which decodes every document of the collection.
func exists(ctx context.Context, coll *mongo.Collection, id, what string) (bool, error) {
	err := coll.FindOne(ctx, bson.D{byID(id)}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
	if err == mongo.ErrNoDocuments {
		return false, nil
	}
	return err == nil, dbErr(err, what)
}
