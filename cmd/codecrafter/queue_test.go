package main

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/gqltest"
	"github.com/codecrafter/codecrafter/internal/testenv"
)

const (
	queueQ       = `query($id: ID!) { execution(id: $id) { id status queuePosition estimatedStartMs startedAt } }`
	queueOutputQ = `subscription($id: ID!) { executionOutput(executionId: $id) { seq status queuePosition estimatedStartMs } }`
	queueSessQ   = `subscription($s: ID!) { sessionExecutions(sessionId: $s) { id status queuePosition estimatedStartMs } }`
)

// enqueue runs execute, asking for the run's place.
func enqueue(t *testing.T, c *gqltest.Client, in map[string]any) queuedRun {
	t.Helper()
	var out struct{ Execute queuedRun }
	c.Do(t, `mutation($in: ExecuteInput!) { execute(input: $in) { id status queuePosition estimatedStartMs startedAt } }`, map[string]any{"in": in}, &out)
	return out.Execute
}

type queuedRun struct {
	ID               string
	Status           string
	QueuePosition    *int
	EstimatedStartMs *int
	StartedAt        *time.Time
}

// TestQueuePositionAndFairness fills a worker of one slot with a long
// run of alice's, queues three more of hers and then one of bob's: bob's
// is next (position 0) although queued last, hers follow (1, 2, 3), on
// the execution, on executionOutput and on sessionExecutions, each with an
// estimate; once the slot frees, bob's run starts before all of hers. Under
// the in-process queue and RabbitMQ.
func TestQueuePositionAndFairness(t *testing.T) {
	t.Parallel()
	for _, broker := range []string{"in-process", "rabbitmq"} {
		t.Run(broker, func(t *testing.T) {
			t.Parallel()
			testQueue(t, queueApp(t, broker == "rabbitmq"))
		})
	}
}

// queueApp serves the embedded store with a worker of one slot, on the
// in-process queue or on RabbitMQ.
func queueApp(t *testing.T, rabbit bool) *testApp {
	t.Helper()
	opts := func(c *config) { c.WorkerConcurrency = 1 }
	if !rabbit {
		return startWorkerApp(t, opts)
	}
	amqpURL, redisURL := testenv.AMQPURL(t), testenv.RedisURL(t)
	testenv.Docker(t)
	id := codecrafter.RandomToken(6)
	queue := "cmdtest.jobs." + id
	testenv.DeleteQueues(t, amqpURL, queue)
	return startApp(t, opts, func(c *config) {
		c.RedisURL, c.AMQPURL, c.QueueName = redisURL, amqpURL, queue
		c.RedisPrefix = "cmdtest:" + id + ":"
		c.SandboxInstance = "cmdtest-" + id
		c.Worker = "on"
	})
}

