package codecrafter

import (
	"context"
	"strings"
	"time"
)

// ExecutionStatus is where a run is; the contract's enum values.
type ExecutionStatus string

const (
	StatusQueued       ExecutionStatus = "QUEUED"
	StatusRunning      ExecutionStatus = "RUNNING"
	StatusSucceeded    ExecutionStatus = "SUCCEEDED"
	StatusFailed       ExecutionStatus = "FAILED"
	StatusCompileError ExecutionStatus = "COMPILE_ERROR"
	StatusTimedOut     ExecutionStatus = "TIMED_OUT"
	StatusMemoryLimit  ExecutionStatus = "MEMORY_LIMIT"
	StatusOutputLimit  ExecutionStatus = "OUTPUT_LIMIT"
	StatusCancelled    ExecutionStatus = "CANCELLED"
	StatusError        ExecutionStatus = "ERROR"
)

// Final reports whether s is an end state.
func (s ExecutionStatus) Final() bool { return s != StatusQueued && s != StatusRunning && s != "" }

// OutputStream names a program's output stream.
type OutputStream string

const (
	Stdout OutputStream = "STDOUT"
	Stderr OutputStream = "STDERR"
)

// OutputChunk is one event of a run, numbered from 1 by Seq: a piece of
// output (Stream and Data set) or a status change (Stream empty). Every
// claim of a run adds a RUNNING status change: the k-th one starts attempt
// k, whose output replaces what earlier attempts wrote (see CurrentOutput).
type OutputChunk struct {
	Seq    int
	Stream OutputStream // "" for a status change
	Data   string
	Status ExecutionStatus // the run's status when the chunk was made
}

// Execution is one run of some code.
type Execution struct {
	ID        string
	SessionID string // "" for a private run
	// Revision is the session revision whose code this run ran: set when
	// the run took the session's code, or sent the code of its current
	// revision; nil otherwise (a private run, or code that was not any
	// revision's).
	Revision      *int
	UserID        string // who asked for it
	Language      string
	Code          string
	Stdin         string
	TimeLimit     time.Duration
	MemoryLimitMB int

	Status        ExecutionStatus
	ExitCode      *int
	Stdout        string // final values; while running, see Output
	Stderr        string
	CompileOutput *string
	Duration      *time.Duration
	CreatedAt     time.Time
	StartedAt     *time.Time
	FinishedAt    *time.Time

	// Run bookkeeping.
	Attempt         int // claims so far; a newer claim supersedes older workers
	WorkerID        string
	CancelRequested bool
	Output          []OutputChunk // every chunk so far, by Seq

	// The outbox: a run is stored Unsent and Unsent is cleared once the
	// queue confirmed its job. A dispatcher sends the QUEUED runs still
	// Unsent once DispatchAt passed, so a crash or a queue outage between
	// storing and queueing loses no run. DispatchAt is a lease: whoever
	// sends the job moves it ahead first (see LeaseDispatch).
	Unsent     bool
	DispatchAt time.Time
}

// CurrentOutput returns chunks without the output of superseded attempts:
// the data chunks before the last RUNNING status change (the latest
// claim). Status changes stay, so Seq numbers keep increasing but may
// skip the output a retry replaced.
func CurrentOutput(chunks []OutputChunk) []OutputChunk {
	claim := -1
	for i, c := range chunks {
		if c.Stream == "" && c.Status == StatusRunning {
			claim = i
		}
	}
	if claim < 0 {
		return chunks
	}
	out := make([]OutputChunk, 0, len(chunks))
	for i, c := range chunks {
		if c.Stream == "" || i > claim {
			out = append(out, c)
		}
	}
	return out
}

// NextSeq returns the Seq the next chunk of e gets.
func (e *Execution) NextSeq() int {
	if n := len(e.Output); n > 0 {
		return e.Output[n-1].Seq + 1
	}
	return 1
}

// Result is what a finished run wrote.
type Result struct {
	Status        ExecutionStatus
	ExitCode      *int
	Stdout        string
	Stderr        string
	CompileOutput *string
	Duration      time.Duration
	FinishedAt    time.Time
}

