package exectest

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/codecrafter/codecrafter"
)

// Store is an in-memory codecrafter.ExecutionStore following the
// interface's contract (it passes storetest.TestExecutions), plus the
// session methods the execution service and its tests use.
type Store struct {
	codecrafter.SessionStore // nil: only Session, CreateSession, UpdateSession are implemented

	mu         sync.Mutex
	executions map[string]*codecrafter.Execution
	sessions   map[string]*codecrafter.Session
}

var _ codecrafter.ExecutionStore = (*Store)(nil)

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{
		executions: map[string]*codecrafter.Execution{},
		sessions:   map[string]*codecrafter.Session{},
	}
}

// CreateSession stores sess; CONFLICT when its id is taken.
func (s *Store) CreateSession(_ context.Context, sess *codecrafter.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[sess.ID]; ok {
		return codecrafter.Errorf(codecrafter.ECONFLICT, "session exists")
	}
	s.sessions[sess.ID] = cloneSession(sess)
	return nil
}

// UpdateSession applies fn to the session and stores the result.
func (s *Store) UpdateSession(_ context.Context, id string, fn func(*codecrafter.Session) error) (*codecrafter.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.sessions[id]
	if !ok {
		return nil, codecrafter.Errorf(codecrafter.ENOTFOUND, "session not found")
	}
	next := cloneSession(cur)
	if err := fn(next); err != nil {
		return nil, err
	}
	next.Version++
	s.sessions[id] = next
	return cloneSession(next), nil
}

func (s *Store) Session(_ context.Context, id string) (*codecrafter.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[id]
	if !ok {
		return nil, codecrafter.Errorf(codecrafter.ENOTFOUND, "session not found")
	}
	return cloneSession(sess), nil
}

func cloneSession(sess *codecrafter.Session) *codecrafter.Session {
	c := *sess
	c.Participants = slices.Clone(sess.Participants)
	return &c
}

// update applies fn to execution id under the lock and returns a copy.
func (s *Store) update(id string, fn func(e *codecrafter.Execution) error) (*codecrafter.Execution, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.executions[id]
	if !ok {
		return nil, codecrafter.Errorf(codecrafter.ENOTFOUND, "execution not found")
	}
	if err := fn(e); err != nil {
		return nil, err
	}
	return clone(e), nil
}

func (s *Store) CreateExecution(_ context.Context, e *codecrafter.Execution) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.executions[e.ID]; ok {
		return codecrafter.Errorf(codecrafter.ECONFLICT, "execution exists")
	}
	s.executions[e.ID] = clone(e)
	return nil
}

func (s *Store) Execution(_ context.Context, id string) (*codecrafter.Execution, error) {
	return s.update(id, func(*codecrafter.Execution) error { return nil })
}

