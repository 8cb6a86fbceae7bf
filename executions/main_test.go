package executions_test

import (
	"os"
	"testing"

	"github.com/codecrafter/codecrafter/executions/exectest"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
)

// mongoURI is an embedded FerretDB shared by the tests (one database each).
var mongoURI string

func TestMain(m *testing.M) { os.Exit(mongotest.Main(m, &mongoURI)) }

type store = exectest.Stores

// eachStore runs test against the in-memory fake and the mongo store.
func eachStore(t *testing.T, test func(t *testing.T, s store)) {
	exectest.EachStore(t, mongoURI, test)
}
