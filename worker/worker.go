// Package worker is the queue consumer: it claims queued runs, executes
// them in the sandbox, streams their output to the store and then the bus,
// and writes exactly one final result per run. It also reaps runs whose
// worker vanished and fails dead-lettered jobs, so no run stays QUEUED or
// RUNNING forever.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/events"
	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes a Worker. Zero fields take the defaults.
type Config struct {
	ID          string // names this worker in claims; default host-pid-random
	Concurrency int    // runs at a time; default the number of CPUs
	// ShutdownGrace is how long in-flight runs may finish once Run's ctx
	// ends; then they are killed and their jobs requeued.
	ShutdownGrace time.Duration // 10 s
	// ReaperInterval is how often RUNNING executions are checked for a
	// vanished worker: one running longer than 2 x (its time limit +
	// CompileAllowance) is failed as ERROR. CompileAllowance should cover
	// the sandbox's compile time limit plus container start-up.
	ReaperInterval   time.Duration // 30 s
	CompileAllowance time.Duration // 35 s
	// QueuedTimeout is how long a run may stay QUEUED before the reaper
	// fails it as ERROR (its job was lost, or the queue stayed down).
	QueuedTimeout  time.Duration // 10 min
	StatsInterval  time.Duration // queue depth sampling; 15 s
	FlushInterval  time.Duration // output batching; 30 ms
	FlushBytes     int           // output batching; 16 KiB
	MaxOutputBytes int           // per stream and run; 4 MiB
	// DispatchInterval is how often the dispatcher sends the jobs of runs
	// stored but never queued (see codecrafter.Execution.Unsent).
	DispatchInterval time.Duration // 2 s
	// A job that fails (say, the store is down) is retried in place
	// Retries times, waiting RetryBase, then twice as long each time up
	// to RetryMax, before it goes back to the queue, where each return
	// counts towards the delivery limit. Dead letters whose run cannot be
	// failed are retried with the same waits.
	Retries   int           // 4
	RetryBase time.Duration // 1 s
	RetryMax  time.Duration // 15 s
}

func (c Config) withDefaults() Config {
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), codecrafter.RandomToken(4))
	}
	if c.Concurrency <= 0 {
		c.Concurrency = runtime.NumCPU()
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.ShutdownGrace, 10*time.Second)
	def(&c.ReaperInterval, 30*time.Second)
	def(&c.CompileAllowance, 35*time.Second)
	def(&c.StatsInterval, 15*time.Second)
	def(&c.QueuedTimeout, 10*time.Minute)
	def(&c.DispatchInterval, 2*time.Second)
	def(&c.RetryBase, time.Second)
	def(&c.RetryMax, 15*time.Second)
	if c.Retries < 0 {
		c.Retries = 0
	} else if c.Retries == 0 {
		c.Retries = 4
	}
	def(&c.FlushInterval, 30*time.Millisecond)
	if c.FlushBytes <= 0 {
		c.FlushBytes = 16 << 10
	}
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = 4 << 20
	}
	return c
}

// Why a run's context was cancelled.
var (
	errCancelRequested = errors.New("cancel requested")
	errShutdown        = errors.New("worker shutting down")
	errSuperseded      = errors.New("a newer attempt owns the run")
)

// Worker consumes run jobs.
type Worker struct {
	cfg     Config
	queue   codecrafter.Queue
	store   codecrafter.ExecutionStore
	bus     codecrafter.Bus
	publish events.Publisher
	sandbox codecrafter.Sandbox
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time

	mu        sync.Mutex
	runs      map[*run]struct{} // in flight, for cancel requests
	deferrals map[string]int    // by execution id, see fair.go
	view      pendingView
}

// run is one in-flight attempt.
type run struct {
	id     string
	cancel context.CancelCauseFunc
}

// New returns a Worker. reg may be nil (no metrics registered).
func New(cfg Config, queue codecrafter.Queue, store codecrafter.ExecutionStore, bus codecrafter.Bus,
	sandbox codecrafter.Sandbox, logger *slog.Logger, reg prometheus.Registerer) *Worker {
	cfg = cfg.withDefaults()
	return &Worker{
		cfg: cfg, queue: queue, store: store, bus: bus, publish: events.Publisher{Bus: bus},
		sandbox: sandbox, log: logger.With("worker", cfg.ID), metrics: newMetrics(reg),
		now: time.Now, runs: map[*run]struct{}{}, deferrals: map[string]int{},
	}
}

