package stream

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/push"
)

// HubConfig says how a Hub follows a key's stream.
type HubConfig[T any] struct {
	// Source returns key's stream; its Subscribe also makes the first
	// subscription of a shared follower.
	Source func(key string) Source[T]
	// Tail returns the number of key's last stored item (0: none), where
	// a shared follower starts.
	Tail func(ctx context.Context, key string) (int, error)
	// MaxPending caps the live items held for a watcher while it replays
	// the store (default DefaultMaxPending); beyond it, it is dropped.
	MaxPending int
}

// DefaultMaxPending is HubConfig.MaxPending's default: at 8 bytes a
// pointer, at most 8 KiB held per replaying watcher.
const DefaultMaxPending = 1024

// Hub runs one follower per key for all of this process's watchers of
// that key, instead of a follower, a bus subscription and a channel per
// watcher: a key costs one goroutine and one subscription, a watcher a
// few words and no goroutine (one only while it replays the store). An
// item is handed to every watcher as the same value, so a transport may
// encode it once. Watchers per key are not capped here: the transport
// caps subscriptions per socket and sockets per user.
type Hub[T any] struct {
	cfg    HubConfig[T]
	mu     sync.Mutex
	shared map[string]*shared[T]
}

// NewHub returns a Hub with no followers.
func NewHub[T any](cfg HubConfig[T]) *Hub[T] {
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	return &Hub[T]{cfg: cfg, shared: map[string]*shared[T]{}}
}

// shared is one key's follower and its watchers.
type shared[T any] struct {
	hub   *Hub[T]
	key   string
	src   Source[T]
	ready chan struct{} // closed once started, or once the start failed

	mu       sync.Mutex
	closed   bool  // no watcher left (or the start failed): being forgotten
	err      error // why the start failed, for those waiting on it
	cancel   context.CancelFunc
	last     int // number of the last item handed out
	watchers []*watcher[T]
	// recent are the last items handed out (at most keepRecent, in
	// order): a watcher joining a little behind (a reconnect with after,
	// many at once after a replica restart) catches up from them instead
	// of each reading the store.
	recent []T
}

// keepRecent is how many of its last items a key's follower keeps.
const keepRecent = 64

type watcher[T any] struct {
	emit func(T) bool
	end  func(error)
	stop func() bool // undoes the AfterFunc on the watcher's ctx

	// Guarded by shared.mu, except that while catching the catch-up
	// goroutine owns last, and it calls end if the watcher ends then.
	idx      int // in shared.watchers
	last     int // number of the last item emitted (or skipped)
	catching bool
	pending  []T // handed out while catching, not emitted yet
	ended    bool
	err      error
	cancel   context.CancelFunc // ends the catch-up's reads
	gone     atomic.Bool        // ended, for the catch-up to see between items
}

// Watch calls emit with each of key's items after number after (-1: after
// the shared follower's position, i.e. from now on), in order, each once,
// with no gap: first those it replays from the store, when after is behind
// the shared follower, then live ones. emit is called on the shared
// follower's goroutine (or on the replaying one), must not block nor call
// the hub, and returns false when the watcher cannot keep up: it is then
// dropped (EUNAVAILABLE) without holding up the others. end is called once,
// after the last emit: nil when ctx ended, else the error that ended the
// watcher. The first watcher of a key subscribes to the bus, then reads the
// tail; an error then (EUNAVAILABLE when the bus refuses) is returned, and
// neither emit nor end is called.
func (h *Hub[T]) Watch(ctx context.Context, key string, after int, emit func(T) bool, end func(error)) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h.mu.Lock()
		sh := h.shared[key]
		starter := sh == nil
		if starter {
			sh = &shared[T]{hub: h, key: key, ready: make(chan struct{})}
			h.shared[key] = sh
		}
		h.mu.Unlock()
		if starter {
			tail, err := sh.start(ctx)
			if err != nil {
				return err
			}
			if after < 0 {
				// From the tail it read, not from wherever the follower
				// got since: an item stored meanwhile came after it joined.
				after = tail
			}
		} else {
			select {
			case <-sh.ready:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		sh.mu.Lock()
		if sh.closed { // its last watcher left, or its start failed
			err := sh.err
			sh.mu.Unlock()
			h.forget(sh)
			if err != nil {
				return err
			}
			continue // a fresh one
		}
		ended := sh.addLocked(ctx, after, emit, end)
		sh.mu.Unlock()
		if ended != nil {
			ended.end(ended.err)
		}
		return nil
	}
}

