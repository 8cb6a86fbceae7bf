package server

import (
	"testing"

	"github.com/99designs/gqlgen/graphql"
)

// TestWsGroupsShareByShape: subscriptions of one shape share the first's
// OperationContext whatever their user, encodings only within a user's
// group; one with extensions shares nothing; leaving drops them all.
func TestWsGroupsShareByShape(t *testing.T) {
	var gs wsGroups
	k := shapeKey{"Chat", "subscription Chat { x }", `{"s":"1"}`}
	if gs.shared(k, true) != nil {
		t.Fatal("an OperationContext shared before any subscription")
	}
	first, second := &graphql.OperationContext{}, &graphql.OperationContext{}
	a1 := gs.join("ada", k, true, first)
	if got := gs.shared(k, true); got != first {
		t.Fatalf("shared = %p, want the first's %p", got, first)
	}
	a2 := gs.join("ada", k, true, second) // made meanwhile: the first's wins
	b := gs.join("bob", k, true, second)
	if a2 != a1 || b == a1 || b.id.shape.rc != first || a2.id.shape.rc != first {
		t.Fatalf("groups: ada %p %p, bob %p; contexts %p %p", a1, a2, b, a2.id.shape.rc, b.id.shape.rc)
	}
	if gs.shared(k, false) != nil {
		t.Fatal("an operation with extensions took a shared OperationContext")
	}
	private := gs.join("ada", k, false, second)
	if private == a1 || private.id.shape.rc != second {
		t.Fatal("an operation with extensions joined the shared group")
	}
	for _, g := range []*wsGroup{a1, a2, b, private} {
		gs.leave(g)
	}
	if len(gs.groups) != 0 || len(gs.shapes) != 0 || gs.shared(k, true) != nil {
		t.Fatalf("left: %d groups, %d shapes", len(gs.groups), len(gs.shapes))
	}
}
