// Package queuetest is the conformance suite every codecrafter.Queue
// passes.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
)

// Queue is a handle on a queue, like one process's connection to it.
// Close drops the handle as a crash would: the jobs its handlers hold go
// back to the queue and their contexts end.
type Queue interface {
	codecrafter.Queue
	Close() error
}

// NewQueue makes a fresh, empty queue for one test, which hands a job out
// at most deliveryLimit times, and returns a function that opens handles
// on it, each as if from another process. The caller closes the handles
// it opens (at cleanup at the latest).
type NewQueue func(t *testing.T, deliveryLimit int) (open func(t *testing.T) Queue)

// timeout bounds every wait for an event.
const timeout = 20 * time.Second

// quiet is how long the suite watches for something that must not happen.
const quiet = 300 * time.Millisecond

// Test runs the suite against the queues newQueue makes.
func Test(t *testing.T, newQueue NewQueue) {
	open := func(t *testing.T, deliveryLimit int) (func() Queue, Queue) {
		t.Helper()
		openHandle := newQueue(t, deliveryLimit)
		next := func() Queue {
			q := openHandle(t)
			t.Cleanup(func() { q.Close() })
			return q
		}
		return next, next()
	}

	t.Run("PingAndStats", func(t *testing.T) {
		t.Parallel()
		_, q := open(t, 5)
		if err := q.Ping(ctx(t)); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		enqueue(t, q, "a", "b", "c")
		waitStats(t, q, func(s codecrafter.QueueStats) bool { return s.Ready == 3 && s.Dead == 0 }, "3 ready")
	})

	t.Run("EveryJobOnceAndAckRemoves", func(t *testing.T) {
		t.Parallel()
		next, q := open(t, 5)
		ids := jobIDs(30)
		enqueue(t, q, ids...)
		seen := make(chan codecrafter.Delivery, 2*len(ids))
		stop := consume(t, q, 4, func(_ context.Context, d codecrafter.Delivery) error {
			seen <- d
			return nil
		})
		got := map[string]bool{}
		for range ids {
			d := receive(t, seen)
			if got[d.Job.ExecutionID] || d.Redelivered {
				t.Fatalf("job %s delivered again (redelivered=%v) though acked", d.Job.ExecutionID, d.Redelivered)
			}
			got[d.Job.ExecutionID] = true
		}
		for _, id := range ids {
			if !got[id] {
				t.Fatalf("job %s never delivered", id)
			}
		}
		if err := stop(); err != nil {
			t.Fatalf("Consume: %v", err)
		}
		// Acked jobs stay gone once the handle is closed.
		q.Close()
		waitStats(t, next(), func(s codecrafter.QueueStats) bool { return s.Ready == 0 && s.Dead == 0 }, "an empty queue")
	})

	t.Run("ErrorRedelivers", func(t *testing.T) {
		t.Parallel()
		_, q := open(t, 5)
		enqueue(t, q, "job")
		seen := make(chan codecrafter.Delivery, 10)
		consume(t, q, 1, func(_ context.Context, d codecrafter.Delivery) error {
			seen <- d
			if !d.Redelivered {
				return errors.New("first attempt fails")
			}
			return nil
		})
		if d := receive(t, seen); d.Job.ExecutionID != "job" || d.Redelivered {
			t.Fatalf("first delivery %+v, want job not redelivered", d)
		}
		if d := receive(t, seen); d.Job.ExecutionID != "job" || !d.Redelivered {
			t.Fatalf("second delivery %+v, want job redelivered", d)
		}
		none(t, seen)
	})

	t.Run("DeliveryLimitDeadLetters", func(t *testing.T) {
		t.Parallel()
		for _, limit := range []int{1, 3} {
			t.Run(fmt.Sprint("limit=", limit), func(t *testing.T) {
				t.Parallel()
				_, q := open(t, limit)
				enqueue(t, q, "doomed")
				var deliveries atomic.Int32
				stop := consume(t, q, 2, func(context.Context, codecrafter.Delivery) error {
					deliveries.Add(1)
					return errors.New("always fails")
				})
				waitStats(t, q, func(s codecrafter.QueueStats) bool { return s.Dead == 1 }, "1 dead")
				if err := stop(); err != nil {
					t.Fatalf("Consume: %v", err)
				}
				if n := deliveries.Load(); n != int32(limit) {
					t.Fatalf("delivered %d times, want the limit %d", n, limit)
				}

				// A dead job stays until its handler succeeds (it must
				// not be lost when failing its run fails).
				dead := make(chan codecrafter.Delivery, 10)
				consumeDead(t, q, func(_ context.Context, d codecrafter.Delivery) error {
					dead <- d
					if !d.Redelivered {
						return errors.New("the store is down")
					}
					return nil
				})
				if d := receive(t, dead); d.Job.ExecutionID != "doomed" || d.Redelivered {
					t.Fatalf("dead-lettered %+v, want doomed", d)
				}
				if d := receive(t, dead); d.Job.ExecutionID != "doomed" || !d.Redelivered {
					t.Fatalf("after a failed handler: %+v, want doomed again, redelivered", d)
				}
				none(t, dead)
				waitStats(t, q, func(s codecrafter.QueueStats) bool { return s.Dead == 0 && s.Ready == 0 }, "an empty queue")
			})
		}
	})

	t.Run("ConcurrencyBound", func(t *testing.T) {
		t.Parallel()
		const concurrency, jobs = 3, 12
		_, q := open(t, 5)
		enqueue(t, q, jobIDs(jobs)...)
		var running, most atomic.Int32
		started := make(chan string, jobs)
		release := make(chan struct{})
		consume(t, q, concurrency, func(_ context.Context, d codecrafter.Delivery) error {
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			started <- d.Job.ExecutionID
			<-release
			return nil
		})
		for range concurrency {
			receive(t, started)
		}
		none(t, started) // all slots are busy
		close(release)
		for range jobs - concurrency {
			receive(t, started)
		}
		if m := most.Load(); m != concurrency {
			t.Fatalf("at most %d handlers ran at once, want %d", m, concurrency)
		}
	})

	t.Run("ConsumeWaitsForHandlers", func(t *testing.T) {
		t.Parallel()
		next, q := open(t, 5)
		enqueue(t, q, "job")
		started := make(chan struct{})
		release := make(chan struct{})
		var handlerErr atomic.Value
		consumeCtx, cancel := context.WithCancel(ctx(t))
		done := make(chan error, 1)
		go func() {
			done <- q.Consume(consumeCtx, 2, func(hctx context.Context, d codecrafter.Delivery) error {
				close(started)
				<-release
				if err := hctx.Err(); err != nil {
					handlerErr.Store(err)
				}
				return nil
			})
		}()
		waitFor(t, started)
		cancel()
		select {
		case err := <-done:
			t.Fatalf("Consume returned (%v) while its handler ran", err)
		case <-time.After(quiet):
		}
		close(release)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Consume: %v", err)
			}
		case <-time.After(timeout):
			t.Fatal("Consume did not return after its handler finished")
		}
		if err := handlerErr.Load(); err != nil {
			t.Fatalf("handler's context ended with Consume's: %v", err)
		}
		// The job was acked, not requeued.
		q.Close()
		waitStats(t, next(), func(s codecrafter.QueueStats) bool { return s.Ready == 0 && s.Dead == 0 }, "an empty queue")
	})

	t.Run("VanishedConsumersJobIsRedelivered", func(t *testing.T) {
		t.Parallel()
		next, crashing := open(t, 5)
		enqueue(t, crashing, "job")
		held := make(chan struct{})
		cancelled := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- crashing.Consume(ctx(t), 1, func(hctx context.Context, d codecrafter.Delivery) error {
				close(held)
				<-hctx.Done()
				close(cancelled)
				return hctx.Err()
			})
		}()
		waitFor(t, held)

		other := make(chan codecrafter.Delivery, 10)
		consume(t, next(), 1, func(_ context.Context, d codecrafter.Delivery) error {
			other <- d
			return nil
		})
		none(t, other) // the job is taken
		crashing.Close()
		waitFor(t, cancelled) // the handler learns its job can no longer be acked
		if d := receive(t, other); d.Job.ExecutionID != "job" || !d.Redelivered {
			t.Fatalf("got %+v, want job redelivered", d)
		}
		select {
		case <-done: // Consume on a closed handle returns
		case <-time.After(timeout):
			t.Fatal("Consume did not return after Close")
		}
	})

	t.Run("JobsOutliveTheHandle", func(t *testing.T) {
		t.Parallel()
		next, q := open(t, 5)
		enqueue(t, q, "kept")
		q.Close()
		seen := make(chan codecrafter.Delivery, 1)
		consume(t, next(), 1, func(_ context.Context, d codecrafter.Delivery) error {
			seen <- d
			return nil
		})
		if d := receive(t, seen); d.Job.ExecutionID != "kept" {
			t.Fatalf("got %+v", d)
		}
	})

	t.Run("BadConcurrency", func(t *testing.T) {
		t.Parallel()
		_, q := open(t, 5)
		err := q.Consume(ctx(t), 0, func(context.Context, codecrafter.Delivery) error { return nil })
		if !codecrafter.IsCode(err, codecrafter.EINVALID) {
			t.Fatalf("Consume with concurrency 0 = %v, want %s", err, codecrafter.EINVALID)
		}
	})
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func jobIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("job-%03d", i)
	}
	return ids
}