// forget removes sh, once closed, so that the next Watch starts afresh.
func (h *Hub[T]) forget(sh *shared[T]) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shared[sh.key] == sh {
		delete(h.shared, sh.key)
	}
}

// start subscribes, then reads the tail (so that no item falls between
// the two), then runs the follower from it; it returns the tail.
func (sh *shared[T]) start(ctx context.Context) (int, error) {
	defer close(sh.ready)
	sh.src = sh.hub.cfg.Source(sh.key)
	// The follower serves many watchers: none of their contexts.
	fctx, cancel := context.WithCancel(context.Background())
	live, err := sh.src.Subscribe(fctx)
	if err != nil {
		err = codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "live "+sh.src.Name+" is unavailable; try again shortly")
	} else {
		var last int
		if last, err = sh.hub.cfg.Tail(ctx, sh.key); err == nil {
			sh.mu.Lock()
			sh.last, sh.cancel = last, cancel
			sh.mu.Unlock()
			go sh.follow(fctx, live, last)
			return last, nil
		}
	}
	cancel()
	sh.mu.Lock()
	sh.closed = true
	if ctx.Err() == nil { // not only the starter's leaving: others get it too
		sh.err = err
	}
	sh.mu.Unlock()
	sh.hub.forget(sh)
	return 0, err
}

func (sh *shared[T]) follow(ctx context.Context, live <-chan []byte, last int) {
	f := follower[T]{src: sh.src, last: last, emit: sh.fanout}
	f.follow(ctx, live)
}

// fanout hands item to every watcher: emitted to the live ones, held for
// those replaying the store.
func (sh *shared[T]) fanout(ctx context.Context, item T) bool {
	seq := sh.src.Seq(item)
	var ended []*watcher[T]
	sh.mu.Lock()
	sh.last = seq
	if len(sh.recent) == keepRecent {
		sh.recent = append(sh.recent[:0], sh.recent[1:]...)
	}
	sh.recent = append(sh.recent, item)
	// Backwards, so that a removal (which moves the last one into its
	// place) leaves none unvisited.
	for i := len(sh.watchers) - 1; i >= 0; i-- {
		w := sh.watchers[i]
		switch {
		case w.catching:
			if len(w.pending) < sh.hub.cfg.MaxPending {
				w.pending = append(w.pending, item)
			} else {
				sh.dropLocked(w, sh.fellBehind()) // its catch-up goroutine ends it
			}
		case seq <= w.last: // it started (after) above the follower
		case w.emit(item):
			w.last = seq
		default:
			sh.dropLocked(w, sh.fellBehind())
			ended = append(ended, w)
		}
	}
	closed := sh.closed
	sh.mu.Unlock()
	for _, w := range ended {
		w.end(w.err)
	}
	if closed {
		sh.hub.forget(sh)
	}
	return ctx.Err() == nil
}

func (sh *shared[T]) fellBehind() error {
	return codecrafter.Errorf(codecrafter.EUNAVAILABLE, "%s: fell behind; subscribe again after the last item received", sh.src.Name)
}

