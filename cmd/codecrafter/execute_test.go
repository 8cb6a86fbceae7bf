package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/gqltest"
	"github.com/codecrafter/codecrafter/internal/testenv"
)

const (
	executeQ = `mutation($in: ExecuteInput!) { execute(input: $in) { id status sessionId language } }`
	execQ    = `query($id: ID!) { execution(id: $id) { id status exitCode stdout stderr compileOutput durationMs stdin sessionId language requestedBy { id } startedAt finishedAt } }`
	outputQ  = `subscription($id: ID!) { executionOutput(executionId: $id) { executionId seq stream data status } }`
	sessExQ  = `subscription($s: ID!) { sessionExecutions(sessionId: $s) { id status } }`
	cancelQ  = `mutation($id: ID!) { cancelExecution(id: $id) { id status } }`
)

type execOut struct {
	ID, Status, Language string
	SessionID            *string
	ExitCode             *int
	Stdout, Stderr       string
	CompileOutput        *string
	DurationMs           *int
	Stdin                *string
	RequestedBy          struct{ ID string }
	StartedAt            *time.Time
	FinishedAt           *time.Time
}

type outputEvent struct {
	ExecutionID string
	Seq         int
	Stream      *string
	Data        *string
	Status      string
}

// startWorkerApp serves the embedded default with its in-process worker
// on the real Docker engine.
func startWorkerApp(t testing.TB, opts ...func(*config)) *testApp {
	t.Helper()
	testenv.Docker(t)
	return startApp(t, append([]func(*config){func(c *config) {
		c.Worker = "on"
		c.SandboxInstance = "cmdtest-" + codecrafter.RandomToken(6)
	}}, opts...)...)
}

func execute(t testing.TB, c *gqltest.Client, in map[string]any) execOut {
	t.Helper()
	var out struct{ Execute execOut }
	c.Do(t, executeQ, map[string]any{"in": in}, &out)
	return out.Execute
}

// collectOutput subscribes to a run's output and returns every event until
// the subscription completes.
func collectOutput(t testing.TB, c *gqltest.Client, id string) []outputEvent {
	t.Helper()
	var events []outputEvent
	c.Subscribe(t, outputQ, map[string]any{"id": id}).Collect(t, 90*time.Second, func(r *gqltest.Response) {
		if len(r.Errors) > 0 {
			t.Fatalf("output event errors: %+v", r.Errors)
		}
		var ev struct{ ExecutionOutput outputEvent }
		r.Decode(t, &ev)
		events = append(events, ev.ExecutionOutput)
	})
	return events
}

// checkRun asserts a whole run's events: seqs rising from 1 (a retried
// run's replay skips the seqs of its superseded output), exactly one
// final status, last; and returns the stdout of the last attempt (what
// follows the last RUNNING status, which starts an attempt).
func checkRun(t testing.TB, events []outputEvent, final string) string {
	t.Helper()
	var stdout strings.Builder
	finals := 0
	for i, ev := range events {
		if (i == 0 && ev.Seq != 1) || (i > 0 && ev.Seq <= events[i-1].Seq) {
			t.Fatalf("event %d has seq %d: %+v", i, ev.Seq, events)
		}
		if ev.Stream == nil && ev.Status == "RUNNING" {
			stdout.Reset() // a new attempt replaces the output so far
		}
		if ev.Stream != nil && *ev.Stream == "STDOUT" {
			stdout.WriteString(*ev.Data)
		}
		if ev.Stream == nil && codecrafter.ExecutionStatus(ev.Status).Final() {
			finals++
		}
	}
	if len(events) == 0 || events[len(events)-1].Status != final || finals != 1 {
		t.Fatalf("want exactly one final %s, last: %+v (all: %+v)", final, events[len(events)-1:], events)
	}
	return stdout.String()
}

