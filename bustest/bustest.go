// Package bustest is the conformance suite every codecrafter.Bus passes.
package bustest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
)

// NewBus returns a bus for one test; its topics must not reach other tests.
type NewBus func(t *testing.T) codecrafter.Bus

// Buses whose subscribers may hold fewer events than this pass the suite.
const maxBuffer = 1000

// timeout bounds every wait for an event.
const timeout = 10 * time.Second

// Test runs the suite against the buses newBus makes.
func Test(t *testing.T, newBus NewBus) {
	t.Run("Ping", func(t *testing.T) {
		t.Parallel()
		if err := newBus(t).Ping(testCtx(t)); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})

	t.Run("OrderPerTopic", func(t *testing.T) {
		t.Parallel()
		bus := newBus(t)
		events := subscribe(t, testCtx(t), bus, "t")
		for i := range 100 {
			publish(t, bus, "t", strconv.Itoa(i))
		}
		for i := range 100 {
			expect(t, events, strconv.Itoa(i))
		}
	})

	t.Run("PublishAllInOrder", func(t *testing.T) {
		t.Parallel()
		bus := newBus(t)
		events := subscribe(t, testCtx(t), bus, "t")
		for _, n := range []int{1, 3, 50} { // one, and batches
			payloads := make([][]byte, n)
			for i := range payloads {
				payloads[i] = []byte(fmt.Sprintf("%d-%d", n, i))
			}
			if err := codecrafter.PublishAll(testCtx(t), bus, "t", payloads); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range []int{1, 3, 50} {
			for i := range n {
				expect(t, events, fmt.Sprintf("%d-%d", n, i))
			}
		}
	})

	t.Run("PayloadIsCopied", func(t *testing.T) {
		t.Parallel()
		bus := newBus(t)
		events := subscribe(t, testCtx(t), bus, "t")
		payload := []byte{0, 1, 2, 255, 'x'}
		if err := bus.Publish(testCtx(t), "t", payload); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		want := bytes.Clone(payload)
		payload[0] = 42 // the publisher may reuse its buffer
		if got := receive(t, events); !bytes.Equal(got, want) {
			t.Fatalf("received %v, want %v", got, want)
		}
	})

	t.Run("FanOut", func(t *testing.T) {
		t.Parallel()
		bus := newBus(t)
		var subs []<-chan []byte
		for range 3 {
			subs = append(subs, subscribe(t, testCtx(t), bus, "t"))
		}
		for i := range 10 {
			publish(t, bus, "t", strconv.Itoa(i))
		}
		for _, events := range subs {
			for i := range 10 {
				expect(t, events, strconv.Itoa(i))
			}
		}
	})

	t.Run("TopicsAreSeparate", func(t *testing.T) {
		t.Parallel()
		bus := newBus(t)
		a := subscribe(t, testCtx(t), bus, "a")
		b := subscribe(t, testCtx(t), bus, "b")
		publish(t, bus, "b", "for b")
		publish(t, bus, "a", "for a")
		expect(t, a, "for a")
		expect(t, b, "for b")
	})

	t.Run("NothingFromBeforeSubscribe", func(t *testing.T) {
		t.Parallel()
		bus := newBus(t)
		publish(t, bus, "t", "early")
		events := subscribe(t, testCtx(t), bus, "t")
		publish(t, bus, "t", "late")
		expect(t, events, "late")
	})

	t.Run("ChannelClosesWhenContextEnds", func(t *testing.T) {
		t.Parallel()
		bus := newBus(t)
		ctx, cancel := context.WithCancel(testCtx(t))
		gone := subscribe(t, ctx, bus, "t")
		stays := subscribe(t, testCtx(t), bus, "t")
		publish(t, bus, "t", "1")
		expect(t, gone, "1")
		cancel()
		waitClosed(t, gone)

		publish(t, bus, "t", "2")
		expect(t, stays, "1")
		expect(t, stays, "2")

		// The topic works again after its last subscriber left.
		ctx2, cancel2 := context.WithCancel(testCtx(t))
		again := subscribe(t, ctx2, bus, "t")
		cancel2()
		waitClosed(t, again)
		again = subscribe(t, testCtx(t), bus, "t")
		publish(t, bus, "t", "3")
		expect(t, again, "3")
	})

	t.Run("ResubscribeRace", func(t *testing.T) {
		t.Parallel()
		bus := newBus(t)
		// Leave a topic and join it again at once, many times: each new
		// subscription must be active when Subscribe returns. Another
		// topic's subscriber keeps any shared connection open meanwhile.
		subscribe(t, testCtx(t), bus, "other")
		for i := range 20 {
			ctx, cancel := context.WithCancel(testCtx(t))
			events := subscribe(t, ctx, bus, "t")
			publish(t, bus, "t", strconv.Itoa(i))
			expect(t, events, strconv.Itoa(i))
			cancel()
		}
	})

	t.Run("ConcurrentPublishers", func(t *testing.T) {
		t.Parallel()
		bus := newBus(t)
		events := subscribe(t, testCtx(t), bus, "t")
		const publishers, each = 4, 50 // fewer than any buffer: nothing drops
		var wg sync.WaitGroup
		for p := range publishers {
			wg.Go(func() {
				for i := range each {
					if err := bus.Publish(testCtx(t), "t", fmt.Appendf(nil, "%d:%d", p, i)); err != nil {
						t.Errorf("Publish: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		next := make([]int, publishers) // each publisher's events arrive in order
		for range publishers * each {
			var p, i int
			if _, err := fmt.Sscanf(string(receive(t, events)), "%d:%d", &p, &i); err != nil {
				t.Fatal(err)
			}
			if i != next[p] {
				t.Fatalf("publisher %d: got event %d, want %d", p, i, next[p])
			}
			next[p]++
		}
	})

	t.Run("SlowSubscriberIsEnded", func(t *testing.T) {
		t.Parallel()
		bus := newBus(t)
		slow := subscribe(t, testCtx(t), bus, "t") // never read until the end
		fast := subscribe(t, testCtx(t), bus, "t")
		// The fast subscriber keeps up (lockstep) while more events than
		// any buffer go out: neither the publisher nor it may block.
		const n = maxBuffer + 100
		for i := range n {
			publish(t, bus, "t", strconv.Itoa(i))
			expect(t, fast, strconv.Itoa(i))
		}
		// The slow one holds a prefix, in order, then its channel closes
		// (its ctx lives): it was ended, not left to miss events quietly.
		got := 0
		timer := time.After(timeout)
	drain:
		for {
			select {
			case p, ok := <-slow:
				if !ok {
					break drain
				}
				if string(p) != strconv.Itoa(got) {
					t.Fatalf("slow subscriber got %q, want %d", p, got)
				}
				got++
			case <-timer:
				t.Fatalf("slow subscriber not ended after %d of %d events", got, n)
			}
		}
		if got == 0 || got >= n {
			t.Fatalf("slow subscriber holds %d of %d events, want a buffer's worth", got, n)
		}
		if d, ok := bus.(interface{ Dropped() int64 }); ok && d.Dropped() != 1 {
			t.Fatalf("Dropped() = %d, want 1 subscriber", d.Dropped())
		}
		// The topic still works, for the fast one and for newcomers.
		again := subscribe(t, testCtx(t), bus, "t")
		publish(t, bus, "t", "after")
		expect(t, fast, "after")
		expect(t, again, "after")
	})
}

// Kill breaks a bus's connection to its backing service, as a network
// failure or a server restart would.
type Kill func(t *testing.T, bus codecrafter.Bus)

// TestConnectionLoss checks that a bus ends every subscription of a
// connection that dropped (their consumers resync from the store), and
// that subscribing works again afterwards.
func TestConnectionLoss(t *testing.T, newBus NewBus, kill Kill) {
	t.Parallel()
	bus := newBus(t)
	a := subscribe(t, testCtx(t), bus, "a")
	b := subscribe(t, testCtx(t), bus, "b")
	publish(t, bus, "a", "before")
	expect(t, a, "before")

	kill(t, bus)
	waitClosed(t, a)
	waitClosed(t, b)

	again := subscribe(t, testCtx(t), bus, "a")
	publish(t, bus, "a", "after")
	expect(t, again, "after")
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// subscribe subscribes or fails the test.
func subscribe(t *testing.T, ctx context.Context, bus codecrafter.Bus, topic string) <-chan []byte {
	t.Helper()
	events, err := bus.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	return events
}

func publish(t *testing.T, bus codecrafter.Bus, topic, payload string) {
	t.Helper()
	if err := bus.Publish(testCtx(t), topic, []byte(payload)); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

func receive(t *testing.T, events <-chan []byte) []byte {
	t.Helper()
	select {
	case p, ok := <-events:
		if !ok {
			t.Fatal("channel closed, want an event")
		}
		return p
	case <-time.After(timeout):
		t.Fatal("no event")
		return nil
	}
}

func expect(t *testing.T, events <-chan []byte, want string) {
	t.Helper()
	if got := string(receive(t, events)); got != want {
		t.Fatalf("received %q, want %q", got, want)
	}
}

// waitClosed drains events until the channel closes.
func waitClosed(t *testing.T, events <-chan []byte) {
	t.Helper()
	timer := time.After(timeout)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-timer:
			t.Fatal("channel not closed")
		}
	}
}
