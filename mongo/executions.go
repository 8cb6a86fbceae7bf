package mongo

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/codecrafter/codecrafter"
)

// An execution is one document; its output chunks are the array output
// and nextSeq is the Seq of the next one. Every change of status pushes a
// chunk, so nextSeq alone tells whether the document changed since it was
// read: the guard of each read-then-write below.

type executionDoc struct {
	ID            string         `bson:"_id"`
	SessionID     string         `bson:"sessionId"`
	Revision      *int           `bson:"revision,omitempty"`
	UserID        string         `bson:"userId"`
	Language      string         `bson:"language"`
	Code          string         `bson:"code"`
	Stdin         string         `bson:"stdin"`
	TimeLimit     time.Duration  `bson:"timeLimit"`
	MemoryLimitMB int            `bson:"memoryLimitMb"`
	Status        string         `bson:"status"`
	ExitCode      *int           `bson:"exitCode,omitempty"`
	Stdout        string         `bson:"stdout"`
	Stderr        string         `bson:"stderr"`
	CompileOutput *string        `bson:"compileOutput,omitempty"`
	Duration      *time.Duration `bson:"duration,omitempty"`
	CreatedAt     time.Time      `bson:"createdAt"`
	StartedAt     *time.Time     `bson:"startedAt,omitempty"`
	FinishedAt    *time.Time     `bson:"finishedAt,omitempty"`

	Attempt         int        `bson:"attempt"`
	WorkerID        string     `bson:"workerId"`
	CancelRequested bool       `bson:"cancelRequested"`
	NextSeq         int        `bson:"nextSeq"`
	Output          []chunkDoc `bson:"output"`

	// The outbox (see codecrafter.Execution); absent on older documents,
	// which were queued when stored.
	Unsent     bool       `bson:"unsent,omitempty"`
	DispatchAt *time.Time `bson:"dispatchAt,omitempty"`
}

type chunkDoc struct {
	Seq    int    `bson:"seq"`
	Stream string `bson:"stream,omitempty"`
	Data   string `bson:"data,omitempty"`
	Status string `bson:"status"`
}

func toChunkDoc(c codecrafter.OutputChunk) chunkDoc {
	return chunkDoc{Seq: c.Seq, Stream: string(c.Stream), Data: c.Data, Status: string(c.Status)}
}

func toExecutionDoc(e *codecrafter.Execution) *executionDoc {
	d := &executionDoc{
		ID: e.ID, SessionID: e.SessionID, Revision: e.Revision, UserID: e.UserID, Language: e.Language, Code: e.Code,
		Stdin: e.Stdin, TimeLimit: e.TimeLimit, MemoryLimitMB: e.MemoryLimitMB,
		Status: string(e.Status), ExitCode: e.ExitCode, Stdout: e.Stdout, Stderr: e.Stderr,
		CompileOutput: e.CompileOutput, Duration: e.Duration, CreatedAt: e.CreatedAt,
		StartedAt: e.StartedAt, FinishedAt: e.FinishedAt,
		Attempt: e.Attempt, WorkerID: e.WorkerID, CancelRequested: e.CancelRequested,
		NextSeq: e.NextSeq(),
		Output:  make([]chunkDoc, len(e.Output)),
		Unsent:  e.Unsent,
	}
	if !e.DispatchAt.IsZero() {
		at := e.DispatchAt
		d.DispatchAt = &at
	}
	for i, c := range e.Output {
		d.Output[i] = toChunkDoc(c)
	}
	return d
}

