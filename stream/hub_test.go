package stream_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/bustest"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type item struct{ Seq int }

// store is a numbered stream in memory: items 1..n; a Read of what is
// after an item below gateBelow waits for gate.
type store struct {
	mu        sync.Mutex
	items     []*item
	gate      chan struct{}
	gateBelow int
	reads     atomic.Int32
}

func (s *store) read(ctx context.Context, after int) ([]*item, bool, error) {
	s.reads.Add(1)
	s.mu.Lock()
	gate := s.gate
	if after >= s.gateBelow {
		gate = nil
	}
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	const page = 10
	s.mu.Lock()
	defer s.mu.Unlock()
	after = max(after, 0)
	if after >= len(s.items) {
		return nil, false, nil
	}
	end := min(after+page, len(s.items))
	out := make([]*item, 0, end-after)
	for _, it := range s.items[after:end] {
		out = append(out, &item{Seq: it.Seq}) // a copy, as a database gives
	}
	return out, end < len(s.items), nil
}

func (s *store) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// countingBus counts subscriptions.
type countingBus struct {
	codecrafter.Bus
	subs atomic.Int32
}

func (b *countingBus) Subscribe(ctx context.Context, topic string) (<-chan []byte, error) {
	b.subs.Add(1)
	return b.Bus.Subscribe(ctx, topic)
}

type env struct {
	inner *inmem.Bus
	flaky *bustest.Flaky
	bus   *countingBus
	store *store
	hub   *stream.Hub[*item]
	tails atomic.Int32
	// onTail, if set, runs after a tail read, before the follower starts.
	onTail func()
}

const key = "k"

func newEnv(t testing.TB, maxPending int) *env {
	t.Helper()
	e := &env{inner: inmem.NewBus(), store: &store{}}
	e.flaky = bustest.NewFlaky(e.inner)
	e.bus = &countingBus{Bus: e.flaky}
	e.hub = stream.NewHub(stream.HubConfig[*item]{
		Source: func(key string) stream.Source[*item] {
			return stream.Source[*item]{
				Name: "test", Log: slog.New(slog.DiscardHandler),
				Seq: func(it *item) int { return it.Seq },
				Decode: func(b []byte) (*item, error) {
					n, err := strconv.Atoi(string(b))
					return &item{Seq: n}, err
				},
				Read:      e.store.read,
				Subscribe: func(ctx context.Context) (<-chan []byte, error) { return e.bus.Subscribe(ctx, key) },
			}
		},
		Tail: func(context.Context, string) (int, error) {
			e.tails.Add(1)
			n := e.store.len()
			if e.onTail != nil {
				e.onTail()
			}
			return n, nil
		},
		MaxPending: maxPending,
	})
	return e
}

// add stores n more items, then publishes each (on the bus under Flaky,
// so that a dropped bus loses them).
func (e *env) add(t testing.TB, n int) {
	t.Helper()
	for range n {
		e.store.mu.Lock()
		seq := len(e.store.items) + 1
		e.store.items = append(e.store.items, &item{Seq: seq})
		e.store.mu.Unlock()
		_ = e.inner.Publish(context.Background(), key, []byte(strconv.Itoa(seq))) // inmem: never fails
	}
}

// rec is a watcher that records what it is given, and checks that end
// comes once, after the last emit.
type rec struct {
	refuseAt int // emit returns false for this seq (0: never)

	mu     sync.Mutex
	items  []*item
	ended  bool
	err    error
	bad    string
	notify chan struct{}
}

func newRec() *rec { return &rec{notify: make(chan struct{}, 1)} }

func (r *rec) emit(it *item) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.poke()
	if r.ended {
		r.bad = "emit after end"
	}
	if it.Seq == r.refuseAt {
		return false
	}
	r.items = append(r.items, it)
	return true
}

func (r *rec) end(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.poke()
	if r.ended {
		r.bad = "end twice"
	}
	r.ended, r.err = true, err
}