func enqueue(t *testing.T, q codecrafter.Queue, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := q.Enqueue(ctx(t), codecrafter.Job{ExecutionID: id}); err != nil {
			t.Fatalf("Enqueue(%s): %v", id, err)
		}
	}
}

// consume runs Consume until stop is called (or the test ends); stop
// returns Consume's error.
func consume(t *testing.T, q codecrafter.Queue, concurrency int, handle func(context.Context, codecrafter.Delivery) error) (stop func() error) {
	return run(t, func(ctx context.Context) error { return q.Consume(ctx, concurrency, handle) })
}

func consumeDead(t *testing.T, q codecrafter.Queue, handle func(context.Context, codecrafter.Delivery) error) (stop func() error) {
	return run(t, func(ctx context.Context) error { return q.ConsumeDead(ctx, handle) })
}

func run(t *testing.T, f func(context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(timeout):
				err = errors.New("consumer did not stop")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatal("nothing received")
		panic("unreachable")
	}
}

// none checks that nothing arrives on ch for a while.
func none[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %+v", v)
	case <-time.After(quiet):
	}
}

func waitFor(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatal("timed out")
	}
}

// waitStats polls Stats until ok: brokers update counts asynchronously.
func waitStats(t *testing.T, q codecrafter.Queue, ok func(codecrafter.QueueStats) bool, want string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := q.Stats(ctx(t))
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if ok(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stats = %+v, want %s", s, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
