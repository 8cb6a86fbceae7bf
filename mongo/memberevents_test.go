package mongo_test

import (
	"testing"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
	"github.com/codecrafter/codecrafter/storetest"
)

func TestMemberEvents(t *testing.T) {
	t.Parallel()
	storetest.TestMemberEvents(t, func(t *testing.T) codecrafter.MemberEventStore { return mongotest.New(t) })
}