// ID returns the worker's id, as written in claims.
func (w *Worker) ID() string { return w.cfg.ID }

// Run consumes jobs until ctx ends, then stops taking jobs, gives in-flight
// runs ShutdownGrace to finish, kills the rest (their jobs go back to the
// queue) and returns. It fails only when it cannot start.
func (w *Worker) Run(ctx context.Context) error {
	// life outlasts ctx: cancel requests must reach runs while they drain.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()
	cancels, err := w.bus.Subscribe(life, codecrafter.CancelTopic)
	if err != nil {
		return fmt.Errorf("subscribe to cancel requests: %w", err)
	}
	// hard ends ShutdownGrace after ctx: it kills the runs still going.
	hard, kill := context.WithCancelCause(life)
	defer kill(nil)
	housekeeping, stopHousekeeping := context.WithCancel(ctx)
	defer stopHousekeeping()
	consumed := make(chan struct{})

	var wg sync.WaitGroup
	wg.Go(func() { w.listenCancels(life, cancels) })
	wg.Go(func() { w.reapLoop(housekeeping) })
	wg.Go(func() { w.sampleQueue(housekeeping) })
	wg.Go(func() { w.consumeDead(housekeeping) })
	wg.Go(func() { w.dispatchLoop(housekeeping) })
	wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-consumed:
			return
		}
		w.log.Info("worker stopping: draining in-flight runs", "grace", w.cfg.ShutdownGrace)
		grace := time.NewTimer(w.cfg.ShutdownGrace)
		defer grace.Stop()
		select {
		case <-grace.C:
			kill(errShutdown)
		case <-consumed:
		}
	})

	w.log.Info("worker started", "concurrency", w.cfg.Concurrency)
	w.consume(ctx, hard)
	close(consumed)
	stopHousekeeping()
	endLife()
	wg.Wait()
	w.log.Info("worker stopped")
	return nil
}

// consume takes jobs until ctx ends. A queue failure (say, a broker
// restart) does not stop the worker: it consumes again after a backoff.
func (w *Worker) consume(ctx, hard context.Context) {
	const minBackoff, maxBackoff = time.Second, 30 * time.Second
	backoff := minBackoff
	for {
		began := time.Now()
		err := w.queue.Consume(ctx, w.cfg.Concurrency, func(hctx context.Context, d codecrafter.Delivery) error {
			return w.handle(hctx, hard, d)
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > maxBackoff {
			backoff = minBackoff
		}
		w.log.Error("consuming run jobs failed: retrying", "err", err, "in", backoff)
		if !wait(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listenCancels cancels in-flight runs named on the cancel topic.
func (w *Worker) listenCancels(ctx context.Context, cancels <-chan []byte) {
	for {
		for b := range cancels {
			id, err := events.DecodeCancel(b)
			if err != nil {
				w.log.Warn("bad cancel event", "err", err)
				continue
			}
			w.cancelRuns(id)
		}
		// The channel closed: either we are stopping or the bus dropped us.
		for {
			if !wait(ctx, time.Second) {
				return
			}
			var err error
			if cancels, err = w.bus.Subscribe(ctx, codecrafter.CancelTopic); err == nil {
				break
			}
			w.log.Warn("resubscribe to cancel requests", "err", err)
		}
	}
}

func (w *Worker) cancelRuns(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for r := range w.runs {
		if r.id == id {
			r.cancel(errCancelRequested)
		}
	}
}

func (w *Worker) register(r *run) {
	w.mu.Lock()
	w.runs[r] = struct{}{}
	w.mu.Unlock()
	w.metrics.inFlight.Inc()
}

func (w *Worker) unregister(r *run) {
	w.mu.Lock()
	delete(w.runs, r)
	w.mu.Unlock()
	w.metrics.inFlight.Dec()
}

// retryWait is the wait before retry n (from 1).
func (w *Worker) retryWait(n int) time.Duration {
	d := w.cfg.RetryBase
	for i := 1; i < n && d < w.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, w.cfg.RetryMax)
}

// wait waits d or until ctx ends; it reports whether ctx is still alive.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
