// Package executions is the API side of code runs: it validates and queues
// runs, enforces who may see and cancel them, and streams their output to
// subscribers from the bus, recovering anything the bus lost from the store.
// The worker package runs the queued jobs.
package executions

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/access"
	"github.com/codecrafter/codecrafter/events"
	"github.com/prometheus/client_golang/prometheus"
)

// Config holds the deployment's run limits. Zero fields take the defaults.
type Config struct {
	DefaultTimeLimit time.Duration // 5 s
	MaxTimeLimit     time.Duration // 30 s
	DefaultMemoryMB  int           // 256
	MaxMemoryMB      int           // 1024
	// RecheckInterval is how long Output waits for a live event before
	// it re-reads the store, so a lost bus event cannot hang a subscriber.
	// Each re-read that finds nothing new doubles the wait, up to
	// MaxRecheckInterval, so a stuck run is not re-read every 2 s.
	RecheckInterval    time.Duration // 2 s
	MaxRecheckInterval time.Duration // 1 min
	// EnqueueTimeout bounds how long Execute waits for the queue. A run
	// the queue did not take in time stays QUEUED and unsent, and the
	// worker's dispatcher sends it later (see codecrafter.Execution.Unsent).
	EnqueueTimeout time.Duration // 5 s
	// MaxActivePerUser caps a user's QUEUED plus RUNNING runs; Execute
	// answers RATE_LIMITED beyond it. The check and the insert are not one
	// step: a burst may pass the cap by the requests racing it.
	MaxActivePerUser int // 64
	// Limiter, when set, limits each user's Execute calls (keyed by user id).
	Limiter RateLimiter
	// QueueRefresh is how often queue positions are read from the store
	// at most (per replica), and how often a live subscription to a
	// queued run checks whether its place changed.
	QueueRefresh time.Duration // 500 ms
	// SessionCode, when set, gives a session's current revision and code:
	// a session run records the revision it ran, and may omit its code.
	SessionCode func(ctx context.Context, s *codecrafter.Session) (revision int, code string, err error)
}

// RateLimiter counts attempts per key; codecrafter.Limiter is one.
type RateLimiter interface {
	// Take counts an attempt of key and returns 0 when it is within the
	// limit, else how long until it would be.
	Take(ctx context.Context, key string) (time.Duration, error)
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.DefaultTimeLimit, 5*time.Second)
	def(&c.MaxTimeLimit, 30*time.Second)
	def(&c.RecheckInterval, 2*time.Second)
	def(&c.MaxRecheckInterval, time.Minute)
	def(&c.EnqueueTimeout, 5*time.Second)
	def(&c.QueueRefresh, 500*time.Millisecond)
	if c.DefaultMemoryMB <= 0 {
		c.DefaultMemoryMB = 256
	}
	if c.MaxMemoryMB <= 0 {
		c.MaxMemoryMB = 1024
	}
	if c.MaxActivePerUser <= 0 {
		c.MaxActivePerUser = 64
	}
	c.DefaultTimeLimit = min(c.DefaultTimeLimit, c.MaxTimeLimit)
	c.DefaultMemoryMB = min(c.DefaultMemoryMB, c.MaxMemoryMB)
	c.MaxRecheckInterval = max(c.MaxRecheckInterval, c.RecheckInterval)
	return c
}

// activeRetryAfter is the retryAfterMs of a user at the cap of active runs:
// a guess, as runs end when they end.
const activeRetryAfter = time.Second

// Service runs the execution use cases for the API.
type Service struct {
	cfg       Config
	store     codecrafter.ExecutionStore
	sessions  codecrafter.SessionStore
	queue     codecrafter.Queue
	publish   events.Publisher
	bus       codecrafter.Bus
	runtimes  codecrafter.Runtimes
	log       *slog.Logger
	submitted *prometheus.CounterVec
	now       func() time.Time
	places    queueView
}

// New returns a Service. reg may be nil (no metrics registered).
func New(cfg Config, store codecrafter.ExecutionStore, sessions codecrafter.SessionStore, queue codecrafter.Queue,
	bus codecrafter.Bus, runtimes codecrafter.Runtimes, logger *slog.Logger, reg prometheus.Registerer) *Service {
	submitted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "codecrafter_executions_submitted_total",
		Help: "Runs requested through the API, by language and outcome (queued; deferred: left to the dispatcher).",
	}, []string{"language", "outcome"})
	if reg != nil {
		reg.MustRegister(submitted)
	}
	return &Service{
		cfg: cfg.withDefaults(), store: store, sessions: sessions, queue: queue,
		publish: events.Publisher{Bus: bus}, bus: bus, runtimes: runtimes,
		log: logger, submitted: submitted, now: time.Now,
	}
}

// ExecuteInput is a request to run code. Nil limits take the defaults.
type ExecuteInput struct {
	Language string
	Code     string
	// FromSession runs the session's code at its current revision (Code
	// must be empty; SessionID is required).
	FromSession   bool
	Stdin         *string
	SessionID     *string
	TimeLimitMs   *int
	MemoryLimitMb *int
}