func (d *executionDoc) execution() *codecrafter.Execution {
	e := &codecrafter.Execution{
		ID: d.ID, SessionID: d.SessionID, Revision: d.Revision, UserID: d.UserID, Language: d.Language, Code: d.Code,
		Stdin: d.Stdin, TimeLimit: d.TimeLimit, MemoryLimitMB: d.MemoryLimitMB,
		Status: codecrafter.ExecutionStatus(d.Status), ExitCode: d.ExitCode, Stdout: d.Stdout, Stderr: d.Stderr,
		CompileOutput: d.CompileOutput, Duration: d.Duration, CreatedAt: d.CreatedAt.UTC(),
		StartedAt: utc(d.StartedAt), FinishedAt: utc(d.FinishedAt),
		Attempt: d.Attempt, WorkerID: d.WorkerID, CancelRequested: d.CancelRequested,
		Unsent: d.Unsent,
	}
	if d.DispatchAt != nil {
		e.DispatchAt = d.DispatchAt.UTC()
	}
	for _, c := range d.Output {
		e.Output = append(e.Output, codecrafter.OutputChunk{
			Seq: c.Seq, Stream: codecrafter.OutputStream(c.Stream), Data: c.Data, Status: codecrafter.ExecutionStatus(c.Status),
		})
	}
	slices.SortFunc(e.Output, func(a, b codecrafter.OutputChunk) int { return a.Seq - b.Seq })
	return e
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// withoutOutput leaves the output chunks out of listings.
var withoutOutput = bson.D{{Key: "output", Value: 0}}

// CreateExecution stores e; CONFLICT when its id is taken. Its index
// entries come first (see execindex.go).
func (db *DB) CreateExecution(ctx context.Context, e *codecrafter.Execution) error {
	if err := db.indexExecution(ctx, e); err != nil {
		return err
	}
	_, err := db.executions.InsertOne(ctx, toExecutionDoc(e))
	return dbErr(err, "execution")
}

// Execution returns the execution with id and all its output.
func (db *DB) Execution(ctx context.Context, id string) (*codecrafter.Execution, error) {
	var d executionDoc
	if err := db.executions.FindOne(ctx, bson.D{byID(id)}).Decode(&d); err != nil {
		return nil, dbErr(err, "execution")
	}
	return d.execution(), nil
}

// runState is what the guarded writes read first.
type runState struct {
	Status  codecrafter.ExecutionStatus `bson:"status"`
	Attempt int                         `bson:"attempt"`
	NextSeq int                         `bson:"nextSeq"`
}

func (db *DB) runState(ctx context.Context, id string) (*runState, error) {
	var st runState
	err := db.executions.FindOne(ctx, bson.D{byID(id)},
		options.FindOne().SetProjection(bson.D{{Key: "status", Value: 1}, {Key: "attempt", Value: 1}, {Key: "nextSeq", Value: 1}}),
	).Decode(&st)
	if err != nil {
		return nil, dbErr(err, "execution")
	}
	return &st, nil
}

// updateIf applies update to the execution filter matches and returns
// it; nil and no error when none matches (its state moved on).
func (db *DB) updateIf(ctx context.Context, filter, update bson.D) (*codecrafter.Execution, error) {
	var d executionDoc
	err := db.executions.FindOneAndUpdate(ctx, filter, update, returnAfter()).Decode(&d)
	switch {
	case err == nil:
		return d.execution(), nil
	case errors.Is(err, mongo.ErrNoDocuments):
		return nil, nil
	}
	return nil, dbErr(err, "execution")
}

// transition reads the run state, lets check refuse it or give the
// update, and applies the update if nextSeq has not moved meanwhile,
// retrying otherwise. The update gets the Seq its chunk takes.
//
// guess, when not nil, is the state the caller expects (a worker knows
// its run's): the update is tried on it first, guarded by all three
// fields, without the read. A wrong guess costs only that try.
func (db *DB) transition(ctx context.Context, id string, guess *runState, check func(*runState) error, update func(seq int) bson.D) (*codecrafter.Execution, error) {
	if guess != nil && check(guess) == nil {
		e, err := db.updateIf(ctx,
			bson.D{byID(id), {Key: "status", Value: string(guess.Status)}, {Key: "attempt", Value: guess.Attempt}, {Key: "nextSeq", Value: guess.NextSeq}},
			update(guess.NextSeq))
		if e != nil || err != nil {
			return e, err
		}
	}
	for try := 0; try < maxTries; try++ {
		st, err := db.runState(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := check(st); err != nil {
			return nil, err
		}
		e, err := db.updateIf(ctx, bson.D{byID(id), {Key: "nextSeq", Value: st.NextSeq}}, update(st.NextSeq))
		if e != nil || err != nil {
			return e, err
		}
		if err := backoff(ctx, try); err != nil {
			return nil, err
		}
	}
	return nil, codecrafter.Errorf(codecrafter.ECONFLICT, "the execution is changing too fast; try again")
}

// pushChunk is the part of every transition's update that appends c.
func pushChunk(c codecrafter.OutputChunk, seq int) (bson.E, bson.E) {
	c.Seq = seq
	return bson.E{Key: "$push", Value: bson.D{{Key: "output", Value: toChunkDoc(c)}}},
		bson.E{Key: "$inc", Value: bson.D{{Key: "nextSeq", Value: 1}}}
}

// finish is a transition to a final status, which then leaves the
// active set.
func (db *DB) finish(ctx context.Context, id string, guess *runState, check func(*runState) error, update func(seq int) bson.D) (*codecrafter.Execution, error) {
	e, err := db.transition(ctx, id, guess, check, update)
	if err == nil {
		db.deactivate(ctx, id)
	}
	return e, err
}

// ClaimExecution starts a new attempt of a QUEUED or RUNNING execution.
// A first job's claim (ifAttemptAtMost 0) guesses the run is as stored,
// untouched: one write, no read.
func (db *DB) ClaimExecution(ctx context.Context, id, workerID string, now time.Time, chunk codecrafter.OutputChunk, ifAttemptAtMost int) (*codecrafter.Execution, error) {
	var guess *runState
	if ifAttemptAtMost == 0 {
		guess = &runState{Status: codecrafter.StatusQueued, NextSeq: 2} // CreateExecution's one chunk
	}
	return db.transition(ctx, id, guess,
		func(st *runState) error {
			if st.Status.Final() {
				return codecrafter.Errorf(codecrafter.ECONFLICT, "the execution has finished")
			}
			if ifAttemptAtMost != codecrafter.AnyAttempt && st.Attempt > ifAttemptAtMost {
				return codecrafter.Errorf(codecrafter.ECONFLICT, "attempt %d has the run", st.Attempt)
			}
			return nil
		},
		func(seq int) bson.D {
			push, _ := pushChunk(chunk, seq)
			return bson.D{
				{Key: "$set", Value: bson.D{
					{Key: "status", Value: string(codecrafter.StatusRunning)},
					{Key: "startedAt", Value: now},
					{Key: "workerId", Value: workerID},
				}},
				{Key: "$inc", Value: bson.D{{Key: "attempt", Value: 1}, {Key: "nextSeq", Value: 1}}},
				push,
			}
		})
}

// AppendOutput adds chunk to a RUNNING execution if attempt is current
// and chunk.Seq the next number: one guarded update.
func (db *DB) AppendOutput(ctx context.Context, id string, attempt int, chunk codecrafter.OutputChunk) error {
	push, inc := pushChunk(chunk, chunk.Seq)
	err := db.executions.FindOneAndUpdate(ctx,
		bson.D{
			byID(id),
			{Key: "attempt", Value: attempt},
			{Key: "status", Value: string(codecrafter.StatusRunning)},
			{Key: "nextSeq", Value: chunk.Seq},
		},
		bson.D{push, inc}, // FerretDB has no projection for findAndModify
	).Err()
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return dbErr(err, "execution")
	}
	if _, err := db.runState(ctx, id); err != nil {
		return err
	}
	return codecrafter.Errorf(codecrafter.ECONFLICT, "the run has moved on: attempt %d is not current, or chunk %d is out of order", attempt, chunk.Seq)
}

// FinishExecution writes r and the final status chunk if attempt is
// current and the run not final. A chunk whose Seq is set is taken for the
// run's next one: tried first without reading (see transition).
func (db *DB) FinishExecution(ctx context.Context, id string, attempt int, r codecrafter.Result, chunk codecrafter.OutputChunk) (*codecrafter.Execution, error) {
	if !r.Status.Final() {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "status %q is not final", r.Status)
	}
	var guess *runState
	if chunk.Seq > 0 { // the worker's count of its run's chunks
		guess = &runState{Status: codecrafter.StatusRunning, Attempt: attempt, NextSeq: chunk.Seq}
	}
	return db.finish(ctx, id, guess,
		func(st *runState) error {
			if st.Status.Final() || st.Attempt != attempt {
				return codecrafter.Errorf(codecrafter.ECONFLICT, "the run has moved on: it has finished, or attempt %d is not current", attempt)
			}
			return nil
		},
		func(seq int) bson.D {
			push, inc := pushChunk(chunk, seq)
			return bson.D{
				{Key: "$set", Value: bson.D{
					{Key: "status", Value: string(r.Status)},
					{Key: "exitCode", Value: r.ExitCode},
					{Key: "stdout", Value: r.Stdout},
					{Key: "stderr", Value: r.Stderr},
					{Key: "compileOutput", Value: r.CompileOutput},
					{Key: "duration", Value: r.Duration},
					{Key: "finishedAt", Value: r.FinishedAt},
				}},
				push, inc,
			}
		})
}

