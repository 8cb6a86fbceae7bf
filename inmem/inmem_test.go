package inmem_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/bustest"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/limitertest"
	"github.com/codecrafter/codecrafter/presencetest"
	"github.com/codecrafter/codecrafter/queuetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBus(t *testing.T) {
	bustest.Test(t, func(*testing.T) codecrafter.Bus { return inmem.NewBus() })
}

func TestLimiter(t *testing.T) {
	limitertest.Test(t, func(_ *testing.T, max int, window time.Duration) codecrafter.Limiter {
		return inmem.NewLimiter(max, window)
	})
}

func TestQueue(t *testing.T) {
	queuetest.Test(t, func(t *testing.T, deliveryLimit int) func(*testing.T) queuetest.Queue {
		q := inmem.NewQueue(inmem.QueueOptions{DeliveryLimit: deliveryLimit})
		t.Cleanup(func() { q.Close() })
		return func(*testing.T) queuetest.Queue { return q.Open() }
	})
}

func TestPresence(t *testing.T) {
	presencetest.Test(t, func(t *testing.T, _ time.Duration) presencetest.Deployment {
		bus := inmem.NewBus()
		p := inmem.NewPresence(bus)
		return presencetest.Deployment{Bus: bus, Replica: func(*testing.T) codecrafter.Presence { return p }}
	})
}
