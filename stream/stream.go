// Package stream follows a numbered stream: items stored with numbers from
// 1 and no gaps (chat messages, edit revisions), whose bus events are only
// a doorbell. A follower sends each item once, in order: what the store
// holds after its start, then live events, holding an early event briefly
// for a reordered predecessor, reading the store on a gap, subscribing
// again when the bus ends its subscription, and retrying a store that
// fails. The store is the truth. Follow runs one follower for one
// reader; a Hub runs one per key for all of a process's watchers.
package stream

import (
	"context"
	"log/slog"
	"time"
)

// Source is one stream.
type Source[T any] struct {
	Name string // for logs
	Log  *slog.Logger
	// Seq is an item's number.
	Seq func(T) int
	// Decode parses a bus event.
	Decode func([]byte) (T, error)
	// Read returns stored items after seq, in order (items at or before it
	// are skipped); more says there may be further ones to read at once.
	Read func(ctx context.Context, after int) (items []T, more bool, err error)
	// Subscribe subscribes to the bus again after it ended a subscription.
	Subscribe func(ctx context.Context) (<-chan []byte, error)
	// Live, when set, is called with each item sent from a live event.
	Live func(T)
}

// Concurrent writers can reach the bus out of order: an event ahead of the
// next one expected is held for up to reorderWait (at most maxEarly of
// them) for the ones between to arrive, before the store is read; without
// it every follower of the stream reads the store at once.
const (
	reorderWait    = 100 * time.Millisecond
	maxEarly       = 64
	resubscribeMin = 50 * time.Millisecond
	resubscribeMax = 5 * time.Second
)

// Follow sends the items after last to out until ctx ends. live is the
// caller's subscription, made before it read where to start, so that no
// item falls between the two.
func Follow[T any](ctx context.Context, src Source[T], live <-chan []byte, last int, out chan<- T) {
	f := follower[T]{src: src, last: last, emit: func(ctx context.Context, item T) bool {
		select {
		case out <- item:
			return true
		case <-ctx.Done():
			return false
		}
	}}
	f.follow(ctx, live)
}

type follower[T any] struct {
	src  Source[T]
	last int // number of the last item sent (or skipped: before the start)
	// emit hands an item on; false when ctx ended first.
	emit func(ctx context.Context, item T) bool
}

func (f *follower[T]) follow(ctx context.Context, live <-chan []byte) {
	early := map[int]T{}
	gap := time.NewTimer(time.Hour)
	gap.Stop()
	defer gap.Stop()
	waiting := false
	wait := func(on bool) {
		switch {
		case on && !waiting:
			gap.Reset(reorderWait)
		case !on && waiting:
			gap.Stop()
		}
		waiting = on
	}
	// catchUp sends what the store has; when the store fails it tries
	// again shortly, since no later event may come to trigger it.
	catchUp := func() bool {
		clear(early) // the store has them
		wait(false)
		err := f.catchUp(ctx)
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			f.src.Log.WarnContext(ctx, f.src.Name+" catch-up; retrying", "err", err)
			wait(true)
		}
		return true
	}
	if !catchUp() { // what came after the start
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-gap.C:
			waiting = false
			if !catchUp() {
				return
			}
		case b, ok := <-live:
			if !ok {
				if live = f.resubscribe(ctx); live == nil || !catchUp() {
					return
				}
				continue
			}
			item, err := f.src.Decode(b)
			if err != nil {
				f.src.Log.WarnContext(ctx, "bad "+f.src.Name+" event", "err", err)
				continue
			}
			switch seq := f.src.Seq(item); {
			case seq <= f.last: // already sent (read from the store)
			case seq == f.last+1:
				for { // item, then any held that follow it
					if f.src.Live != nil {
						f.src.Live(item)
					}
					if !f.send(ctx, item) {
						return
					}
					delete(early, f.last)
					if item, ok = early[f.last+1]; !ok {
						break
					}
				}
				wait(len(early) > 0)
			case len(early) < maxEarly:
				early[seq] = item
				wait(true)
			default: // too far behind for a late arrival: the store has them
				if !catchUp() {
					return
				}
			}
		}
	}
}

// resubscribe subscribes again, retrying with backoff; nil when ctx ended
// first. Its caller catches up from the store, which has whatever the bus
// lost meanwhile.
func (f *follower[T]) resubscribe(ctx context.Context) <-chan []byte {
	wait := resubscribeMin
	for ctx.Err() == nil {
		live, err := f.src.Subscribe(ctx)
		if err == nil {
			return live
		}
		f.src.Log.WarnContext(ctx, f.src.Name+" resubscribe", "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		wait = min(2*wait, resubscribeMax)
	}
	return nil
}

// catchUp sends what the store holds after the last item sent.
func (f *follower[T]) catchUp(ctx context.Context) error {
	for {
		items, more, err := f.src.Read(ctx, f.last)
		if err != nil {
			return err
		}
		for _, item := range items {
			if f.src.Seq(item) <= f.last {
				continue
			}
			if !f.send(ctx, item) {
				return ctx.Err()
			}
		}
		if !more {
			return nil
		}
	}
}

func (f *follower[T]) send(ctx context.Context, item T) bool {
	if !f.emit(ctx, item) {
		return false
	}
	f.last = f.src.Seq(item)
	return true
}