func (r *rec) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds of r (under its lock).
func (r *rec) waitFor(t testing.TB, what string, cond func(r *rec) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok, bad := cond(r), r.bad
		r.mu.Unlock()
		if bad != "" {
			t.Fatal(bad)
		}
		if ok {
			return
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("not %s within 10s", what)
		}
	}
}

func (r *rec) last() int {
	if len(r.items) == 0 {
		return 0
	}
	return r.items[len(r.items)-1].Seq
}

// has waits for items (from, to], then checks they came each once, in
// order.
func (r *rec) has(t testing.TB, from, to int) {
	t.Helper()
	r.waitFor(t, fmt.Sprint("up to ", to), func(r *rec) bool { return r.last() >= to || r.ended })
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.items) != to-from {
		t.Fatalf("%d items, want %d (%d to %d); ended %v %v", len(r.items), to-from, from+1, to, r.ended, r.err)
	}
	for i, it := range r.items {
		if it.Seq != from+1+i {
			t.Fatalf("item %d is %d, want %d", i, it.Seq, from+1+i)
		}
	}
}

func (r *rec) ends(t testing.TB, code string) {
	t.Helper()
	r.waitFor(t, "ended", func(r *rec) bool { return r.ended })
	r.mu.Lock()
	defer r.mu.Unlock()
	if code == "" && r.err != nil || code != "" && !codecrafter.IsCode(r.err, code) {
		t.Fatalf("ended with %v, want %q", r.err, code)
	}
}

func (e *env) watch(t testing.TB, ctx context.Context, after int, r *rec) {
	t.Helper()
	if err := e.hub.Watch(ctx, key, after, r.emit, r.end); err != nil {
		t.Fatal(err)
	}
}

// TestHubShares: many watchers share one bus subscription and one tail
// read, and get each item as the same value.
func TestHubShares(t *testing.T) {
	e := newEnv(t, 0)
	e.add(t, 3) // before: not sent to those watching from now on
	var recs []*rec
	for range 100 {
		r := newRec()
		e.watch(t, t.Context(), -1, r)
		recs = append(recs, r)
	}
	e.add(t, 5)
	for _, r := range recs {
		r.has(t, 3, 8)
	}
	for i := range 5 {
		for _, r := range recs[1:] {
			if r.items[i] != recs[0].items[i] {
				t.Fatalf("item %d: watchers got different values", i+4)
			}
		}
	}
	if n := e.bus.subs.Load(); n != 1 {
		t.Errorf("%d bus subscriptions, want 1", n)
	}
	if n := e.tails.Load(); n != 1 {
		t.Errorf("%d tail reads, want 1", n)
	}
}

// TestHubStartMissesNothing: an item stored and published after the first
// watcher's follower read the tail, before it started, is not missed.
func TestHubStartMissesNothing(t *testing.T) {
	e := newEnv(t, 0)
	e.add(t, 2)
	e.onTail = func() { e.add(t, 1) }
	r := newRec()
	e.watch(t, t.Context(), -1, r)
	r.has(t, 2, 3)
}

// TestHubReplaysThenLive: watchers joining with an old after while items
// flow replay the store, then go on live: each item once, in order.
func TestHubReplaysThenLive(t *testing.T) {
	e := newEnv(t, 0)
	e.add(t, 50)
	first := newRec()
	e.watch(t, t.Context(), -1, first)
	type joined struct {
		r     *rec
		after int
	}
	var js []joined
	for i := range 40 { // each while items are added
		added := make(chan struct{})
		go func() {
			defer close(added)
			e.add(t, 10)
		}()
		after := (i * 37) % (e.store.len() + 1)
		r := newRec()
		e.watch(t, t.Context(), after, r)
		js = append(js, joined{r, after})
		<-added
	}
	first.has(t, 50, 450)
	// And while their replay is slower than the flow: live items are held
	// for them until it is done.
	e.store.mu.Lock()
	e.store.gate, e.store.gateBelow = make(chan struct{}), 450
	e.store.mu.Unlock()
	for _, after := range []int{0, 200, 449} {
		r := newRec()
		e.watch(t, t.Context(), after, r)
		js = append(js, joined{r, after})
	}
	const total = 500
	e.add(t, total-450)
	first.has(t, 50, total)
	close(e.store.gate)
	for _, j := range js {
		j.r.has(t, j.after, total)
	}
}