func (s *Store) ListExecutions(_ context.Context, sessionID string, limit int) ([]*codecrafter.Execution, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*codecrafter.Execution
	for _, e := range s.executions {
		if e.SessionID == sessionID {
			c := clone(e)
			c.Output = nil
			list = append(list, c)
		}
	}
	slices.SortFunc(list, func(a, b *codecrafter.Execution) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	return list[:min(limit, len(list))], nil
}

func (s *Store) ClaimExecution(_ context.Context, id, workerID string, now time.Time, chunk codecrafter.OutputChunk, ifAttemptAtMost int) (*codecrafter.Execution, error) {
	return s.update(id, func(e *codecrafter.Execution) error {
		if e.Status.Final() || (ifAttemptAtMost != codecrafter.AnyAttempt && e.Attempt > ifAttemptAtMost) {
			return conflict()
		}
		e.Status, e.WorkerID, e.StartedAt = codecrafter.StatusRunning, workerID, &now
		e.Attempt++
		chunk.Seq = e.NextSeq()
		e.Output = append(e.Output, chunk)
		return nil
	})
}

func (s *Store) AppendOutput(_ context.Context, id string, attempt int, chunk codecrafter.OutputChunk) error {
	_, err := s.update(id, func(e *codecrafter.Execution) error {
		if e.Status != codecrafter.StatusRunning || e.Attempt != attempt || chunk.Seq != e.NextSeq() {
			return conflict()
		}
		e.Output = append(e.Output, chunk)
		return nil
	})
	return err
}

func (s *Store) FinishExecution(_ context.Context, id string, attempt int, r codecrafter.Result, chunk codecrafter.OutputChunk) (*codecrafter.Execution, error) {
	return s.update(id, func(e *codecrafter.Execution) error {
		if !r.Status.Final() {
			return codecrafter.Errorf(codecrafter.EINVALID, "status %q is not final", r.Status)
		}
		if e.Status.Final() || e.Attempt != attempt {
			return conflict()
		}
		chunk.Seq = e.NextSeq()
		d, at := r.Duration, r.FinishedAt
		e.Status, e.ExitCode, e.Stdout, e.Stderr = r.Status, r.ExitCode, r.Stdout, r.Stderr
		e.CompileOutput, e.Duration, e.FinishedAt = r.CompileOutput, &d, &at
		e.Output = append(e.Output, chunk)
		return nil
	})
}

func (s *Store) CancelQueued(_ context.Context, id string, now time.Time, chunk codecrafter.OutputChunk) (*codecrafter.Execution, error) {
	return s.update(id, func(e *codecrafter.Execution) error {
		if e.Status != codecrafter.StatusQueued {
			return conflict()
		}
		e.Status, e.FinishedAt = codecrafter.StatusCancelled, &now
		chunk.Seq = e.NextSeq()
		e.Output = append(e.Output, chunk)
		return nil
	})
}

func (s *Store) RequestCancel(_ context.Context, id string) (*codecrafter.Execution, error) {
	return s.update(id, func(e *codecrafter.Execution) error {
		if e.Status != codecrafter.StatusRunning {
			return conflict()
		}
		e.CancelRequested = true
		return nil
	})
}

func (s *Store) PendingExecutions(context.Context) ([]*codecrafter.Execution, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*codecrafter.Execution
	for _, e := range s.executions {
		if !e.Status.Final() {
			c := clone(e)
			c.Output = nil
			list = append(list, c)
		}
	}
	slices.SortFunc(list, func(a, b *codecrafter.Execution) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return list, nil
}

func (s *Store) StuckExecutions(_ context.Context, startedBefore time.Time) ([]*codecrafter.Execution, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*codecrafter.Execution
	for _, e := range s.executions {
		if e.Status == codecrafter.StatusRunning && e.StartedAt != nil && e.StartedAt.Before(startedBefore) {
			c := clone(e)
			c.Output = nil
			list = append(list, c)
		}
	}
	return list, nil
}

func conflict() error { return codecrafter.Errorf(codecrafter.ECONFLICT, "execution changed") }

func clone(e *codecrafter.Execution) *codecrafter.Execution {
	c := *e
	c.Output = slices.Clone(e.Output)
	return &c
}

func (s *Store) LeaseDispatch(_ context.Context, id string, now, until time.Time) error {
	_, err := s.update(id, func(e *codecrafter.Execution) error {
		if e.Status != codecrafter.StatusQueued || !e.Unsent || e.DispatchAt.After(now) {
			return conflict()
		}
		e.DispatchAt = until
		return nil
	})
	return err
}

func (s *Store) MarkSent(_ context.Context, id string) error {
	_, err := s.update(id, func(e *codecrafter.Execution) error {
		e.Unsent = false
		return nil
	})
	return err
}

func (s *Store) CountActive(_ context.Context, userID string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.executions {
		if e.UserID == userID && !e.Status.Final() {
			n++
		}
	}
	return n, nil
}

func (s *Store) UnsentExecutions(ctx context.Context) ([]*codecrafter.Execution, error) {
	pending, _ := s.PendingExecutions(ctx)
	var list []*codecrafter.Execution
	for _, e := range pending {
		if e.Status == codecrafter.StatusQueued && e.Unsent {
			list = append(list, e)
		}
	}
	return list, nil
}