func TestExecuteInSessionStreamsToEveryone(t *testing.T) {
	t.Parallel()
	ta := startWorkerApp(t)
	owner, ed, viewer := ta.register(t, "own"), ta.register(t, "ed"), ta.register(t, "view")
	s := createSession(t, owner, "run together")
	join(t, ed, *s.InviteCode)
	join(t, viewer, *s.InviteCode)
	owner.Do(t, roleQ, map[string]any{"s": s.ID, "u": viewer.ID, "r": "VIEWER"}, nil)

	statuses := viewer.Subscribe(t, sessExQ, map[string]any{"s": s.ID})
	// Runs until the status stream is live, so that it sees every state
	// of the run below.
	warmups := map[string]bool{}
	statuses.Live(t, func() {
		warmups[execute(t, ed.Client, map[string]any{"language": "py", "code": "pass", "sessionId": s.ID}).ID] = true
	})
	code := "import sys\nname = sys.stdin.readline().strip()\nfor i in range(3):\n    print(f'hello {name} {i}', flush=True)\nprint('oops', file=sys.stderr)\n"
	run := execute(t, ed.Client, map[string]any{"language": "py", "code": code, "stdin": "crafters\n", "sessionId": s.ID})
	if run.Status != "QUEUED" || run.Language != "python" || run.SessionID == nil || *run.SessionID != s.ID {
		t.Fatalf("execute = %+v", run)
	}

	// The owner watches live; the viewer too.
	live := make(chan []outputEvent, 1)
	go func() { live <- collectOutput(t, owner.Client, run.ID) }()
	viewerEvents := collectOutput(t, viewer.Client, run.ID)
	want := "hello crafters 0\nhello crafters 1\nhello crafters 2\n"
	if got := checkRun(t, viewerEvents, "SUCCEEDED"); got != want {
		t.Errorf("viewer saw stdout %q, want %q", got, want)
	}
	if got := checkRun(t, <-live, "SUCCEEDED"); got != want {
		t.Errorf("owner saw stdout %q", got)
	}
	// A subscriber after the end sees the whole run, then completion.
	late := collectOutput(t, ed.Client, run.ID)
	if got := checkRun(t, late, "SUCCEEDED"); got != want || len(late) != len(viewerEvents) {
		t.Errorf("late subscriber saw %d events, stdout %q; live saw %d", len(late), got, len(viewerEvents))
	}

	var got struct{ Execution execOut }
	viewer.Do(t, execQ, map[string]any{"id": run.ID}, &got)
	e := got.Execution
	if e.Status != "SUCCEEDED" || e.ExitCode == nil || *e.ExitCode != 0 || e.Stdout != want || e.Stderr != "oops\n" ||
		e.DurationMs == nil || e.StartedAt == nil || e.FinishedAt == nil || e.RequestedBy.ID != ed.ID || e.Stdin == nil {
		t.Errorf("execution = %+v", e)
	}

	// The session's status stream saw the run go through its states.
	seen := map[string]bool{}
	for !seen["SUCCEEDED"] {
		r, ok := statuses.Next(t, 30*time.Second)
		if !ok {
			t.Fatal("sessionExecutions ended")
		}
		var ev struct{ SessionExecutions struct{ ID, Status string } }
		r.Decode(t, &ev)
		if ev.SessionExecutions.ID == run.ID {
			seen[ev.SessionExecutions.Status] = true
		}
	}
	if !seen["RUNNING"] {
		t.Errorf("sessionExecutions statuses %v: no RUNNING", seen)
	}

	var list struct{ Executions []struct{ ID string } }
	viewer.Do(t, `query($s: ID!) { executions(sessionId: $s, limit: 5) { id } }`, map[string]any{"s": s.ID}, &list)
	if len(list.Executions) != 1+len(warmups) || !slices.ContainsFunc(list.Executions, func(e struct{ ID string }) bool { return e.ID == run.ID }) {
		t.Errorf("executions = %+v, want %s and the %d warm-ups", list.Executions, run.ID, len(warmups))
	}
	// Outsiders see nothing of it.
	stranger := ta.register(t, "stranger")
	stranger.Fail(t, codecrafter.ENOTFOUND, execQ, map[string]any{"id": run.ID})
	if r, ok := stranger.Subscribe(t, outputQ, map[string]any{"id": run.ID}).Next(t, 10*time.Second); !ok || r.Code() != codecrafter.ENOTFOUND {
		t.Errorf("stranger's subscription got %+v, want a NOT_FOUND error", r)
	}
}

