package resolvers

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/executions"
	"github.com/codecrafter/codecrafter/graph/model"
)

// queueField returns one of a QUEUED run's queue fields (nil otherwise).
func (r *Resolver) queueField(ctx context.Context, e *codecrafter.Execution, f func(*executions.QueueInfo) int) (*int, error) {
	qi, err := r.Runs.QueueInfo(ctx, e)
	if err != nil || qi == nil {
		return nil, err
	}
	v := f(qi)
	return &v, nil
}

func queuePosition(qi *executions.QueueInfo) int { return qi.Position }

func estimatedStartMs(qi *executions.QueueInfo) int { return int(qi.EstimatedStart.Milliseconds()) }

// queuedOutputEvent is an executionOutput event with the run's place while
// it is QUEUED.
func queuedOutputEvent(executionID string, ev executions.OutputEvent) *model.ExecutionOutput {
	out := outputEvent(executionID, ev.OutputChunk)
	if ev.Queue != nil {
		pos, ms := queuePosition(ev.Queue), estimatedStartMs(ev.Queue)
		out.QueuePosition, out.EstimatedStartMs = &pos, &ms
	}
	return out
}

// wantsPlace reports whether the subscription's selection asks for a
// queued run's place: only then is the queue read for it.
func wantsPlace(ctx context.Context) bool {
	return graphql.FieldRequested(ctx, "queuePosition") || graphql.FieldRequested(ctx, "estimatedStartMs")
}

// sessionExecutions streams a session's runs, with their places while
// queued when the selection shows them.
func (r *Resolver) sessionExecutions(ctx context.Context, sessionID string) (<-chan *codecrafter.Execution, error) {
	if wantsPlace(ctx) {
		return r.Runs.SessionExecutionsQueued(ctx, sessionID)
	}
	return r.Runs.SessionExecutions(ctx, sessionID)
}
