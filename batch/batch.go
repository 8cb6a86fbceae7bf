// Package batch commits requests in groups, per key: the requests that
// arrive while a key's write is in flight go together in its next write.
// A hot session's edits or chat messages then cost one store write per
// group instead of one each, and writers of one key never contend.
package batch

import "sync"

// Queues holds a queue per key; the first request of an idle key starts a
// writer goroutine that calls commit with up to max requests at a time,
// in arrival order, until its queue is empty.
type Queues[R any] struct {
	max    int
	commit func(key string, batch []R)
	queues sync.Map // key -> *queue[R]
}

type queue[R any] struct {
	mu      sync.Mutex
	pending []R
	busy    bool // a writer is draining pending
	dead    bool // drained and dropped from Queues.queues
}

// New returns queues whose writer calls commit with batches of at most max
// requests. commit answers its requests itself.
func New[R any](max int, commit func(key string, batch []R)) *Queues[R] {
	return &Queues[R]{max: max, commit: commit}
}

// Add queues r under key and starts a writer when none is draining it.
func (g *Queues[R]) Add(key string, r R) {
	for {
		v, _ := g.queues.LoadOrStore(key, &queue[R]{})
		q := v.(*queue[R])
		q.mu.Lock()
		if q.dead { // its writer just dropped it: take a new one
			q.mu.Unlock()
			continue
		}
		q.pending = append(q.pending, r)
		start := !q.busy
		q.busy = true
		q.mu.Unlock()
		if start {
			go g.drain(key, q)
		}
		return
	}
}

// Waiting returns how many of key's requests wait for its writer (not
// counting a batch being written).
func (g *Queues[R]) Waiting(key string) int {
	v, ok := g.queues.Load(key)
	if !ok {
		return 0
	}
	q := v.(*queue[R])
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// drain commits q's requests, a batch at a time, until none is left; an
// idle key holds nothing.
func (g *Queues[R]) drain(key string, q *queue[R]) {
	for {
		q.mu.Lock()
		n := min(len(q.pending), g.max)
		if n == 0 {
			q.busy, q.dead = false, true
			g.queues.CompareAndDelete(key, q)
			q.pending = nil
			q.mu.Unlock()
			return
		}
		batch := q.pending[:n:n]
		q.pending = q.pending[n:]
		q.mu.Unlock()
		g.commit(key, batch)
	}
}