// TestHubDropsSlowWatcher: a watcher whose emit refuses is ended with
// UNAVAILABLE; the others go on.
func TestHubDropsSlowWatcher(t *testing.T) {
	e := newEnv(t, 0)
	slow, other := newRec(), newRec()
	slow.refuseAt = 2
	e.watch(t, t.Context(), -1, slow)
	e.watch(t, t.Context(), -1, other)
	e.add(t, 5)
	other.has(t, 0, 5)
	slow.ends(t, codecrafter.EUNAVAILABLE)
	slow.has(t, 0, 1)
	// A refusal while replaying the store drops it too.
	replaying := newRec()
	replaying.refuseAt = 3
	e.watch(t, t.Context(), 0, replaying)
	replaying.ends(t, codecrafter.EUNAVAILABLE)
	replaying.has(t, 0, 2)
	e.add(t, 1)
	other.has(t, 0, 6)
}

// TestHubBoundsReplayingWatcher: a watcher replaying a slow store while
// more than MaxPending items come live is dropped, not held without end.
func TestHubBoundsReplayingWatcher(t *testing.T) {
	e := newEnv(t, 2)
	e.add(t, 5)
	live := newRec()
	e.watch(t, t.Context(), -1, live)
	e.store.mu.Lock()
	e.store.gate, e.store.gateBelow = make(chan struct{}), 5 // its replay waits
	e.store.mu.Unlock()
	replaying := newRec()
	e.watch(t, t.Context(), 0, replaying)
	e.add(t, 3) // one more than it may hold
	live.has(t, 5, 8)
	close(e.store.gate)
	replaying.ends(t, codecrafter.EUNAVAILABLE)
	replaying.mu.Lock()
	defer replaying.mu.Unlock()
	if len(replaying.items) != 0 {
		t.Fatalf("dropped while replaying, got %d items", len(replaying.items))
	}
}

// TestHubResyncs: when the bus ends the shared subscription and refuses
// new ones for a while, the follower subscribes again and every watcher
// gets what was stored meanwhile from the store.
func TestHubResyncs(t *testing.T) {
	e := newEnv(t, 0)
	a, b := newRec(), newRec()
	e.watch(t, t.Context(), -1, a)
	e.watch(t, t.Context(), -1, b)
	e.add(t, 1)
	a.has(t, 0, 1)
	e.flaky.Drop()
	e.add(t, 3) // lost by the bus
	select {
	case <-e.flaky.Refused:
	case <-time.After(10 * time.Second):
		t.Fatal("no resubscription")
	}
	e.flaky.Up()
	a.has(t, 0, 4)
	b.has(t, 0, 4)
	e.add(t, 1)
	a.has(t, 0, 5)
	b.has(t, 0, 5)
}

// TestHubStopsWithLastWatcher: watchers end (end(nil)) with their ctx;
// the last one leaving stops the follower and its subscription, and the
// next watcher starts a new one.
func TestHubStopsWithLastWatcher(t *testing.T) {
	e := newEnv(t, 0)
	ctx1, cancel1 := context.WithCancel(t.Context())
	ctx2, cancel2 := context.WithCancel(t.Context())
	a, b := newRec(), newRec()
	e.watch(t, ctx1, -1, a)
	e.watch(t, ctx2, -1, b)
	e.add(t, 2)
	b.has(t, 0, 2)
	cancel1()
	a.ends(t, "")
	e.add(t, 1)
	b.has(t, 0, 3)
	cancel2()
	b.ends(t, "")
	goleak.VerifyNone(t)

	// A replaying watcher ends with its ctx too.
	e.store.mu.Lock()
	e.store.gate, e.store.gateBelow = make(chan struct{}), 1
	e.store.mu.Unlock()
	ctx3, cancel3 := context.WithCancel(t.Context())
	c := newRec()
	e.watch(t, ctx3, 0, c)
	cancel3()
	c.ends(t, "")
	goleak.VerifyNone(t)
	if n := e.bus.subs.Load(); n != 2 {
		t.Errorf("%d bus subscriptions, want 2 (one per follower)", n)
	}
}

