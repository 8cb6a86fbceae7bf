package mongo

import (
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/codecrafter/codecrafter"
)

// TestChatPagesOfBothFormats: a page written before messages were packed
// (documents) still reads, and appending to it packs the new ones.
func TestChatPagesOfBothFormats(t *testing.T) {
	t.Parallel()
	db, _ := newTestDB(t)
	sid := codecrafter.NewID()
	at := time.Now().UTC().Truncate(time.Millisecond)
	old := chatMsg{UserID: "u1", Body: "héllo 😀", At: at}
	_, err := db.chatPages.InsertOne(ctx, bson.D{byID(chatPageID(sid, 0)), {Key: "count", Value: 1}, {Key: "msgs", Value: bson.A{old}}})
	must(t, err)
	next := &codecrafter.Message{SessionID: sid, UserID: "u2", Body: `"quoted"\n`, CreatedAt: at}
	must(t, db.AppendMessage(ctx, next))
	if next.Seq != 2 || next.ID != codecrafter.MessageID(sid, 2) {
		t.Fatalf("appended as %d %s", next.Seq, next.ID)
	}
	got, err := db.Messages(ctx, sid, 0, 10)
	must(t, err)
	want := []*codecrafter.Message{
		{ID: codecrafter.MessageID(sid, 1), SessionID: sid, Seq: 1, UserID: "u1", Body: "héllo 😀", CreatedAt: at},
		next,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read %+v %+v; want %+v %+v", got[0], got[1], want[0], want[1])
	}
	var raw struct{ Msgs []bson.RawValue }
	must(t, db.chatPages.FindOne(ctx, bson.D{byID(chatPageID(sid, 0))}).Decode(&raw))
	if raw.Msgs[0].Type != bson.TypeEmbeddedDocument || raw.Msgs[1].Type != bson.TypeString {
		t.Fatalf("stored as %v, %v; want the old document and a packed string", raw.Msgs[0].Type, raw.Msgs[1].Type)
	}
}
