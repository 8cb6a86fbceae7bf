package inmem

import (
	"context"
	"sync"

	"github.com/codecrafter/codecrafter"
)

// DefaultDeliveryLimit is how many times a job is handed out before it is
// dead-lettered, unless QueueOptions says otherwise.
const DefaultDeliveryLimit = 5

// QueueOptions configures NewQueue.
type QueueOptions struct {
	DeliveryLimit int // deliveries before a job is dead-lettered; 0 means DefaultDeliveryLimit
}

var _ codecrafter.Queue = (*Queue)(nil)

// Queue is an in-process job queue with the broker's semantics: at least
// once delivery, redelivery on error, a delivery limit and a dead list.
// Jobs do not survive the process.
//
// A Queue is a handle, like one process's connection to a broker: Open
// gives another handle on the same jobs, and Close drops a handle as if
// its process had crashed (its un-acknowledged jobs go back to the queue
// and its handlers' contexts are cancelled).
type Queue struct {
	jobs *jobs

	life context.Context // ends when the handle is closed
	kill context.CancelFunc

	mu      sync.Mutex
	holding map[*item]struct{} // handed out by this handle, not yet settled
}

// jobs is the state shared by every handle on one queue.
type jobs struct {
	limit int

	mu      sync.Mutex
	ready   []*item
	dead    []*item
	unacked int
	changed chan struct{} // closed and replaced when ready or dead grows
}

type item struct {
	job        codecrafter.Job
	deliveries int
	dead       bool
}

// NewQueue returns an empty queue.
func NewQueue(opts QueueOptions) *Queue {
	if opts.DeliveryLimit <= 0 {
		opts.DeliveryLimit = DefaultDeliveryLimit
	}
	return newHandle(&jobs{limit: opts.DeliveryLimit, changed: make(chan struct{})})
}

func newHandle(j *jobs) *Queue {
	life, kill := context.WithCancel(context.Background())
	return &Queue{jobs: j, life: life, kill: kill, holding: make(map[*item]struct{})}
}

// Open returns another handle on q's jobs.
func (q *Queue) Open() *Queue { return newHandle(q.jobs) }

// Close drops the handle: jobs its handlers hold go back to the queue at
// once (dead-lettered past the limit) and the handlers' contexts end.
func (q *Queue) Close() error {
	q.mu.Lock()
	held := q.holding
	q.holding = map[*item]struct{}{}
	q.kill()
	q.mu.Unlock()
	for it := range held {
		q.jobs.settle(it, false)
	}
	return nil
}

var errClosed = codecrafter.Errorf(codecrafter.EUNAVAILABLE, "job queue closed")

// Enqueue adds job to the queue.
func (q *Queue) Enqueue(_ context.Context, job codecrafter.Job) error {
	if q.life.Err() != nil {
		return errClosed
	}
	q.jobs.put(&item{job: job}, false)
	return nil
}

// Consume hands jobs to handle, at most concurrency at a time, until ctx
// ends or the handle is closed; it returns once its handlers are done.
func (q *Queue) Consume(ctx context.Context, concurrency int, handle func(context.Context, codecrafter.Delivery) error) error {
	if concurrency < 1 {
		return codecrafter.Errorf(codecrafter.EINVALID, "concurrency must be at least 1")
	}
	return q.consume(ctx, concurrency, false, handle)
}

// ConsumeDead hands dead-lettered jobs to handle, one at a time, until ctx
// ends; nil removes a job, an error puts it back on the dead list.
func (q *Queue) ConsumeDead(ctx context.Context, handle func(context.Context, codecrafter.Delivery) error) error {
	return q.consume(ctx, 1, true, handle)
}

func (q *Queue) consume(ctx context.Context, concurrency int, dead bool, handle func(context.Context, codecrafter.Delivery) error) error {
	// Handlers outlive ctx but not the handle.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(q.life, cancel)()

	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, concurrency)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		case <-q.life.Done():
			return errClosed
		}
		it := q.take(ctx, dead)
		if it == nil {
			if q.life.Err() != nil {
				return errClosed
			}
			return nil
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			err := handle(hctx, codecrafter.Delivery{Job: it.job, Redelivered: it.deliveries > 1})
			q.release(it, err == nil)
		}()
	}
}

// take waits for a job and hands it to this handle; nil when ctx ends or
// the handle closes first.
func (q *Queue) take(ctx context.Context, dead bool) *item {
	j := q.jobs
	for {
		j.mu.Lock()
		list := &j.ready
		if dead {
			list = &j.dead
		}
		if len(*list) > 0 {
			it := (*list)[0]
			*list = (*list)[1:]
			it.deliveries++
			j.unacked++
			j.mu.Unlock()

			q.mu.Lock()
			closed := q.life.Err() != nil
			if !closed {
				q.holding[it] = struct{}{}
			}
			q.mu.Unlock()
			if closed {
				j.settle(it, false)
				return nil
			}
			return it
		}
		changed := j.changed
		j.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		case <-q.life.Done():
			return nil
		}
	}
}

// release settles a job this handle still holds; after Close it no longer
// does, as the job went back to the queue then.
func (q *Queue) release(it *item, ack bool) {
	q.mu.Lock()
	_, held := q.holding[it]
	delete(q.holding, it)
	q.mu.Unlock()
	if held {
		q.jobs.settle(it, ack)
	}
}

// settle removes an acknowledged job, or returns it: to the front of its
// list, or to the dead list once it reached the delivery limit.
func (j *jobs) settle(it *item, ack bool) {
	j.mu.Lock()
	j.unacked--
	j.mu.Unlock()
	switch {
	case ack:
	case !it.dead && it.deliveries >= j.limit:
		it.dead, it.deliveries = true, 0
		j.put(it, false)
	default:
		j.put(it, true)
	}
}

func (j *jobs) put(it *item, front bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	list := &j.ready
	if it.dead {
		list = &j.dead
	}
	if front {
		*list = append([]*item{it}, *list...)
	} else {
		*list = append(*list, it)
	}
	close(j.changed)
	j.changed = make(chan struct{})
}

// Stats reports the queue's depth.
func (q *Queue) Stats(context.Context) (codecrafter.QueueStats, error) {
	j := q.jobs
	j.mu.Lock()
	defer j.mu.Unlock()
	return codecrafter.QueueStats{Ready: len(j.ready), Unacked: j.unacked, Dead: len(j.dead)}, nil
}

// Ping fails once the handle is closed.
func (q *Queue) Ping(context.Context) error {
	if q.life.Err() != nil {
		return errClosed
	}
	return nil
}