// TestHubStartFails: a bus that refuses the first subscription is an
// UNAVAILABLE error from Watch, with neither emit nor end called.
func TestHubStartFails(t *testing.T) {
	e := newEnv(t, 0)
	e.flaky.Drop()
	r := newRec()
	err := e.hub.Watch(t.Context(), key, -1, r.emit, r.end)
	if !codecrafter.IsCode(err, codecrafter.EUNAVAILABLE) {
		t.Fatalf("Watch: %v, want UNAVAILABLE", err)
	}
	e.flaky.Up()
	e.watch(t, t.Context(), -1, r) // the failed start was forgotten
	e.add(t, 1)
	r.has(t, 0, 1)
}

// BenchmarkHubFanout delivers one item to 1,000 watchers of one key per
// op (bus publish, one decode, 1,000 emits).
func BenchmarkHubFanout(b *testing.B) {
	const watchers = 1000
	e := newEnv(b, 0)
	var got atomic.Int64
	all := make(chan struct{}, 1)
	for range watchers {
		err := e.hub.Watch(b.Context(), key, -1, func(*item) bool {
			if got.Add(1)%watchers == 0 {
				all <- struct{}{}
			}
			return true
		}, func(error) {})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		e.add(b, 1)
		<-all
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*watchers), "ns/delivery")
}

// BenchmarkFollowersFanout is the same with one Follow, bus subscription
// and channel per watcher (how chat worked before the hub), for
// comparison.
func BenchmarkFollowersFanout(b *testing.B) {
	const watchers = 1000
	e := newEnv(b, 0)
	var got atomic.Int64
	all := make(chan struct{}, 1)
	src := stream.Source[*item]{
		Name: "test", Log: slog.New(slog.DiscardHandler),
		Seq: func(it *item) int { return it.Seq },
		Decode: func(b []byte) (*item, error) {
			n, err := strconv.Atoi(string(b))
			return &item{Seq: n}, err
		},
		Read:      e.store.read,
		Subscribe: func(ctx context.Context) (<-chan []byte, error) { return e.bus.Subscribe(ctx, key) },
	}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(b.Context())
	for range watchers {
		live, err := e.bus.Subscribe(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		out := make(chan *item)
		wg.Add(2)
		go func() { defer wg.Done(); stream.Follow(ctx, src, live, 0, out) }()
		go func() {
			defer wg.Done()
			for {
				select {
				case <-out:
					if got.Add(1)%watchers == 0 {
						all <- struct{}{}
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		e.add(b, 1)
		<-all
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*watchers), "ns/delivery")
	b.StopTimer()
	cancel()
	wg.Wait()
}

// TestHubRecentSparesTheStore: watchers that join a little behind the
// follower (a reconnect storm, resuming with after) get what they missed
// from the follower's recent items, in order and once, without a store
// read each; further behind, they read the store.
func TestHubRecentSparesTheStore(t *testing.T) {
	e := newEnv(t, 0)
	first := newRec()
	e.watch(t, t.Context(), -1, first)
	e.add(t, 10)
	first.has(t, 0, 10)
	reads := e.store.reads.Load()
	var recs []*rec
	for range 50 {
		r := newRec()
		e.watch(t, t.Context(), 4, r)
		recs = append(recs, r)
	}
	e.add(t, 2)
	for _, r := range recs {
		r.has(t, 4, 12)
	}
	if n := e.store.reads.Load() - reads; n != 0 {
		t.Errorf("%d store reads for watchers within the recent items, want 0", n)
	}

	e.add(t, 100) // now item 5 is no longer among the recent ones
	first.has(t, 0, 112)
	late := newRec()
	e.watch(t, t.Context(), 4, late)
	late.has(t, 4, 112)
	if e.store.reads.Load() == reads {
		t.Error("a watcher behind the recent items did not read the store")
	}
}