// addLocked registers a watcher; sh.mu is held. It returns the watcher
// when it already ended (it could not take the recent items it was
// behind): the caller calls its end once sh.mu is released.
func (sh *shared[T]) addLocked(ctx context.Context, after int, emit func(T) bool, end func(error)) *watcher[T] {
	w := &watcher[T]{emit: emit, end: end, last: after, idx: len(sh.watchers)}
	if after < 0 {
		w.last = sh.last
	}
	sh.watchers = append(sh.watchers, w)
	w.stop = push.OnEnd(ctx, func() { sh.leave(w) })
	if w.last < sh.last && len(sh.recent) > 0 && sh.src.Seq(sh.recent[0]) <= w.last+1 {
		for _, item := range sh.recent { // what it missed is all here
			seq := sh.src.Seq(item)
			if seq <= w.last {
				continue
			}
			if !w.emit(item) {
				sh.dropLocked(w, sh.fellBehind())
				return w
			}
			w.last = seq
		}
	}
	if w.last < sh.last {
		w.catching = true
		// Ended by dropLocked, which leave runs when ctx ends: no
		// registration on ctx, which would outlast the catch-up.
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		w.cancel = cancel
		go sh.catchUp(cctx, w, sh.last)
	}
	return nil
}

// dropLocked ends w with err (nil: its ctx ended); sh.mu is held. The
// caller calls w.end unless w is catching up: its goroutine does.
func (sh *shared[T]) dropLocked(w *watcher[T], err error) {
	w.ended, w.err = true, err
	w.gone.Store(true)
	w.pending = nil
	w.stop()
	if w.cancel != nil {
		w.cancel()
	}
	last := len(sh.watchers) - 1
	sh.watchers[w.idx] = sh.watchers[last]
	sh.watchers[w.idx].idx = w.idx
	sh.watchers[last] = nil
	sh.watchers = sh.watchers[:last]
	if last == 0 { // the last watcher left: stop following
		sh.closed = true
		sh.cancel()
	}
}

// leave ends w when its ctx ends.
func (sh *shared[T]) leave(w *watcher[T]) {
	sh.mu.Lock()
	if w.ended {
		sh.mu.Unlock()
		return
	}
	sh.dropLocked(w, nil)
	callEnd, closed := !w.catching, sh.closed
	sh.mu.Unlock()
	if callEnd {
		w.end(nil)
	}
	if closed {
		sh.hub.forget(sh)
	}
}

// catchUp replays (w.last, upTo] from the store for a watcher that joined
// behind the shared follower, then emits what the follower handed out
// meanwhile and makes it live.
func (sh *shared[T]) catchUp(ctx context.Context, w *watcher[T], upTo int) {
	ok := sh.replay(ctx, w, upTo)
	sh.mu.Lock()
	if ok && !w.ended {
		for _, item := range w.pending {
			seq := sh.src.Seq(item)
			if seq <= w.last {
				continue
			}
			if ok = w.emit(item); !ok {
				break
			}
			w.last = seq
		}
	}
	w.pending = nil
	switch {
	case w.ended: // by its ctx, or for holding too much
	case ok:
		w.catching = false
		w.cancel()
		w.cancel = nil
	case ctx.Err() != nil: // its ctx ended (leave has not run yet)
		sh.dropLocked(w, nil)
	default: // emit said it cannot keep up
		sh.dropLocked(w, sh.fellBehind())
	}
	ended, err, closed := w.ended, w.err, sh.closed
	sh.mu.Unlock()
	if ended {
		w.end(err)
	}
	if closed {
		sh.hub.forget(sh)
	}
}

// replay emits the stored items in (w.last, upTo], retrying a failing
// store; false when w ended or emit refused.
func (sh *shared[T]) replay(ctx context.Context, w *watcher[T], upTo int) bool {
	wait := resubscribeMin
	for w.last < upTo {
		items, more, err := sh.src.Read(ctx, w.last)
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			sh.src.Log.WarnContext(ctx, sh.src.Name+" replay; retrying", "err", err)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return false
			}
			wait = min(2*wait, resubscribeMax)
			continue
		}
		for _, item := range items {
			seq := sh.src.Seq(item)
			switch {
			case seq <= w.last:
				continue
			case seq > upTo: // the follower handed it out: pending has it
				return true
			case w.gone.Load() || !w.emit(item):
				return false
			}
			w.last = seq
		}
		if !more {
			return true
		}
	}
	return true
}