func TestExecuteOutcomes(t *testing.T) {
	t.Parallel()
	ta := startWorkerApp(t)
	u := ta.register(t, "runner")
	for _, tc := range []struct {
		name, lang, code, status string
		exit                     int
		check                    func(t *testing.T, e execOut)
	}{
		{"exit code", "bash", "echo out; exit 3", "FAILED", 3, nil},
		{"compile error", "c", "int main( { return 0; }", "COMPILE_ERROR", -1, func(t *testing.T, e execOut) {
			if e.CompileOutput == nil || !strings.Contains(*e.CompileOutput, "error") {
				t.Errorf("compileOutput = %v", e.CompileOutput)
			}
		}},
		{"timeout", "python", "while True: pass", "TIMED_OUT", -1, nil},
		{"memory", "python", "x = bytearray(512 << 20)\nprint(len(x))", "MEMORY_LIMIT", -1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run := execute(t, u.Client, map[string]any{"language": tc.lang, "code": tc.code, "timeLimitMs": 2000, "memoryLimitMb": 128})
			checkRun(t, collectOutput(t, u.Client, run.ID), tc.status)
			var got struct{ Execution execOut }
			u.Do(t, execQ, map[string]any{"id": run.ID}, &got)
			if got.Execution.Status != tc.status {
				t.Errorf("status %s, want %s", got.Execution.Status, tc.status)
			}
			if tc.exit >= 0 && (got.Execution.ExitCode == nil || *got.Execution.ExitCode != tc.exit) {
				t.Errorf("exitCode = %v, want %d", got.Execution.ExitCode, tc.exit)
			}
			if tc.check != nil {
				tc.check(t, got.Execution)
			}
		})
	}
}

func TestExecuteRejectsBadInput(t *testing.T) {
	t.Parallel()
	ta := startApp(t) // validation happens before any worker sees it
	u := ta.register(t, "bad")
	for _, tc := range []struct {
		name    string
		in      map[string]any
		code    string
		mention string
	}{
		{"unknown language", map[string]any{"language": "cobol", "code": "x"}, codecrafter.EINVALID, "language"},
		{"empty code", map[string]any{"language": "python", "code": ""}, codecrafter.EINVALID, "code"},
		{"code too big", map[string]any{"language": "python", "code": strings.Repeat("#", 64<<10+1)}, codecrafter.EINVALID, "code"},
		{"time limit over max", map[string]any{"language": "python", "code": "x", "timeLimitMs": 31000}, codecrafter.EINVALID, "timeLimitMs"},
		{"negative memory", map[string]any{"language": "python", "code": "x", "memoryLimitMb": -1}, codecrafter.EINVALID, "memoryLimitMb"},
		{"memory over max", map[string]any{"language": "python", "code": "x", "memoryLimitMb": 4096}, codecrafter.EINVALID, "memoryLimitMb"},
		{"memory below the engine's minimum", map[string]any{"language": "python", "code": "x", "memoryLimitMb": 5}, codecrafter.EINVALID, "memoryLimitMb: at least 6"},
		{"unknown session", map[string]any{"language": "python", "code": "x", "sessionId": "000000000000000000000000"}, codecrafter.ENOTFOUND, "session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := u.Fail(t, tc.code, executeQ, map[string]any{"in": tc.in})
			if !strings.Contains(e.Message, tc.mention) {
				t.Errorf("message %q does not mention %q", e.Message, tc.mention)
			}
		})
	}
	// Huge stdin is refused before queueing; the body limit stops it first
	// when it is bigger than a request may be.
	r := u.Raw(t, executeQ, map[string]any{"in": map[string]any{"language": "python", "code": "x", "stdin": strings.Repeat("i", 1<<20+1)}})
	if r.Code() != codecrafter.EINVALID {
		t.Errorf("huge stdin: code %q (HTTP %d), want BAD_USER_INPUT", r.Code(), r.Status)
	}
	ta.client().Fail(t, codecrafter.EUNAUTHENTICATED, executeQ, map[string]any{"in": map[string]any{"language": "python", "code": "x"}})
	var list struct{ Executions []struct{ ID string } }
	s := createSession(t, u, "empty")
	u.Do(t, `query($s: ID!) { executions(sessionId: $s) { id } }`, map[string]any{"s": s.ID}, &list)
	if len(list.Executions) != 0 {
		t.Errorf("rejected runs were stored: %+v", list.Executions)
	}
}