// CancelQueued ends a QUEUED execution as CANCELLED.
func (db *DB) CancelQueued(ctx context.Context, id string, now time.Time, chunk codecrafter.OutputChunk) (*codecrafter.Execution, error) {
	return db.finish(ctx, id, nil,
		func(st *runState) error {
			if st.Status != codecrafter.StatusQueued {
				return codecrafter.Errorf(codecrafter.ECONFLICT, "the execution is no longer queued")
			}
			return nil
		},
		func(seq int) bson.D {
			push, inc := pushChunk(chunk, seq)
			return bson.D{
				{Key: "$set", Value: bson.D{
					{Key: "status", Value: string(codecrafter.StatusCancelled)},
					{Key: "finishedAt", Value: now},
				}},
				push, inc,
			}
		})
}

// RequestCancel flags a RUNNING execution for cancellation.
func (db *DB) RequestCancel(ctx context.Context, id string) (*codecrafter.Execution, error) {
	var d executionDoc
	err := db.executions.FindOneAndUpdate(ctx,
		bson.D{byID(id), {Key: "status", Value: string(codecrafter.StatusRunning)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "cancelRequested", Value: true}}}},
		returnAfter(),
	).Decode(&d)
	if err == nil {
		return d.execution(), nil
	}
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return nil, dbErr(err, "execution")
	}
	if _, err := db.runState(ctx, id); err != nil {
		return nil, err
	}
	return nil, codecrafter.Errorf(codecrafter.ECONFLICT, "the execution is not running")
}

