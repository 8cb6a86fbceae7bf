// Package events is the encoding of the run events on the bus, shared by
// the API side (executions) and the worker, and the Publisher both use.
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/codecrafter/codecrafter"
)

// Bus payloads, all JSON. This file is their one definition; the API side
// and the worker both encode and decode through it.
//
//	codecrafter.ExecutionTopic(id): one output or status chunk
//	  {"seq":3,"stream":"STDOUT","data":"hi\n","status":"RUNNING"}
//	  (stream and data omitted for a status change)
//	codecrafter.SessionExecutionsTopic(sessionID): the execution after a
//	  status change, without its output chunks (see executionEvent)
//	codecrafter.CancelTopic: {"executionId":"..."}
//
// The bus is best effort: subscribers that need every chunk recover from
// the store (see executions.Service.Output), so writers store first, then publish.

type chunkEvent struct {
	Seq    int                         `json:"seq"`
	Stream codecrafter.OutputStream    `json:"stream,omitempty"`
	Data   string                      `json:"data,omitempty"`
	Status codecrafter.ExecutionStatus `json:"status"`
}

type executionEvent struct {
	ID              string                      `json:"id"`
	SessionID       string                      `json:"sessionId,omitempty"`
	Revision        *int                        `json:"revision,omitempty"`
	UserID          string                      `json:"userId"`
	Language        string                      `json:"language"`
	Code            string                      `json:"code"`
	Stdin           string                      `json:"stdin,omitempty"`
	TimeLimitMs     int64                       `json:"timeLimitMs"`
	MemoryLimitMB   int                         `json:"memoryLimitMb"`
	Status          codecrafter.ExecutionStatus `json:"status"`
	ExitCode        *int                        `json:"exitCode,omitempty"`
	Stdout          string                      `json:"stdout,omitempty"`
	Stderr          string                      `json:"stderr,omitempty"`
	CompileOutput   *string                     `json:"compileOutput,omitempty"`
	DurationNs      *int64                      `json:"durationNs,omitempty"`
	CreatedAt       time.Time                   `json:"createdAt"`
	StartedAt       *time.Time                  `json:"startedAt,omitempty"`
	FinishedAt      *time.Time                  `json:"finishedAt,omitempty"`
	Attempt         int                         `json:"attempt"`
	WorkerID        string                      `json:"workerId,omitempty"`
	CancelRequested bool                        `json:"cancelRequested,omitempty"`
}

type cancelEvent struct {
	ExecutionID string `json:"executionId"`
}

// EncodeChunk returns the ExecutionTopic payload for c.
func EncodeChunk(c codecrafter.OutputChunk) []byte {
	return mustJSON(chunkEvent{Seq: c.Seq, Stream: c.Stream, Data: c.Data, Status: c.Status})
}

// DecodeChunk parses an ExecutionTopic payload.
func DecodeChunk(b []byte) (codecrafter.OutputChunk, error) {
	var ev chunkEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return codecrafter.OutputChunk{}, fmt.Errorf("decode chunk event: %w", err)
	}
	if ev.Seq < 1 || ev.Status == "" {
		return codecrafter.OutputChunk{}, fmt.Errorf("decode chunk event: missing seq or status")
	}
	return codecrafter.OutputChunk{Seq: ev.Seq, Stream: ev.Stream, Data: ev.Data, Status: ev.Status}, nil
}

// EncodeExecution returns the SessionExecutionsTopic payload for e.
func EncodeExecution(e *codecrafter.Execution) []byte {
	ev := executionEvent{
		ID: e.ID, SessionID: e.SessionID, Revision: e.Revision, UserID: e.UserID, Language: e.Language,
		Code: e.Code, Stdin: e.Stdin, TimeLimitMs: e.TimeLimit.Milliseconds(),
		MemoryLimitMB: e.MemoryLimitMB, Status: e.Status, ExitCode: e.ExitCode,
		Stdout: e.Stdout, Stderr: e.Stderr, CompileOutput: e.CompileOutput,
		CreatedAt: e.CreatedAt, StartedAt: e.StartedAt, FinishedAt: e.FinishedAt,
		Attempt: e.Attempt, WorkerID: e.WorkerID, CancelRequested: e.CancelRequested,
	}
	if e.Duration != nil {
		ns := int64(*e.Duration)
		ev.DurationNs = &ns
	}
	return mustJSON(ev)
}

