package rabbitmq_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/testenv"
)

// TestBrokerFaults stops and kills a private broker under a working queue.
func TestBrokerFaults(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a private RabbitMQ node")
	}
	node := testenv.StartRabbit(t)
	// One queue for both parts, as in production: RabbitMQ 3.10 can lose a
	// quorum queue declared seconds before it is killed (its registry is
	// flushed lazily), which a clean restart does not.
	opts := testOptions(t, 5)
	if testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}

	t.Run("RestartDuringBurstLosesNoJob", func(t *testing.T) {
		const producers, each = 4, 100
		const total = producers * each
		ctx := testenv.Context(t, 3*time.Minute)
		q := open(t, node.URL, opts)

		var mu sync.Mutex
		handled := map[string]int{}
		third, all := make(chan struct{}), make(chan struct{})
		consumeCtx, stopConsuming := context.WithCancel(ctx)
		consumed := make(chan error, 1)
		go func() {
			consumed <- q.Consume(consumeCtx, 8, func(_ context.Context, d codecrafter.Delivery) error {
				mu.Lock()
				defer mu.Unlock()
				handled[d.Job.ExecutionID]++
				switch len(handled) {
				case total / 3:
					if handled[d.Job.ExecutionID] == 1 {
						close(third)
					}
				case total:
					if handled[d.Job.ExecutionID] == 1 {
						close(all)
					}
				}
				return nil
			})
		}()

		var producing sync.WaitGroup
		var slowest time.Duration
		errs := make(chan error, total)
		for p := range producers {
			producing.Go(func() {
				for i := range each {
					start := time.Now()
					if err := q.Enqueue(ctx, codecrafter.Job{ExecutionID: fmt.Sprintf("%d-%d", p, i)}); err != nil {
						errs <- err
					}
					mu.Lock()
					slowest = max(slowest, time.Since(start))
					mu.Unlock()
				}
			})
		}

		wait(t, third, "a third of the jobs")
		start := time.Now()
		if err := node.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("node restarted (clean stop + start) in %v", time.Since(start).Round(time.Millisecond))
		producing.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("Enqueue: %v", err)
		}
		wait(t, all, "every job handled")
		t.Logf("all %d jobs handled %v after the restart began; slowest Enqueue %v",
			total, time.Since(start).Round(time.Millisecond), slowest.Round(time.Millisecond))

		// Every job is acknowledged: once the queue drained, nothing comes
		// back when the consumer's connection closes.
		waitEmpty(t, q)
		stopConsuming()
		if err := <-consumed; err != nil {
			t.Fatalf("Consume: %v", err)
		}
		q.Close()
		waitEmpty(t, open(t, node.URL, opts))

		mu.Lock()
		defer mu.Unlock()
		again := 0
		for _, n := range handled {
			again += n - 1
		}
		t.Logf("%d of %d jobs were handled more than once (at least once delivery)", again, total)
	})

	t.Run("KillCancelsHandlersAndRedelivers", func(t *testing.T) {
		ctx := testenv.Context(t, 2*time.Minute)
		q := open(t, node.URL, opts)
		if err := q.Enqueue(ctx, codecrafter.Job{ExecutionID: "held"}); err != nil {
			t.Fatal(err)
		}
		held := make(chan struct{})
		cancelled := make(chan struct{})
		handled := make(chan codecrafter.Delivery, 10)
		consume(t, q, 2, func(hctx context.Context, d codecrafter.Delivery) error {
			if d.Job.ExecutionID == "held" && !d.Redelivered {
				close(held)
				<-hctx.Done()
				close(cancelled)
				return hctx.Err()
			}
			handled <- d
			return nil
		})
		wait(t, held, "first delivery")

		node.Kill()
		wait(t, cancelled, "handler's context to end when the broker died")

		// Enqueue while the broker is down waits for it.
		enqueued := make(chan error, 1)
		go func() { enqueued <- q.Enqueue(ctx, codecrafter.Job{ExecutionID: "during"}) }()
		select {
		case err := <-enqueued:
			t.Fatalf("Enqueue returned %v while the broker was down", err)
		case <-time.After(300 * time.Millisecond):
		}

		start := time.Now()
		if err := node.Start(ctx); err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		t.Logf("node restarted in %v", up.Sub(start).Round(time.Millisecond))
		if err := <-enqueued; err != nil {
			t.Fatalf("Enqueue across the outage: %v", err)
		}
		t.Logf("Enqueue confirmed %v after the node was up", time.Since(up).Round(time.Millisecond))

		got := map[string]bool{}
		for len(got) < 2 {
			select {
			case d := <-handled:
				if d.Job.ExecutionID == "held" && !d.Redelivered {
					t.Errorf("held job came back with Redelivered false")
				}
				if !got[d.Job.ExecutionID] {
					t.Logf("%s handled %v after the node was up", d.Job.ExecutionID, time.Since(up).Round(time.Millisecond))
				}
				got[d.Job.ExecutionID] = true
			case <-time.After(30 * time.Second):
				t.Fatalf("handled %v, want held and during", got)
			}
		}
	})
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(60 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitEmpty polls until no job is ready or dead.
func waitEmpty(t *testing.T, q codecrafter.Queue) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := q.Stats(context.Background())
		if err == nil && s.Ready == 0 && s.Dead == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stats = %+v, %v; want an empty queue", s, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