// Execute validates in, stores the run QUEUED and queues it. The store is
// the source of truth: a run the queue cannot take now (a broker blip)
// is still accepted, stays unsent, and the dispatcher sends it later.
func (s *Service) Execute(ctx context.Context, in ExecuteInput) (*codecrafter.Execution, error) {
	userID, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	var sess *codecrafter.Session
	if in.SessionID != nil {
		if sess, err = s.authorize(ctx, *in.SessionID, userID, codecrafter.ActionRun); err != nil {
			return nil, err
		}
	}
	var rev *int
	switch {
	case in.FromSession && (sess == nil || in.Code != ""):
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "code: required, unless sessionId is given to run the session's code")
	case sess != nil && s.cfg.SessionCode != nil:
		r, code, err := s.cfg.SessionCode(ctx, sess)
		if err != nil {
			return nil, err
		}
		if in.FromSession {
			in.Code = code
		}
		if in.Code == code { // the run says which revision's code it ran
			rev = &r
		}
	case in.FromSession:
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "code: required on this deployment")
	}
	e, err := s.newExecution(userID, in)
	if err != nil {
		return nil, err
	}
	if sess != nil {
		e.SessionID, e.Revision = sess.ID, rev
	}
	if err := s.admit(ctx, userID); err != nil {
		return nil, err
	}
	// Our lease on sending the job: the dispatcher leaves it alone until
	// well after our enqueue gave up.
	e.Unsent, e.DispatchAt = true, e.CreatedAt.Add(2*s.cfg.EnqueueTimeout)
	if err := s.store.CreateExecution(ctx, e); err != nil {
		return nil, err
	}
	s.noteQueued(e)

	// The run is stored: finish queueing it even if the caller goes away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.EnqueueTimeout)
	defer cancel()
	if err := s.publish.Status(ctx, e); err != nil {
		s.log.WarnContext(ctx, "publish queued status", "execution", e.ID, "err", err)
	}
	if err := s.queue.Enqueue(ctx, codecrafter.Job{ExecutionID: e.ID}); err != nil {
		s.log.WarnContext(ctx, "enqueue execution: left to the dispatcher", "execution", e.ID, "err", err)
		s.submitted.WithLabelValues(e.Language, "deferred").Inc()
		return e, nil
	}
	if err := s.store.MarkSent(ctx, e.ID); err != nil {
		// The dispatcher may send it again; a duplicate job is harmless.
		s.log.WarnContext(ctx, "mark execution sent", "execution", e.ID, "err", err)
	} else {
		e.Unsent = false
	}
	s.submitted.WithLabelValues(e.Language, "queued").Inc()
	return e, nil
}

// admit applies the user's rate limit and cap of active runs.
func (s *Service) admit(ctx context.Context, userID string) error {
	if s.cfg.Limiter != nil {
		wait, err := s.cfg.Limiter.Take(ctx, userID)
		if err != nil {
			return err
		}
		if wait > 0 {
			return &codecrafter.Error{Code: codecrafter.ERATELIMITED, RetryAfter: wait,
				Message: "too many runs requested; try again later"}
		}
	}
	n, err := s.store.CountActive(ctx, userID)
	if err != nil {
		return err
	}
	if n >= s.cfg.MaxActivePerUser {
		return &codecrafter.Error{Code: codecrafter.ERATELIMITED, RetryAfter: activeRetryAfter,
			Message: fmt.Sprintf("you have %d runs queued or running, the most allowed; wait for one to finish", n)}
	}
	return nil
}

// newExecution validates in and builds the QUEUED execution.
func (s *Service) newExecution(userID string, in ExecuteInput) (*codecrafter.Execution, error) {
	rt, err := codecrafter.ResolveLanguage(s.runtimes, in.Language)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(in.Code) == "" {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "code: must not be empty")
	}
	if len(in.Code) > codecrafter.MaxCodeLen {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "code: at most %d bytes, got %d", codecrafter.MaxCodeLen, len(in.Code))
	}
	var stdin string
	if in.Stdin != nil {
		stdin = *in.Stdin
	}
	if len(stdin) > codecrafter.MaxStdinLen {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "stdin: at most %d bytes, got %d", codecrafter.MaxStdinLen, len(stdin))
	}
	timeLimit := s.cfg.DefaultTimeLimit
	if in.TimeLimitMs != nil {
		maxMs := int(s.cfg.MaxTimeLimit.Milliseconds())
		if err := checkLimit("timeLimitMs", *in.TimeLimitMs, maxMs); err != nil {
			return nil, err
		}
		timeLimit = time.Duration(*in.TimeLimitMs) * time.Millisecond
	}
	memory := s.cfg.DefaultMemoryMB
	if in.MemoryLimitMb != nil {
		if err := checkLimit("memoryLimitMb", *in.MemoryLimitMb, s.cfg.MaxMemoryMB); err != nil {
			return nil, err
		}
		if *in.MemoryLimitMb < codecrafter.MinMemoryLimitMB {
			return nil, codecrafter.Errorf(codecrafter.EINVALID, "memoryLimitMb: at least %d, got %d", codecrafter.MinMemoryLimitMB, *in.MemoryLimitMb)
		}
		memory = *in.MemoryLimitMb
	}
	now := s.now()
	return &codecrafter.Execution{
		ID: codecrafter.NewID(), UserID: userID, Language: rt.Language,
		Code: in.Code, Stdin: stdin, TimeLimit: timeLimit, MemoryLimitMB: memory,
		Status: codecrafter.StatusQueued, CreatedAt: now,
		Output: []codecrafter.OutputChunk{{Seq: 1, Status: codecrafter.StatusQueued}},
	}, nil
}