// A user past the cap of queued plus running runs is RATE_LIMITED, with
// retryAfterMs.
func TestExecuteActiveRunsCap(t *testing.T) {
	t.Parallel()
	ta := startApp(t, func(c *config) { c.Worker, c.MaxActiveRuns = "off", 2 }) // nothing runs: the runs stay queued
	u := ta.register(t, "eager")
	for range 2 {
		execute(t, u.Client, map[string]any{"language": "python", "code": "print(1)"})
	}
	r := u.Raw(t, executeQ, map[string]any{"in": map[string]any{"language": "python", "code": "print(1)"}})
	if r.Code() != codecrafter.ERATELIMITED || len(r.Errors) == 0 || r.Errors[0].Extensions["retryAfterMs"] == nil {
		t.Fatalf("third run: %+v, want RATE_LIMITED with retryAfterMs", r.Errors)
	}
	other := ta.register(t, "other")
	execute(t, other.Client, map[string]any{"language": "python", "code": "print(1)"})
}

func TestCancelQueuedAndRunning(t *testing.T) {
	t.Parallel()
	ta := startWorkerApp(t, func(c *config) { c.WorkerConcurrency = 1 })
	u := ta.register(t, "canceller")
	long := "import time\nprint('started', flush=True)\ntime.sleep(60)\n"
	first := execute(t, u.Client, map[string]any{"language": "python", "code": long, "timeLimitMs": 30000})
	sub := u.Subscribe(t, outputQ, map[string]any{"id": first.ID})
	for { // wait until it prints: it is running
		r, ok := sub.Next(t, 60*time.Second)
		if !ok {
			t.Fatal("output ended early")
		}
		var ev struct{ ExecutionOutput outputEvent }
		r.Decode(t, &ev)
		if ev.ExecutionOutput.Data != nil && strings.Contains(*ev.ExecutionOutput.Data, "started") {
			break
		}
	}
	// The only worker slot is busy, so this one waits in the queue.
	second := execute(t, u.Client, map[string]any{"language": "python", "code": "print('never')"})
	var c struct{ CancelExecution execOut }
	u.Do(t, cancelQ, map[string]any{"id": second.ID}, &c)
	if c.CancelExecution.Status != "CANCELLED" {
		t.Errorf("cancel queued: status %s", c.CancelExecution.Status)
	}
	began := time.Now()
	u.Do(t, cancelQ, map[string]any{"id": first.ID}, &c)
	if err := sub.Err(t, 15*time.Second); err != nil {
		t.Fatalf("output of the cancelled run: %v", err)
	}
	t.Logf("running run cancelled in %v", time.Since(began))
	var got struct{ Execution execOut }
	u.Do(t, execQ, map[string]any{"id": first.ID}, &got)
	if got.Execution.Status != "CANCELLED" || got.Execution.Stdout != "started\n" {
		t.Errorf("cancelled running run = %+v", got.Execution)
	}
	// The queued one never ran: its whole history is QUEUED then CANCELLED.
	events := collectOutput(t, u.Client, second.ID)
	if len(events) != 2 || events[0].Status != "QUEUED" || events[1].Status != "CANCELLED" {
		t.Errorf("cancelled queued run's events: %+v", events)
	}
	// Cancelling again changes nothing.
	u.Do(t, cancelQ, map[string]any{"id": second.ID}, &c)
	if c.CancelExecution.Status != "CANCELLED" {
		t.Errorf("second cancel: %s", c.CancelExecution.Status)
	}
}
