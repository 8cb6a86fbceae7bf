package worker_test

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/executions"
	"github.com/codecrafter/codecrafter/executions/exectest"
	"github.com/codecrafter/codecrafter/internal/testenv"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
	"github.com/codecrafter/codecrafter/rabbitmq"
	"github.com/codecrafter/codecrafter/redis"
)

// brokers is a deployment on the real adapters: RabbitMQ, Redis and the
// mongo store; only the sandbox is fake.
type brokers struct {
	*env
	amqpURL string
	opts    rabbitmq.Options
}

func setupBrokers(t *testing.T) *brokers {
	t.Helper()
	amqpURL, redisURL := testenv.AMQPURL(t), testenv.RedisURL(t)
	ctx := testenv.Context(t, 30*time.Second)
	client, err := redis.Open(ctx, redisURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	quiet := slog.New(slog.DiscardHandler)
	b := &brokers{amqpURL: amqpURL, opts: rabbitmq.Options{
		Queue: "test.worker." + codecrafter.NewID(), DeliveryLimit: 3, RetryMax: 500 * time.Millisecond, Logger: quiet,
	}}
	testenv.DeleteQueues(t, amqpURL, b.opts.Queue)
	store := mongotest.Open(t, mongoURI)
	b.env = &env{
		store: store, bus: exectest.NewLossyBus(redis.NewBus(client, "test:"+codecrafter.NewID()+":", quiet)),
		sandbox: exectest.NewSandbox(), log: quiet,
	}
	exectest.AddSession(t, store, "s1", map[string]codecrafter.Role{user: codecrafter.RoleOwner})
	b.svc = executions.New(executions.Config{RecheckInterval: 200 * time.Millisecond}, store, store, b.connect(t), b.bus, exectest.Runtimes{}, quiet, nil)
	return b
}

// connect opens a queue handle, as one process does, closed at cleanup.
func (b *brokers) connect(t *testing.T) *rabbitmq.Queue {
	t.Helper()
	q, err := rabbitmq.New(testenv.Context(t, 30*time.Second), b.amqpURL, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func TestOnRealBrokers(t *testing.T) {
	t.Parallel()
	b := setupBrokers(t)
	ctx := ctxFor(t)
	statuses, err := b.svc.SessionExecutions(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}

	// A runs the job, streams some output and dies (its connection drops).
	x := b.execute(t)
	live, err := b.svc.Output(ctx, x.ID)
	if err != nil {
		t.Fatal(err)
	}
	connA := b.connect(t)
	b.startWorker(t, fastConfig("A"), deps{queue: connA})
	call := exectest.Receive(t, b.sandbox.Calls)
	call.Emit(codecrafter.Stdout, "from A\n")
	for c := (codecrafter.OutputChunk{}); c.Data != "from A\n"; {
		c = exectest.Receive(t, live)
	}
	connA.Close()
	<-call.Killed()

	// The broker hands the job to B, which finishes it.
	b.startWorker(t, fastConfig("B"), deps{queue: b.connect(t)})
	call = exectest.Receive(t, b.sandbox.Calls)
	call.Emit(codecrafter.Stdout, "from B\n")
	call.Return(exectest.Exit(0, "from B\n", ""), nil)
	rest := exectest.Collect(t, live)
	if got := exectest.Text(rest, codecrafter.Stdout); got != "from B\n" {
		t.Fatalf("live output after A died: %q", got)
	}
	done, err := b.store.Execution(ctx, x.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != codecrafter.StatusSucceeded || done.Attempt != 2 || done.WorkerID != "B" || finalChunks(done) != 1 {
		t.Fatalf("got %s attempt %d by %s", done.Status, done.Attempt, done.WorkerID)
	}
	exectest.WantChunks(t, done.Output, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusRunning, codecrafter.StatusSucceeded)

	// A late subscriber gets the whole run, with B's output alone.
	late, err := b.svc.Output(ctx, x.ID)
	if err != nil {
		t.Fatal(err)
	}
	lateChunks := exectest.Collect(t, late)
	exectest.WantChunks(t, lateChunks, codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusRunning, codecrafter.StatusSucceeded)
	if exectest.Text(lateChunks, "") != "from B\n" || done.Stdout != "from B\n" {
		t.Fatalf("late subscriber got %+v, stdout %q", lateChunks, done.Stdout)
	}

	// A cancel reaches B's running run through Redis.
	y := b.execute(t)
	call = exectest.Receive(t, b.sandbox.Calls)
	if _, err := b.svc.Cancel(ctx, y.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-call.Killed():
	case <-time.After(exectest.Timeout):
		t.Fatal("cancel did not reach the worker")
	}
	if got := b.final(t, y.ID); got.Status != codecrafter.StatusCancelled {
		t.Fatalf("cancelled run ended %s", got.Status)
	}

	// Every status change reached the session topic, in order per run.
	want := map[string][]codecrafter.ExecutionStatus{
		x.ID: {codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusRunning, codecrafter.StatusSucceeded},
		y.ID: {codecrafter.StatusQueued, codecrafter.StatusRunning, codecrafter.StatusCancelled},
	}
	got := map[string][]codecrafter.ExecutionStatus{}
	for n := 0; n < 7; n++ {
		ev := exectest.Receive(t, statuses)
		got[ev.ID] = append(got[ev.ID], ev.Status)
	}
	for id, w := range want {
		if !slices.Equal(got[id], w) {
			t.Errorf("session events of %s: %v, want %v", id, got[id], w)
		}
	}
}
