package exectest_test

import (
	"testing"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/executions/exectest"
	"github.com/codecrafter/codecrafter/storetest"
)

// The fake store passes the suite the real stores pass.
func TestStoreConformance(t *testing.T) {
	storetest.TestExecutions(t, func(*testing.T) codecrafter.ExecutionStore { return exectest.NewStore() })
}
