package rabbitmq_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/testenv"
	"github.com/codecrafter/codecrafter/queuetest"
	"github.com/codecrafter/codecrafter/rabbitmq"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testOptions returns options for a queue of the test's own.
func testOptions(t testing.TB, deliveryLimit int) rabbitmq.Options {
	return rabbitmq.Options{
		Queue:         "test." + codecrafter.NewID(),
		DeliveryLimit: deliveryLimit,
		RetryMax:      500 * time.Millisecond,
		Logger:        slog.New(slog.DiscardHandler),
	}
}

// open opens a queue handle closed at cleanup.
func open(t testing.TB, url string, opts rabbitmq.Options) *rabbitmq.Queue {
	t.Helper()
	q, err := rabbitmq.New(testenv.Context(t, 30*time.Second), url, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// consume runs q.Consume until the test ends.
func consume(t testing.TB, q codecrafter.Queue, concurrency int, handle func(context.Context, codecrafter.Delivery) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Consume(ctx, concurrency, handle) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func TestQueue(t *testing.T) {
	t.Parallel()
	url := testenv.AMQPURL(t)
	queuetest.Test(t, func(t *testing.T, deliveryLimit int) func(*testing.T) queuetest.Queue {
		opts := testOptions(t, deliveryLimit)
		testenv.DeleteQueues(t, url, opts.Queue)
		return func(t *testing.T) queuetest.Queue { return open(t, url, opts) }
	})
}

func TestNewFailsFast(t *testing.T) {
	t.Parallel()
	url := testenv.AMQPURL(t)
	opts := testOptions(t, 3)
	testenv.DeleteQueues(t, url, opts.Queue)
	open(t, url, opts)

	changed := opts
	changed.DeliveryLimit = 4
	for name, tc := range map[string]struct {
		url  string
		opts rabbitmq.Options
	}{
		"unreachable":      {"amqp://guest:guest@127.0.0.1:1/", opts},
		"bad credentials":  {"amqp://guest:wrong@" + url[len("amqp://guest:guest@"):], opts},
		"changed settings": {url, changed},
	} {
		t.Run(name, func(t *testing.T) {
			q, err := rabbitmq.New(testenv.Context(t, 30*time.Second), tc.url, tc.opts)
			if !codecrafter.IsCode(err, codecrafter.EUNAVAILABLE) {
				t.Fatalf("New = %v, %v; want UNAVAILABLE", q, err)
			}
		})
	}
}

func TestEnqueueHonoursContext(t *testing.T) {
	t.Parallel()
	url := testenv.AMQPURL(t)
	opts := testOptions(t, 3)
	testenv.DeleteQueues(t, url, opts.Queue)
	q := open(t, url, opts)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.Enqueue(ctx, codecrafter.Job{ExecutionID: "x"}); !codecrafter.IsCode(err, codecrafter.EUNAVAILABLE) {
		t.Fatalf("Enqueue with an ended context = %v, want UNAVAILABLE", err)
	}
	q.Close()
	if err := q.Enqueue(context.Background(), codecrafter.Job{ExecutionID: "x"}); !codecrafter.IsCode(err, codecrafter.EUNAVAILABLE) {
		t.Fatalf("Enqueue after Close = %v, want UNAVAILABLE", err)
	}
}