func testQueue(t *testing.T, ta *testApp) {
	alice, bob := ta.register(t, "alice"), ta.register(t, "bob")
	session := createSession(t, alice, "queue").ID
	statuses := alice.Subscribe(t, queueSessQ, map[string]any{"s": session})

	blocker := execute(t, alice.Client, map[string]any{"language": "python", "sessionId": session, "timeLimitMs": 30000,
		"code": "import time\nprint('holding the slot', flush=True)\ntime.sleep(28)\n"})
	waitRun(t, alice.Client, blocker.ID, func(r queuedRun) bool { return r.Status == "RUNNING" }, "the blocker running")

	// execute's own answer has the run's place: runs this replica stores
	// are placed among the cached ones without waiting for the next read.
	// (That read may be up to a QueueRefresh old and still see the blocker
	// queued: one more ahead, or one fewer than the answer before.)
	var hers []string
	for i := range 3 {
		r := enqueue(t, alice.Client, map[string]any{"language": "python", "sessionId": session, "code": "print('alice')"})
		if r.Status != "QUEUED" || r.QueuePosition == nil || *r.QueuePosition < i || *r.QueuePosition > i+1 || r.EstimatedStartMs == nil {
			t.Errorf("execute's answer for her run %d: %+v (position %s), want QUEUED at %d or %d", i, r, ptrStr(r.QueuePosition), i, i+1)
		}
		hers = append(hers, r.ID)
	}
	hisRun := enqueue(t, bob.Client, map[string]any{"language": "python", "code": "print('bob')"})
	if hisRun.QueuePosition == nil || *hisRun.QueuePosition != 0 {
		t.Errorf("execute's answer for bob's run: %+v, want position 0 (fewer runs outstanding)", hisRun)
	}
	his := hisRun.ID

	// Positions settle within a refresh of the store read.
	want := map[string]int{his: 0, hers[0]: 1, hers[1]: 2, hers[2]: 3}
	for id, pos := range want {
		c := alice.Client
		if id == his {
			c = bob.Client
		}
		r := waitRun(t, c, id, func(r queuedRun) bool { return r.QueuePosition != nil && *r.QueuePosition == pos }, "queue position")
		if r.Status != "QUEUED" || r.EstimatedStartMs == nil || *r.EstimatedStartMs <= 0 {
			t.Errorf("run at position %d: %+v", pos, r)
		}
	}
	// The last one's estimate is the largest.
	last := waitRun(t, alice.Client, hers[2], func(queuedRun) bool { return true }, "")
	first := waitRun(t, bob.Client, his, func(queuedRun) bool { return true }, "")
	if *last.EstimatedStartMs <= *first.EstimatedStartMs {
		t.Errorf("estimates: position 3 %d ms, position 0 %d ms", *last.EstimatedStartMs, *first.EstimatedStartMs)
	}

	// executionOutput: the QUEUED status carries the place.
	out := alice.Subscribe(t, queueOutputQ, map[string]any{"id": hers[2]})
	ev := nextEvent(t, out)
	var first3 struct{ ExecutionOutput queuedRun }
	ev.Decode(t, &first3)
	if o := first3.ExecutionOutput; o.Status != "QUEUED" || o.QueuePosition == nil || *o.QueuePosition != 3 || o.EstimatedStartMs == nil {
		t.Errorf("first executionOutput event: %+v", o)
	}
	// sessionExecutions: each of her runs' first event has a place; her
	// last run comes with its settled one.
	seen := map[string]bool{}
	for {
		var ev struct{ SessionExecutions queuedRun }
		nextEvent(t, statuses).Decode(t, &ev)
		e := ev.SessionExecutions
		t.Logf("sessionExecutions: %s %s %v", e.ID, e.Status, ptrStr(e.QueuePosition))
		if slices.Contains(hers, e.ID) && !seen[e.ID] {
			seen[e.ID] = true
			if e.Status != "QUEUED" || e.QueuePosition == nil {
				t.Errorf("first sessionExecutions event of %s: %+v, want QUEUED with a place", e.ID, e)
			}
		}
		if e.ID == hers[2] && e.QueuePosition != nil && *e.QueuePosition == 3 {
			break
		}
	}

	// Free the slot: bob's run goes first, then hers; her last run's
	// output subscription sees its place fall (never rise) until it runs.
	alice.Do(t, cancelQ, map[string]any{"id": blocker.ID}, nil)
	prev := 3
	for {
		var ev struct{ ExecutionOutput queuedRun }
		nextEvent(t, out).Decode(t, &ev)
		o := ev.ExecutionOutput
		if o.Status != "QUEUED" {
			break
		}
		if o.QueuePosition == nil || *o.QueuePosition > prev {
			t.Errorf("place went from %d to %v", prev, o.QueuePosition)
		} else {
			prev = *o.QueuePosition
		}
	}
	checkRun(t, collectOutput(t, bob.Client, his), "SUCCEEDED")
	bobs := waitRun(t, bob.Client, his, func(queuedRun) bool { return true }, "")
	for _, id := range hers {
		checkRun(t, collectOutput(t, alice.Client, id), "SUCCEEDED")
		r := waitRun(t, alice.Client, id, func(queuedRun) bool { return true }, "")
		if r.QueuePosition != nil || r.EstimatedStartMs != nil {
			t.Errorf("finished run still has a place: %+v", r)
		}
		if !bobs.StartedAt.Before(*r.StartedAt) {
			t.Errorf("bob's run started at %v, after alice's %s at %v", bobs.StartedAt, id, r.StartedAt)
		}
	}
}

// waitRun polls a run until ok holds (the queue read is refreshed every
// 500 ms: there is no event to wait on for a query).
func waitRun(t *testing.T, c *gqltest.Client, id string, ok func(queuedRun) bool, what string) queuedRun {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var out struct{ Execution queuedRun }
		c.Do(t, queueQ, map[string]any{"id": id}, &out)
		if ok(out.Execution) {
			return out.Execution
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: no %s within 60 s: %+v", id, what, out.Execution)
		}
		<-time.After(50 * time.Millisecond)
	}
}

func nextEvent(t *testing.T, s *gqltest.Subscription) *gqltest.Response {
	t.Helper()
	r, ok := s.Next(t, time.Minute)
	if !ok {
		t.Fatal("subscription ended")
	}
	if len(r.Errors) > 0 {
		t.Fatalf("event errors: %+v", r.Errors)
	}
	return r
}

func ptrStr(p *int) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}
