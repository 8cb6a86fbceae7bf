// Package access ends access when it is taken away: a subscription of a
// participant who is removed from a session (or whose session is deleted)
// ends at once, and so does a connection whose login is revoked. The
// sessions and auth services publish codecrafter.AccessChange events on
// codecrafter.AccessTopic; each replica's Hub subscribes to the topic once
// and cancels the contexts registered with it.
package access

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/push"
)

// ErrRevoked is the cause of a connection context ended by a revoked login.
var ErrRevoked = codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "this login was revoked (logout or token reuse); sign in again")

// Hub dispatches access changes to the watches registered with it.
type Hub struct {
	bus codecrafter.Bus
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]map[*watch]struct{} // by session id
	logins   map[string]map[*watch]struct{} // by refresh family id
}

// watch is one registered context. For a session watch, check says whether
// the user still has access (nil error) when a change names them.
type watch struct {
	userID string
	check  func(context.Context) error
	onEnd  func(error)             // called before cancel when access ends; may be nil
	cancel context.CancelCauseFunc // nil: onEnd alone ends it
	once   sync.Once
}

func (w *watch) end(err error) {
	w.once.Do(func() {
		if w.onEnd != nil {
			w.onEnd(err)
		}
		if w.cancel != nil {
			w.cancel(err)
		}
	})
}

// New returns a Hub; Run feeds it.
func New(bus codecrafter.Bus, logger *slog.Logger) *Hub {
	return &Hub{
		bus: bus, log: logger,
		sessions: map[string]map[*watch]struct{}{},
		logins:   map[string]map[*watch]struct{}{},
	}
}

// Subscribe subscribes the hub to the bus and returns once it is active,
// so that a change published afterwards is seen; it then follows the topic
// until ctx ends, re-subscribing (and re-checking every watch, since
// changes may have been missed meanwhile) if the bus gives up.
func (h *Hub) Subscribe(ctx context.Context) error {
	events, err := h.bus.Subscribe(ctx, codecrafter.AccessTopic)
	if err != nil {
		return err
	}
	go h.follow(ctx, events)
	return nil
}

func (h *Hub) follow(ctx context.Context, events <-chan []byte) {
	backoff := 100 * time.Millisecond
	for {
		for b := range events {
			c, err := codecrafter.DecodeAccessChange(b)
			if err != nil {
				h.log.Warn("bad access change event", "err", err)
				continue
			}
			h.Apply(ctx, c)
		}
		for { // the bus ended the subscription: take it up again
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			var err error
			if events, err = h.bus.Subscribe(ctx, codecrafter.AccessTopic); err == nil {
				break
			}
			h.log.Warn("access events: re-subscribe", "err", err)
			backoff = min(2*backoff, 5*time.Second)
		}
		backoff = 100 * time.Millisecond
		h.recheckAll(ctx)
	}
}

// Apply acts on one change: it cancels the watches it ends. Exported for
// callers that learn of a change without the bus (and for tests).
func (h *Hub) Apply(ctx context.Context, c codecrafter.AccessChange) {
	h.mu.Lock()
	var ended, recheck []*watch
	switch {
	case c.FamilyID != "":
		for w := range h.logins[c.FamilyID] {
			ended = append(ended, w)
		}
	case c.UserID == "": // the session was deleted
		for w := range h.sessions[c.SessionID] {
			ended = append(ended, w)
		}
	default:
		for w := range h.sessions[c.SessionID] {
			if w.userID == c.UserID {
				recheck = append(recheck, w)
			}
		}
	}
	h.mu.Unlock()

	cause := sessionGone
	if c.FamilyID != "" {
		cause = ErrRevoked
	}
	for _, w := range ended {
		w.end(cause)
	}
	for _, w := range recheck {
		h.recheck(ctx, w)
	}
}

var sessionGone = codecrafter.Errorf(codecrafter.ENOTFOUND, "session not found: it was deleted, or you no longer take part in it")

// recheck runs w's check and ends w when access is gone. A store failure
// keeps the watch: access is not taken away on a guess.
func (h *Hub) recheck(ctx context.Context, w *watch) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := w.check(ctx)
	switch {
	case err == nil:
	case codecrafter.IsCode(err, codecrafter.ENOTFOUND), codecrafter.IsCode(err, codecrafter.EFORBIDDEN):
		w.end(err)
	default:
		h.log.Warn("access re-check failed; the subscription goes on", "err", err)
	}
}

func (h *Hub) recheckAll(ctx context.Context) {
	h.mu.Lock()
	var all []*watch
	for _, ws := range h.sessions {
		for w := range ws {
			all = append(all, w)
		}
	}
	h.mu.Unlock()
	for _, w := range all {
		h.recheck(ctx, w)
	}
}

// WatchSession returns a context that ends, with the access error as its
// cause, when userID loses access to the session: when the session is
// deleted, or when a change names userID and check then fails with
// NOT_FOUND or FORBIDDEN. onEnd (may be nil) is called with that error
// just before the context ends, so a subscription can report why it ends.
// Register before the first access check, so that no change falls between
// the two. The watch goes when ctx ends.
func (h *Hub) WatchSession(ctx context.Context, sessionID, userID string, check func(context.Context) error, onEnd func(error)) context.Context {
	if e := push.EndsOf(ctx); e != nil { // the operation's own context ends with the cause
		w := &watch{userID: userID, check: check, onEnd: onEnd, cancel: e.Cancel}
		h.add(h.sessions, sessionID, w)
		e.OnEnd(func() { h.remove(h.sessions, sessionID, w) })
		return ctx
	}
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watch{userID: userID, check: check, onEnd: onEnd, cancel: cancel}
	h.add(h.sessions, sessionID, w)
	context.AfterFunc(ctx, func() { h.remove(h.sessions, sessionID, w) })
	return ctx
}

// WatchLogin calls end when the login familyID is revoked, until stop
// is called. It returns at once. No context: its owner (a socket) stops
// it when it ends, which costs less than a context's registration.
func (h *Hub) WatchLogin(familyID string, end func()) (stop func()) {
	if familyID == "" {
		return func() {}
	}
	w := &watch{onEnd: func(error) { end() }}
	h.add(h.logins, familyID, w)
	return func() { h.remove(h.logins, familyID, w) }
}

// Watches counts the registered watches (for metrics and tests).
func (h *Hub) Watches() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ws := range h.sessions {
		n += len(ws)
	}
	for _, ws := range h.logins {
		n += len(ws)
	}
	return n
}

func (h *Hub) add(m map[string]map[*watch]struct{}, key string, w *watch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := m[key]
	if ws == nil {
		ws = map[*watch]struct{}{}
		m[key] = ws
	}
	ws[w] = struct{}{}
}

func (h *Hub) remove(m map[string]map[*watch]struct{}, key string, w *watch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(m[key], w)
	if len(m[key]) == 0 {
		delete(m, key)
	}
}

// Cause returns the access error that ended ctx, or nil when ctx ended
// for another reason (the client went away) or has not ended.
func Cause(ctx context.Context) error {
	var e *codecrafter.Error
	if err := context.Cause(ctx); errors.As(err, &e) {
		return err
	}
	return nil
}
