package access

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codecrafter/codecrafter"
)

// SessionReader reads a session (codecrafter.SessionStore has it).
type SessionReader interface {
	Session(ctx context.Context, id string) (*codecrafter.Session, error)
}

// Recent authorizes actions against a session read at most RecentTTL
// before, while it follows the bus's access changes (Watch): a hot
// session's edits or messages then cost one session read a second, not
// one each. A change that names the session drops its read at once when
// it reaches this replica; one made through another replica can let an
// action through until the bus delivers it (README, "Editing"). Without
// Watch, or while its subscription is down, every call reads the session.
//
// Access events are taken from their subscription under mu, by each
// Authorize before it looks (so one published in this process before the
// call came is always seen) and every recentPoll.
type Recent struct {
	sessions SessionReader
	bus      codecrafter.Bus
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	events  <-chan []byte // nil: not followed now
	changes int           // access changes taken in

	reads sync.Map // session id -> recentRead
	n     atomic.Int64
}

type recentRead struct {
	sess *codecrafter.Session // read-only: shared by the callers that use it
	at   time.Time
}

// RecentTTL bounds how long a session read is trusted when no access
// change came.
const RecentTTL = time.Second

const (
	recentPoll = 50 * time.Millisecond
	// Past this many sessions held, the reads start again empty (a bound,
	// not an LRU: a miss costs one read).
	recentMax = 10000
)

// NewRecent returns a Recent reading sessions and following bus's access
// changes once Watch is called.
func NewRecent(sessions SessionReader, bus codecrafter.Bus, logger *slog.Logger) *Recent {
	return &Recent{sessions: sessions, bus: bus, log: logger, now: time.Now}
}

// SetClock replaces the clock that reads expire by (tests).
func (r *Recent) SetClock(now func() time.Time) { r.now = now }

// Holds says whether a read of the session is held (tests).
func (r *Recent) Holds(sessionID string) bool {
	_, ok := r.reads.Load(sessionID)
	return ok
}

// Watch follows the access changes until ctx ends, re-subscribing when the
// bus ends the subscription.
func (r *Recent) Watch(ctx context.Context) error {
	events, err := r.bus.Subscribe(ctx, codecrafter.AccessTopic)
	if err != nil {
		return err
	}
	r.setEvents(events)
	go func() {
		backoff := 100 * time.Millisecond
		for {
			select {
			case <-ctx.Done():
				r.setEvents(nil)
				return
			case <-time.After(recentPoll):
			}
			r.mu.Lock()
			up := r.takeLocked()
			r.mu.Unlock()
			if up {
				backoff = 100 * time.Millisecond
				continue
			}
			// Ended by the bus: changes may be missed until subscribed again.
			if events, err := r.bus.Subscribe(ctx, codecrafter.AccessTopic); err == nil {
				r.setEvents(events)
			} else {
				r.log.Warn("access events: re-subscribe", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
			}
		}
	}()
	return nil
}

func (r *Recent) setEvents(events <-chan []byte) {
	r.mu.Lock()
	r.events = events
	r.mu.Unlock()
}

// takeLocked takes in the access changes waiting, dropping the sessions
// they name; false (and every read dropped) when the subscription is not
// up. mu is held.
func (r *Recent) takeLocked() bool {
	if r.events == nil {
		return false
	}
	for {
		select {
		case b, ok := <-r.events:
			if !ok {
				r.events = nil
				r.reads.Clear()
				return false
			}
			if c, err := codecrafter.DecodeAccessChange(b); err == nil && c.SessionID != "" {
				r.changes++
				r.reads.Delete(c.SessionID)
			}
		default:
			return true
		}
	}
}

// Authorize checks the caller in ctx may take action in the session:
// NOT_FOUND for outsiders, FORBIDDEN when their role does not allow it.
// The session it returns is shared: read-only.
func (r *Recent) Authorize(ctx context.Context, sessionID string, action codecrafter.Action) (*codecrafter.Session, string, error) {
	userID, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, "", err
	}
	r.mu.Lock()
	up := r.takeLocked()
	v, ok := r.reads.Load(sessionID)
	changes := r.changes
	r.mu.Unlock()
	if up && ok && r.now().Sub(v.(recentRead).at) < RecentTTL {
		sess := v.(recentRead).sess
		if _, err := sess.Authorize(userID, action); err == nil {
			return sess, userID, nil
		} // refused: read again, it may have changed since
	}
	at := r.now()
	sess, err := Authorize(ctx, r.sessions, sessionID, userID, action)
	if err != nil || !up {
		return sess, userID, err
	}
	// Kept unless an access change came while reading (taken in here, under
	// the lock, so that none slips in between).
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.takeLocked() && r.changes == changes {
		if r.n.Add(1) > recentMax {
			r.reads.Clear()
			r.n.Store(0)
		}
		r.reads.Store(sessionID, recentRead{sess: sess, at: at})
	}
	return sess, userID, nil
}

// Caller is Authorize for the caller in ctx (UNAUTHENTICATED without
// one); it returns the caller's id too.
func Caller(ctx context.Context, sessions SessionReader, sessionID string, action codecrafter.Action) (*codecrafter.Session, string, error) {
	userID, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, "", err
	}
	sess, err := Authorize(ctx, sessions, sessionID, userID, action)
	return sess, userID, err
}

// Authorize reads the session and checks userID may take action in it:
// NOT_FOUND for outsiders (and sessions that do not exist), FORBIDDEN when
// their role does not allow it.
func Authorize(ctx context.Context, sessions SessionReader, sessionID, userID string, action codecrafter.Action) (*codecrafter.Session, error) {
	sess, err := sessions.Session(ctx, sessionID)
	if codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		return nil, codecrafter.Errorf(codecrafter.ENOTFOUND, "session not found")
	}
	if err != nil {
		return nil, err
	}
	if _, err := sess.Authorize(userID, action); err != nil {
		return nil, err
	}
	return sess, nil
}
