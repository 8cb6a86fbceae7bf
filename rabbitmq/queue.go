// Package rabbitmq is the job Queue over RabbitMQ: a durable quorum queue
// with a delivery limit and a dead-letter queue, persistent messages,
// publisher confirms, manual acks and reconnection with backoff.
package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/codecrafter/codecrafter"
)

// Defaults for Options.
const (
	DefaultQueue          = "codecrafter.jobs"
	DefaultDeliveryLimit  = 5
	DefaultConfirmTimeout = 10 * time.Second
	DefaultRetryMin       = 100 * time.Millisecond
	DefaultRetryMax       = 3 * time.Second
)

// Options configures New. Zero values take the defaults.
type Options struct {
	Queue          string        // queue name; dead letters go to Queue+".dead"
	DeliveryLimit  int           // deliveries of a job before it is dead-lettered
	ConfirmTimeout time.Duration // how long Enqueue waits for the broker's confirm
	RetryMin       time.Duration // first wait before redialing a lost broker
	RetryMax       time.Duration // longest wait between redials
	Logger         *slog.Logger  // nil: discard
}

var _ codecrafter.Queue = (*Queue)(nil)

// Queue is a codecrafter.Queue on RabbitMQ. Publishing and consuming use
// separate connections (flow control on one must not stall the other);
// both redial a lost broker with backoff.
//
// The queue is a quorum queue (replicated, fsynced before confirms) with
// x-delivery-limit, dead-lettering at least once to a quorum queue named
// Queue+".dead". Declaring an existing queue with other arguments fails:
// changing DeliveryLimit means deleting the queue (or using a policy).
type Queue struct {
	name, dead     string
	confirmTimeout time.Duration
	retry          func(failures int) time.Duration
	log            *slog.Logger
	pub, sub       *link
}

// New connects to the broker at url and declares the queues. It fails at
// once when the broker cannot be reached; later losses are retried.
func New(ctx context.Context, url string, opts Options) (*Queue, error) {
	if opts.Queue == "" {
		opts.Queue = DefaultQueue
	}
	if opts.DeliveryLimit <= 0 {
		opts.DeliveryLimit = DefaultDeliveryLimit
	}
	if opts.ConfirmTimeout <= 0 {
		opts.ConfirmTimeout = DefaultConfirmTimeout
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultRetryMin
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(DefaultRetryMax, opts.RetryMin)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	q := &Queue{
		name:           opts.Queue,
		dead:           opts.Queue + ".dead",
		confirmTimeout: opts.ConfirmTimeout,
		retry:          backoff(opts.RetryMin, opts.RetryMax),
		log:            opts.Logger.With("queue", opts.Queue),
	}
	setup := func(ch *amqp.Channel) error { return q.declare(ch, opts.DeliveryLimit) }
	newLink := func(name string, confirm bool) *link {
		return &link{
			url: url, name: name, log: q.log, confirm: confirm, setup: setup,
			backoff: q.retry, dialing: make(chan struct{}, 1),
		}
	}
	q.pub = newLink("codecrafter-publish", true)
	q.sub = newLink("codecrafter-consume", false)
	if _, _, err := q.pub.get(ctx, false); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

// declare creates the queues, or checks they exist as configured.
func (q *Queue) declare(ch *amqp.Channel, deliveryLimit int) error {
	if _, err := ch.QueueDeclare(q.dead, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeQuorum,
	}); err != nil {
		return fmt.Errorf("declaring %s: %w", q.dead, err)
	}
	_, err := ch.QueueDeclare(q.name, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeQuorum,
		// The broker counts returns, not deliveries: limit-1 returns
		// means limit deliveries.
		"x-delivery-limit":          deliveryLimit - 1,
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": q.dead,
		"x-dead-letter-strategy":    "at-least-once",
		amqp.QueueOverflowArg:       amqp.QueueOverflowRejectPublish, // required by at-least-once
	})
	if err != nil {
		return fmt.Errorf("declaring %s: %w", q.name, err)
	}
	return nil
}

// Enqueue publishes job persistently and returns once the broker confirmed
// it. While the broker is unreachable it retries until ctx ends; a job
// whose confirm was lost with the connection is published again, so a
// job may arrive twice (the queue is at least once anyway).
func (q *Queue) Enqueue(ctx context.Context, job codecrafter.Job) error {
	body, err := json.Marshal(job)
	if err != nil {
		return codecrafter.Wrap(err, codecrafter.EINTERNAL, "encoding job")
	}
	msg := amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		ContentType:  "application/json",
		MessageId:    job.ExecutionID,
		Timestamp:    time.Now(),
		Body:         body,
	}
	for attempt := 1; ; attempt++ {
		_, ch, err := q.pub.get(ctx, true)
		if err != nil {
			return err
		}
		retry, err := q.publish(ctx, ch, msg)
		if !retry {
			return err
		}
		q.log.Debug("publish lost with the connection; retrying", "attempt", attempt, "err", err)
		select {
		case <-time.After(q.retry(attempt)):
		case <-ctx.Done():
			return unavailable(err)
		}
	}
}

// publish sends msg on ch and waits for its confirm; retry says whether
// the failure was the channel's, so the job should be published again.
func (q *Queue) publish(ctx context.Context, ch *amqp.Channel, msg amqp.Publishing) (retry bool, err error) {
	confirm, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q.name, false, false, msg)
	if err != nil {
		return ctx.Err() == nil, unavailable(err)
	}
	timer := time.NewTimer(q.confirmTimeout)
	defer timer.Stop()
	select {
	case <-confirm.Done():
	case <-timer.C:
		return false, codecrafter.Errorf(codecrafter.EUNAVAILABLE, "job queue did not confirm the job in time")
	case <-ctx.Done():
		return false, unavailable(ctx.Err())
	}
	switch {
	case confirm.Acked():
		return false, nil
	case ch.IsClosed(): // the library nacks what was in flight when the channel closed
		return true, unavailable(amqp.ErrClosed)
	default:
		return false, codecrafter.Errorf(codecrafter.EUNAVAILABLE, "job queue refused the job")
	}
}

// Stats counts ready jobs in the queue and in the dead-letter queue; the
// broker does not tell un-acknowledged ones over AMQP (Unacked is -1).
func (q *Queue) Stats(ctx context.Context) (codecrafter.QueueStats, error) {
	_, ch, err := q.sub.get(ctx, false)
	if err != nil {
		return codecrafter.QueueStats{}, err
	}
	ready, err := ch.QueueDeclarePassive(q.name, true, false, false, false, nil)
	if err != nil {
		return codecrafter.QueueStats{}, unavailable(err)
	}
	dead, err := ch.QueueDeclarePassive(q.dead, true, false, false, false, nil)
	if err != nil {
		return codecrafter.QueueStats{}, unavailable(err)
	}
	return codecrafter.QueueStats{Ready: ready.Messages, Unacked: -1, Dead: dead.Messages}, nil
}

// Ping checks that the broker answers and the queue exists.
func (q *Queue) Ping(ctx context.Context) error {
	_, ch, err := q.pub.get(ctx, false)
	if err != nil {
		return err
	}
	if _, err := ch.QueueDeclarePassive(q.name, true, false, false, false, nil); err != nil {
		return unavailable(err)
	}
	return nil
}

// Close closes the connections. Running Consume calls cancel their
// handlers' contexts (the broker hands their jobs out again) and return.
func (q *Queue) Close() error {
	return errors.Join(q.pub.close(), q.sub.close())
}

// unavailable translates a broker or connection error.
func unavailable(err error) error {
	return codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "job queue unavailable")
}