// LeaseDispatch moves DispatchAt of a QUEUED, unsent execution that is due:
// one guarded update, so one dispatcher of many wins.
func (db *DB) LeaseDispatch(ctx context.Context, id string, now, until time.Time) error {
	err := db.executions.FindOneAndUpdate(ctx,
		bson.D{
			byID(id),
			{Key: "status", Value: string(codecrafter.StatusQueued)},
			{Key: "unsent", Value: true},
			{Key: "dispatchAt", Value: bson.D{{Key: "$lte", Value: now}}},
		},
		bson.D{{Key: "$set", Value: bson.D{{Key: "dispatchAt", Value: until}}}},
	).Err()
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return dbErr(err, "execution")
	}
	if _, err := db.runState(ctx, id); err != nil {
		return err
	}
	return codecrafter.Errorf(codecrafter.ECONFLICT, "the run is sent, no longer queued, or leased to another dispatcher")
}

// MarkSent clears unsent once the execution's job is queued.
func (db *DB) MarkSent(ctx context.Context, id string) error {
	res, err := db.executions.UpdateOne(ctx, bson.D{byID(id)}, bson.D{{Key: "$unset", Value: bson.D{{Key: "unsent", Value: ""}}}})
	if err != nil {
		return dbErr(err, "execution")
	}
	if res.MatchedCount == 0 {
		return codecrafter.Errorf(codecrafter.ENOTFOUND, "execution not found")
	}
	db.clearUnsent(ctx, id)
	return nil
}
