package mongo

import (
	"context"
	"sync"
)

// sessionLocks queues this process's writes to one session behind each
// other. Optimistic concurrency alone makes n racing writers cost O(n²)
// tries: every round all of them read, one wins, the rest write in vain,
// each write taking its turn through the embedded store's one-at-a-time
// proxy (package ferret). Thirty people joining a class at once then took
// longer than any sensible retry bound. Queued, they take n tries; the
// version check still settles races with other processes.
var sessionLocks keyLocks

type lockKey struct {
	db *DB
	id string
}

// keyLocks is a mutex per key; a key's entry lives while someone holds
// or waits for it.
type keyLocks struct {
	mu    sync.Mutex
	locks map[lockKey]*keyLock
}

type keyLock struct {
	ch   chan struct{} // full while held
	refs int           // holders and waiters
}

// lock waits for key's lock until ctx ends; unlock releases it.
func (k *keyLocks) lock(ctx context.Context, key lockKey) (unlock func(), err error) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[lockKey]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; k.put(key, l) }, nil
	case <-ctx.Done():
		k.put(key, l)
		return nil, dbErr(ctx.Err(), "")
	}
}

func (k *keyLocks) put(key lockKey, l *keyLock) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(k.locks, key)
	}
}
