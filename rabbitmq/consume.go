package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/codecrafter/codecrafter"
)

type handler = func(context.Context, codecrafter.Delivery) error

// Consume hands jobs to handle, at most concurrency at a time (the
// channel's prefetch), until ctx ends. It survives broker restarts: when
// the connection is lost it cancels the running handlers' contexts (their
// jobs go back to the queue), waits for them and consumes again once the
// broker is back. It returns nil after ctx ends, or an error once the
// Queue is closed.
func (q *Queue) Consume(ctx context.Context, concurrency int, handle handler) error {
	if concurrency < 1 {
		return codecrafter.Errorf(codecrafter.EINVALID, "concurrency must be at least 1")
	}
	return q.consume(ctx, q.name, concurrency, handle)
}

// ConsumeDead hands dead-lettered jobs to handle, one at a time, until ctx
// ends; nil acknowledges a job, an error returns it to the dead-letter
// queue (which has no delivery limit).
func (q *Queue) ConsumeDead(ctx context.Context, handle handler) error {
	return q.consume(ctx, q.dead, 1, handle)
}

func (q *Queue) consume(ctx context.Context, queue string, concurrency int, handle handler) error {
	for failures := 0; ; {
		conn, _, err := q.sub.get(ctx, true)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err // closed
		}
		handled, err := q.session(ctx, conn, queue, concurrency, handle)
		if ctx.Err() != nil {
			return nil
		}
		q.log.Warn("consumer lost its channel; consuming again", "from", queue, "err", err)
		// A channel that fails at once again and again (say the queue was
		// deleted) is retried with backoff.
		if handled {
			failures = 0
		}
		failures++
		select {
		case <-time.After(q.retry(failures)):
		case <-ctx.Done():
			return nil
		}
	}
}

var consumerSeq atomic.Uint64

// session consumes on one channel of conn until ctx ends (then it stops
// taking jobs, waits for running handlers and returns nil) or the channel
// is lost (then it cancels the handlers, waits for them and returns why).
// handled says whether any job was received.
func (q *Queue) session(ctx context.Context, conn *amqp.Connection, queue string, concurrency int, handle handler) (handled bool, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, err
	}
	defer ch.Close()
	lost := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Qos(concurrency, 0, false); err != nil {
		return false, err
	}
	tag := fmt.Sprintf("codecrafter-%d", consumerSeq.Add(1))
	deliveries, err := ch.Consume(queue, tag, false, false, false, false, nil)
	if err != nil {
		return false, err
	}

	// Handlers outlive ctx, but not the channel: once it is gone their
	// jobs cannot be acknowledged and the broker hands them out again.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var running sync.WaitGroup
	defer running.Wait()

	for {
		select {
		case d, ok := <-deliveries:
			if !ok { // the channel closed, or the broker cancelled the consumer
				cancel()
				return handled, errors.New("deliveries stopped")
			}
			handled = true
			running.Go(func() { q.handle(hctx, d, handle) })
		case err := <-lost:
			cancel()
			if err == nil {
				return handled, amqp.ErrClosed
			}
			return handled, err
		case <-ctx.Done():
			// Stop deliveries and return the ones already received. Not
			// waiting for the broker's answer keeps a stuck queue from
			// blocking; deliveries still on the wire go back to the queue
			// when the channel closes.
			if err := ch.Cancel(tag, true); err == nil {
				for d := range deliveries {
					d.Nack(false, true)
				}
			}
			// Let the handlers finish, unless the channel goes first.
			finished := make(chan struct{})
			go func() {
				running.Wait()
				close(finished)
			}()
			select {
			case <-finished:
			case <-lost:
				cancel()
			}
			return handled, nil
		}
	}
}

// handle runs handle on d and acknowledges it, or returns it to the queue
// on error (the broker counts it towards the delivery limit).
func (q *Queue) handle(ctx context.Context, d amqp.Delivery, handle handler) {
	var job codecrafter.Job
	if err := json.Unmarshal(d.Body, &job); err != nil {
		q.log.Error("malformed job; dead-lettering it", "body", string(d.Body), "err", err)
		d.Reject(false)
		return
	}
	err := handle(ctx, codecrafter.Delivery{Job: job, Redelivered: d.Redelivered})
	if err == nil {
		err = d.Ack(false)
	} else {
		err = d.Nack(false, true)
	}
	if err != nil {
		q.log.Warn("cannot settle job; the broker will hand it out again", "job", job.ExecutionID, "err", err)
	}
}
