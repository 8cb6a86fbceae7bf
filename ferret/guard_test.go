package ferret

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestMatchGuards(t *testing.T) {
	doc := mustRaw(t, bson.D{
		{Key: "_id", Value: "x"}, {Key: "n", Value: int32(3)}, {Key: "big", Value: int64(1) << 40},
		{Key: "s", Value: "RUNNING"}, {Key: "b", Value: true}, {Key: "null", Value: nil},
		{Key: "arr", Value: bson.A{1, 2}}, {Key: "sub", Value: bson.D{{Key: "k", Value: 1}}},
	})
	tests := []struct {
		name         string
		query        bson.D
		match, known bool
	}{
		{"int equal", bson.D{{Key: "n", Value: 3}}, true, true},
		{"int64 vs int32", bson.D{{Key: "n", Value: int64(3)}}, true, true},
		{"double vs int", bson.D{{Key: "n", Value: 3.0}}, true, true},
		{"int differs", bson.D{{Key: "n", Value: 4}}, false, true},
		{"big int", bson.D{{Key: "big", Value: int64(1) << 40}}, true, true},
		{"string", bson.D{{Key: "s", Value: "RUNNING"}}, true, true},
		{"string vs number", bson.D{{Key: "n", Value: "3"}}, false, true},
		{"bool", bson.D{{Key: "b", Value: false}}, false, true},
		{"missing field", bson.D{{Key: "gone", Value: 1}}, false, true},
		{"null matches missing", bson.D{{Key: "gone", Value: nil}}, true, true},
		{"null matches null", bson.D{{Key: "null", Value: nil}}, true, true},
		{"all guards", bson.D{{Key: "n", Value: 3}, {Key: "s", Value: "RUNNING"}}, true, true},
		{"one guard fails", bson.D{{Key: "n", Value: 3}, {Key: "s", Value: "QUEUED"}}, false, true},
		{"$exists false", bson.D{{Key: "gone", Value: bson.D{{Key: "$exists", Value: false}}}}, true, true},
		{"$exists true", bson.D{{Key: "gone", Value: bson.D{{Key: "$exists", Value: true}}}}, false, true},
		{"$exists false present", bson.D{{Key: "n", Value: bson.D{{Key: "$exists", Value: false}}}}, false, true},
		{"$in", bson.D{{Key: "s", Value: bson.D{{Key: "$in", Value: bson.A{"QUEUED", "RUNNING"}}}}}, true, true},
		{"$in misses", bson.D{{Key: "s", Value: bson.D{{Key: "$in", Value: bson.A{"QUEUED"}}}}}, false, true},
		{"$ne", bson.D{{Key: "s", Value: bson.D{{Key: "$ne", Value: "QUEUED"}}}}, true, true},
		{"$eq", bson.D{{Key: "n", Value: bson.D{{Key: "$eq", Value: 3}}}}, true, true},
		{"unknown operator", bson.D{{Key: "n", Value: bson.D{{Key: "$gt", Value: 1}}}}, false, false},
		{"array field", bson.D{{Key: "arr", Value: 1}}, false, false},
		{"document value", bson.D{{Key: "sub", Value: bson.D{{Key: "k", Value: 1}}}}, false, false},
		{"unknown after a failing guard", bson.D{{Key: "n", Value: 4}, {Key: "n", Value: bson.D{{Key: "$gt", Value: 1}}}}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustRaw(t, append(bson.D{{Key: "_id", Value: "x"}}, tt.query...))
			id, guards, ok := splitGuard(q)
			if !ok || id != "x" {
				t.Fatalf("splitGuard(%v) = %q, %v", q, id, ok)
			}
			match, known := matchGuards(doc, guards)
			if match != tt.match || known != tt.known {
				t.Errorf("matchGuards = %v, %v; want %v, %v", match, known, tt.match, tt.known)
			}
		})
	}
}

func TestSplitGuardRefuses(t *testing.T) {
	for _, q := range []bson.D{
		{{Key: "n", Value: 1}},                         // no _id
		{{Key: "_id", Value: 7}, {Key: "n", Value: 1}}, // not a string _id
		{{Key: "_id", Value: "x"}, {Key: "$or", Value: bson.A{}}},
		{{Key: "_id", Value: "x"}, {Key: "a.b", Value: 1}},
	} {
		if _, _, ok := splitGuard(mustRaw(t, q)); ok {
			t.Errorf("splitGuard(%v): ok", q)
		}
	}
}

func mustRaw(t *testing.T, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