// ExecutionStore persists executions and their output.
type ExecutionStore interface {
	// CreateExecution stores e (QUEUED, with its first status chunk).
	CreateExecution(ctx context.Context, e *Execution) error
	// Execution returns the execution with id, with all its output chunks;
	// NOT_FOUND when there is none.
	Execution(ctx context.Context, id string) (*Execution, error)
	// ListExecutions returns a session's executions newest first, without
	// their output chunks.
	ListExecutions(ctx context.Context, sessionID string, limit int) ([]*Execution, error)
	// ClaimExecution starts a new attempt of a QUEUED or RUNNING execution
	// for workerID: status RUNNING, Attempt+1, StartedAt now, and appends
	// chunk (a RUNNING status change; its Seq is set here). A final
	// execution gives CONFLICT, and so does one whose Attempt is past
	// ifAttemptAtMost (unless that is AnyAttempt): a duplicate job must not
	// supersede the attempt another job started.
	ClaimExecution(ctx context.Context, id, workerID string, now time.Time, chunk OutputChunk, ifAttemptAtMost int) (*Execution, error)
	// AppendOutput adds chunk to a RUNNING execution if attempt is still
	// the current one and chunk.Seq is the next number; otherwise CONFLICT.
	AppendOutput(ctx context.Context, id string, attempt int, chunk OutputChunk) error
	// FinishExecution writes r and the final status chunk if attempt is
	// still current and the run not final; otherwise CONFLICT.
	FinishExecution(ctx context.Context, id string, attempt int, r Result, chunk OutputChunk) (*Execution, error)
	// CancelQueued ends a QUEUED execution as CANCELLED with chunk (its
	// Seq set here); CONFLICT when it is no longer queued.
	CancelQueued(ctx context.Context, id string, now time.Time, chunk OutputChunk) (*Execution, error)
	// RequestCancel flags a RUNNING execution for cancellation; CONFLICT
	// when it is not running.
	RequestCancel(ctx context.Context, id string) (*Execution, error)
	// StuckExecutions returns RUNNING executions started before the time.
	StuckExecutions(ctx context.Context, startedBefore time.Time) ([]*Execution, error)
	// PendingExecutions returns every QUEUED or RUNNING execution, oldest
	// first, without output chunks (to requeue jobs an in-process queue
	// lost in a restart, dispatch unsent runs, reap stuck queued ones).
	PendingExecutions(ctx context.Context) ([]*Execution, error)
	// LeaseDispatch takes the right to send the job of a QUEUED, Unsent
	// execution whose DispatchAt is not after now, moving DispatchAt to
	// until; CONFLICT when it is sent, no longer queued or leased. The
	// holder of a lease ending at t gives it back with now = t.
	LeaseDispatch(ctx context.Context, id string, now, until time.Time) error
	// UnsentExecutions returns the QUEUED executions still Unsent, oldest
	// first, without output chunks: the dispatcher's outbox.
	UnsentExecutions(ctx context.Context) ([]*Execution, error)
	// MarkSent clears Unsent once the execution's job is queued.
	MarkSent(ctx context.Context, id string) error
	// CountActive counts the user's QUEUED and RUNNING executions.
	CountActive(ctx context.Context, userID string) (int, error)
}

// Job is a queued request to run an execution.
type Job struct {
	ExecutionID string `json:"executionId"`
	// Attempt is the execution's attempt when the job was queued: 0 for a
	// new run, the killed attempt's for a run requeued on shutdown. A job
	// handed out for the first time claims the run only while its Attempt
	// is still at most this (a redelivered one claims it whatever it is:
	// its worker died), so a duplicate job does not run it twice.
	Attempt int `json:"attempt,omitempty"`
}

// AnyAttempt lets ClaimExecution claim whatever the execution's attempt.
const AnyAttempt = -1

// Delivery is a job handed to a consumer.
type Delivery struct {
	Job         Job
	Redelivered bool // the broker handed it out before
}

