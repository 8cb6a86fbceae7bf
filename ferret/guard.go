package ferret

import (
	"bytes"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The embedded server's proxy checks the guards of a findAndModify itself
// (see wireProxy.rewriteGuard), for the few query shapes this package
// sends; matchGuards says "unknown" for anything else, and the proxy then
// leaves the query to FerretDB.

// noMatchID is an _id no document has: a query for it finds nothing, fast.
const noMatchID = "\uffffcodecrafter-no-match"

// splitGuard splits query into its string _id and the other conditions;
// ok is false when it has no string _id or uses a top-level operator.
func splitGuard(query bson.Raw) (id string, guards []bson.RawElement, ok bool) {
	elems, err := query.Elements()
	if err != nil {
		return "", nil, false
	}
	for _, e := range elems {
		k := e.Key()
		switch {
		case k == "_id":
			if id, ok = e.Value().StringValueOK(); !ok {
				return "", nil, false
			}
		case strings.HasPrefix(k, "$") || strings.Contains(k, "."):
			return "", nil, false
		default:
			guards = append(guards, e)
		}
	}
	return id, guards, ok
}

// matchGuards reports whether doc meets every guard. known is false when
// a guard uses an operator or a value type it does not implement.
func matchGuards(doc bson.Raw, guards []bson.RawElement) (match, known bool) {
	match = true
	for _, g := range guards {
		field, err := doc.LookupErr(g.Key())
		present := err == nil
		m, k := matchCondition(field, present, g.Value())
		if !k {
			return false, false
		}
		match = match && m
	}
	return match, true
}

func matchCondition(field bson.RawValue, present bool, cond bson.RawValue) (match, known bool) {
	ops, isDoc := cond.DocumentOK()
	if !isDoc {
		return matchEqual(field, present, cond)
	}
	elems, err := ops.Elements()
	if err != nil || len(elems) == 0 {
		return false, false
	}
	match = true
	for _, op := range elems {
		var m, k bool
		switch v := op.Value(); op.Key() {
		case "$eq":
			m, k = matchEqual(field, present, v)
		case "$ne":
			m, k = matchEqual(field, present, v)
			m = !m
		case "$exists":
			var want bool
			want, k = v.BooleanOK()
			m = present == want
		case "$in":
			m, k = matchIn(field, present, v)
		default: // an embedded document, or an operator not done here
			return false, false
		}
		if !k {
			return false, false
		}
		match = match && m
	}
	return match, true
}

func matchIn(field bson.RawValue, present bool, list bson.RawValue) (match, known bool) {
	arr, ok := list.ArrayOK()
	if !ok {
		return false, false
	}
	values, err := arr.Values()
	if err != nil {
		return false, false
	}
	for _, v := range values {
		m, k := matchEqual(field, present, v)
		if !k {
			return false, false
		}
		if m {
			return true, true
		}
	}
	return false, true
}

// matchEqual is MongoDB's equality for scalars: a null matches a missing
// field; arrays (which match by element) and documents are not done here.
func matchEqual(field bson.RawValue, present bool, want bson.RawValue) (match, known bool) {
	if !scalar(want.Type) {
		return false, false
	}
	if !present {
		return want.Type == bson.TypeNull, true
	}
	if !scalar(field.Type) {
		return false, false
	}
	if number(field.Type) && number(want.Type) {
		return numbersEqual(field, want), true
	}
	if field.Type != want.Type {
		return false, true
	}
	return bytes.Equal(field.Value, want.Value), true
}

func scalar(t bson.Type) bool {
	switch t {
	case bson.TypeString, bson.TypeBoolean, bson.TypeNull, bson.TypeObjectID,
		bson.TypeDateTime, bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
		return true
	}
	return false
}

func number(t bson.Type) bool {
	return t == bson.TypeInt32 || t == bson.TypeInt64 || t == bson.TypeDouble
}

func numbersEqual(a, b bson.RawValue) bool {
	if a.Type != bson.TypeDouble && b.Type != bson.TypeDouble {
		return a.AsInt64() == b.AsInt64()
	}
	return a.AsFloat64() == b.AsFloat64()
}
