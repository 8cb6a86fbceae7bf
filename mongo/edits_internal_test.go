package mongo

import (
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/codecrafter/codecrafter"
)

// TestEditPagesOfBothFormats: a page written before edits were packed
// (documents, the base inline) still reads, and appending to it packs the
// new ones; a new page's base is a document of its own.
func TestEditPagesOfBothFormats(t *testing.T) {
	t.Parallel()
	db, _ := newTestDB(t)
	sid := codecrafter.NewID()
	at := time.Now().UTC().Truncate(time.Millisecond)
	old := editDoc{UserID: "u1", ClientID: "tab", ClientSeq: 3, Ops: []textOp{{Retain: 2}, {Insert: "é😀"}, {Delete: 1}}, At: at}
	_, err := db.editPages.InsertOne(ctx, bson.D{byID(editPageID(sid, 0)), {Key: "count", Value: 1}, {Key: "base", Value: "abc"}, {Key: "edits", Value: bson.A{old}}})
	must(t, err)
	next := &codecrafter.Edit{SessionID: sid, Revision: 2, UserID: "u2", Ops: []codecrafter.TextOp{{Insert: `"q"\n`}, {Retain: 2}, {Delete: 2}}, CreatedAt: at}
	n, err := db.AppendEdits(ctx, []*codecrafter.Edit{next}, "abé😀")
	must(t, err)
	if n != 1 {
		t.Fatalf("stored %d", n)
	}
	base, code, edits, ok, err := db.EditsSince(ctx, sid, 0)
	must(t, err)
	want := []*codecrafter.Edit{
		{SessionID: sid, Revision: 1, UserID: "u1", ClientID: "tab", ClientSeq: 3, Ops: []codecrafter.TextOp{{Retain: 2}, {Insert: "é😀"}, {Delete: 1}}, CreatedAt: at},
		next,
	}
	if !ok || base != 0 || code != "abc" || !reflect.DeepEqual(edits, want) {
		t.Fatalf("read %d %q %v: %+v %+v; want %+v %+v", base, code, ok, edits[0], edits[1], want[0], want[1])
	}
	var raw struct{ Edits []bson.RawValue }
	must(t, db.editPages.FindOne(ctx, bson.D{byID(editPageID(sid, 0))}).Decode(&raw))
	if raw.Edits[0].Type != bson.TypeEmbeddedDocument || raw.Edits[1].Type != bson.TypeString {
		t.Fatalf("stored as %v, %v; want the old document and a packed string", raw.Edits[0].Type, raw.Edits[1].Type)
	}

	// A new page keeps its base in a document of its own.
	sid2 := codecrafter.NewID()
	first := &codecrafter.Edit{SessionID: sid2, Revision: 1, UserID: "u", Ops: []codecrafter.TextOp{{Retain: 3}, {Insert: "!"}}, CreatedAt: at}
	_, err = db.AppendEdits(ctx, []*codecrafter.Edit{first}, "xyz")
	must(t, err)
	var page bson.M
	must(t, db.editPages.FindOne(ctx, bson.D{byID(editPageID(sid2, 0))}).Decode(&page))
	if _, inline := page["base"]; inline {
		t.Fatalf("new page holds its base: %v", page)
	}
	_, code, _, _, err = db.EditsSince(ctx, sid2, 0)
	must(t, err)
	if code != "xyz" {
		t.Fatalf("base %q, want xyz", code)
	}
}