// DecodeExecution parses a SessionExecutionsTopic payload.
func DecodeExecution(b []byte) (*codecrafter.Execution, error) {
	var ev executionEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return nil, fmt.Errorf("decode execution event: %w", err)
	}
	if ev.ID == "" || ev.Status == "" {
		return nil, fmt.Errorf("decode execution event: missing id or status")
	}
	e := &codecrafter.Execution{
		ID: ev.ID, SessionID: ev.SessionID, Revision: ev.Revision, UserID: ev.UserID, Language: ev.Language,
		Code: ev.Code, Stdin: ev.Stdin, TimeLimit: time.Duration(ev.TimeLimitMs) * time.Millisecond,
		MemoryLimitMB: ev.MemoryLimitMB, Status: ev.Status, ExitCode: ev.ExitCode,
		Stdout: ev.Stdout, Stderr: ev.Stderr, CompileOutput: ev.CompileOutput,
		CreatedAt: ev.CreatedAt, StartedAt: ev.StartedAt, FinishedAt: ev.FinishedAt,
		Attempt: ev.Attempt, WorkerID: ev.WorkerID, CancelRequested: ev.CancelRequested,
	}
	if ev.DurationNs != nil {
		d := time.Duration(*ev.DurationNs)
		e.Duration = &d
	}
	return e, nil
}

// EncodeCancel returns the CancelTopic payload for an execution id.
func EncodeCancel(executionID string) []byte { return mustJSON(cancelEvent{ExecutionID: executionID}) }

// DecodeCancel parses a CancelTopic payload.
func DecodeCancel(b []byte) (string, error) {
	var ev cancelEvent
	if err := json.Unmarshal(b, &ev); err != nil || ev.ExecutionID == "" {
		return "", fmt.Errorf("decode cancel event: %q", b)
	}
	return ev.ExecutionID, nil
}

// Publisher sends execution events. Publishing is best effort: a failure is
// returned for logging, but the store already holds the truth.
type Publisher struct{ Bus codecrafter.Bus }

// Chunks publishes stored chunks of execution id, in order.
func (p Publisher) Chunks(ctx context.Context, id string, chunks ...codecrafter.OutputChunk) error {
	for _, c := range chunks {
		if err := p.Bus.Publish(ctx, codecrafter.ExecutionTopic(id), EncodeChunk(c)); err != nil {
			return fmt.Errorf("publish chunk %d of %s: %w", c.Seq, id, err)
		}
	}
	return nil
}

// Status publishes e's latest chunk (its status change) on the execution
// topic and e itself on its session's topic, if it has a session.
func (p Publisher) Status(ctx context.Context, e *codecrafter.Execution) error {
	var err error
	if n := len(e.Output); n > 0 && e.Output[n-1].Stream == "" {
		err = p.Chunks(ctx, e.ID, e.Output[n-1])
	}
	if e.SessionID != "" {
		if perr := p.Bus.Publish(ctx, codecrafter.SessionExecutionsTopic(e.SessionID), EncodeExecution(e)); perr != nil && err == nil {
			err = fmt.Errorf("publish status of %s: %w", e.ID, perr)
		}
	}
	return err
}

// Cancel asks every worker to kill the run of execution id.
func (p Publisher) Cancel(ctx context.Context, id string) error {
	if err := p.Bus.Publish(ctx, codecrafter.CancelTopic, EncodeCancel(id)); err != nil {
		return fmt.Errorf("publish cancel of %s: %w", id, err)
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain strings, numbers and times: cannot fail
	}
	return b
}