// Queue carries jobs from the API to workers, at least once.
type Queue interface {
	// Enqueue stores job durably before it returns.
	Enqueue(ctx context.Context, job Job) error
	// Consume hands jobs to handle, at most concurrency at a time, until
	// ctx ends; then it stops taking jobs, waits for running handlers and
	// returns. A nil error from handle acknowledges the job; an error
	// requeues it, and a job delivered more than the delivery limit goes
	// to the dead-letter queue. The ctx given to handle is not cancelled
	// when Consume's is, but when the job can no longer be acknowledged
	// (lost connection): the broker hands it out again.
	Consume(ctx context.Context, concurrency int, handle func(context.Context, Delivery) error) error
	// ConsumeDead hands dead-lettered jobs to handle until ctx ends. A nil
	// error acknowledges the job; an error puts it back in the dead-letter
	// queue (the handler should back off: nothing limits these retries).
	ConsumeDead(ctx context.Context, handle func(context.Context, Delivery) error) error
	// Stats reports the queue's depth.
	Stats(ctx context.Context) (QueueStats, error)
	// Ping checks the queue is reachable.
	Ping(ctx context.Context) error
}

// QueueStats counts jobs by state.
type QueueStats struct {
	Ready   int // waiting for a consumer
	Unacked int // handed out, not yet acknowledged (-1 when unknown)
	Dead    int // in the dead-letter queue
}

// Bus fans events out to subscribers on every server replica. It is only
// a notification: the store is the truth, and events that are stored carry
// their order (a message's seq, a chunk's Seq) so a consumer tells a gap
// from a duplicate.
//
// Delivery is at most once, in publish order per topic. A subscriber the
// bus cannot keep up with is ended, never silently skipped: its channel
// closes while its ctx still lives, after the events it holds, when it
// falls its bounded buffer behind, or when the bus's connection drops (then
// every subscription of that connection ends). The publisher and other
// subscribers never wait for a slow one. A consumer whose channel closed
// early resyncs: it subscribes again and re-reads the store, or, with no
// store behind its events, ends its stream with UNAVAILABLE so its client
// subscribes again.
type Bus interface {
	// Publish sends payload to the topic's current subscribers.
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe returns once the subscription is active: events published
	// after it returns reach the channel, which closes when ctx ends or
	// the bus ends the subscription (see above).
	Subscribe(ctx context.Context, topic string) (<-chan []byte, error)
	// Ping checks the bus is reachable.
	Ping(ctx context.Context) error
}

// A BatchPublisher sends several events of one topic in one go, in order
// (Redis: one round trip for all). PublishAll uses it when it can.
type BatchPublisher interface {
	PublishBatch(ctx context.Context, topic string, payloads [][]byte) error
}

// PublishAll publishes payloads to topic in order: in one batch when the
// bus is a BatchPublisher, else one by one (stopping at the first error).
func PublishAll(ctx context.Context, bus Bus, topic string, payloads [][]byte) error {
	if bp, ok := bus.(BatchPublisher); ok {
		return bp.PublishBatch(ctx, topic, payloads)
	}
	for _, p := range payloads {
		if err := bus.Publish(ctx, topic, p); err != nil {
			return err
		}
	}
	return nil
}

// BusObserver is told of a bus's traffic (metrics). Its methods are called
// on the publishing and delivering paths: they must be cheap and not block.
type BusObserver interface {
	Published(topic string) // an event went out from this replica
	Delivered(topic string) // an event reached a subscriber's channel
	Dropped(topic string)   // a subscriber fell behind and was ended
}

// NopBusObserver observes nothing.
type NopBusObserver struct{}

func (NopBusObserver) Published(string) {}
func (NopBusObserver) Delivered(string) {}
func (NopBusObserver) Dropped(string)   {}

// BusKind is a topic's kind, the part before ':' ("chat", "execution").
func BusKind(topic string) string {
	kind, _, _ := strings.Cut(topic, ":")
	return kind
}

// Bus topics.
func ExecutionTopic(executionID string) string       { return "execution:" + executionID }
func SessionExecutionsTopic(sessionID string) string { return "session-executions:" + sessionID }

// CancelTopic carries ids of running executions to cancel, to every worker.
const CancelTopic = "execution-cancel"

// Limits on runs.
const (
	MaxStdinLen = 1 << 20
	// MinMemoryLimitMB is the least memory a run may ask for: Docker
	// refuses containers with less than 6 MB.
	MinMemoryLimitMB = 6
)