func checkLimit(field string, v, maxV int) error {
	switch {
	case v <= 0:
		return codecrafter.Errorf(codecrafter.EINVALID, "%s: must be positive, got %d", field, v)
	case v > maxV:
		return codecrafter.Errorf(codecrafter.EINVALID, "%s: at most %d on this deployment, got %d", field, maxV, v)
	}
	return nil
}

// Cancel stops a run: a queued one never runs, a running one is killed.
// Cancelling a finished run returns it unchanged. The requester and the
// session's owner and editors may cancel.
func (s *Service) Cancel(ctx context.Context, id string) (*codecrafter.Execution, error) {
	userID, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	e, role, err := s.visible(ctx, id, userID)
	if err != nil {
		return nil, err
	}
	if e.UserID != userID && !role.Can(codecrafter.ActionRun) {
		return nil, codecrafter.Errorf(codecrafter.EFORBIDDEN, "only the requester and the session's owner and editors can cancel this run")
	}
	// The status can move under us (claimed, finished): retry on CONFLICT.
	for range 3 {
		switch e.Status {
		case codecrafter.StatusQueued:
			done, err := s.store.CancelQueued(ctx, id, s.now(), codecrafter.OutputChunk{Status: codecrafter.StatusCancelled})
			if err == nil {
				if err := s.publish.Status(ctx, done); err != nil {
					s.log.WarnContext(ctx, "publish cancelled status", "execution", id, "err", err)
				}
				return done, nil
			}
			if !codecrafter.IsCode(err, codecrafter.ECONFLICT) {
				return nil, err
			}
		case codecrafter.StatusRunning:
			flagged, err := s.store.RequestCancel(ctx, id)
			if err == nil {
				if err := s.publish.Cancel(ctx, id); err != nil {
					s.log.WarnContext(ctx, "publish cancel request", "execution", id, "err", err)
				}
				return flagged, nil
			}
			if !codecrafter.IsCode(err, codecrafter.ECONFLICT) {
				return nil, err
			}
		default: // final
			return e, nil
		}
		if e, err = s.store.Execution(ctx, id); err != nil {
			return nil, err
		}
	}
	return nil, codecrafter.Errorf(codecrafter.ECONFLICT, "the run changed state while cancelling; try again")
}

// Execution returns a run the caller may see: their own, or one of a
// session they take part in.
func (s *Service) Execution(ctx context.Context, id string) (*codecrafter.Execution, error) {
	userID, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	e, _, err := s.visible(ctx, id, userID)
	return e, err
}

// MaxListLimit caps List's limit.
const MaxListLimit = 100

// List returns a session's runs newest first, for its participants.
func (s *Service) List(ctx context.Context, sessionID string, limit int) ([]*codecrafter.Execution, error) {
	userID, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > MaxListLimit {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "limit: must be 1 to %d, got %d", MaxListLimit, limit)
	}
	if _, err := s.authorize(ctx, sessionID, userID, codecrafter.ActionRead); err != nil {
		return nil, err
	}
	return s.store.ListExecutions(ctx, sessionID, limit)
}

// visible loads execution id if userID may see it, with userID's role in
// its session ("" when none). Others get NOT_FOUND, as if it did not exist.
func (s *Service) visible(ctx context.Context, id, userID string) (*codecrafter.Execution, codecrafter.Role, error) {
	e, err := s.store.Execution(ctx, id)
	if codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		return nil, "", executionNotFound()
	}
	if err != nil {
		return nil, "", err
	}
	e.Output = codecrafter.CurrentOutput(e.Output) // a retry replaced the rest
	var role codecrafter.Role
	if e.SessionID != "" {
		sess, err := s.sessions.Session(ctx, e.SessionID)
		switch {
		case err == nil:
			if p, ok := sess.Participant(userID); ok && p.Role.Can(codecrafter.ActionRead) {
				role = p.Role
			}
		case !codecrafter.IsCode(err, codecrafter.ENOTFOUND): // a deleted session leaves the requester
			return nil, "", err
		}
	}
	if e.UserID != userID && role == "" {
		return nil, "", executionNotFound()
	}
	return e, role, nil
}

// authorize loads a session and checks userID may do action in it:
// NOT_FOUND for outsiders, FORBIDDEN when their role does not allow it.
func (s *Service) authorize(ctx context.Context, sessionID, userID string, action codecrafter.Action) (*codecrafter.Session, error) {
	return access.Authorize(ctx, s.sessions, sessionID, userID, action)
}

func executionNotFound() error {
	return codecrafter.Errorf(codecrafter.ENOTFOUND, "execution not found")
}
