// Package realtime is a session's chat, typing indicators and presence.
// Chat messages are stored, then published; a subscriber subscribes to
// the bus first, then reads the store, then forwards live messages above
// what it read, re-reading the store on a gap, so that it misses nothing
// and sees nothing twice (the discipline of executionOutput). Typing is
// ephemeral: never stored, and it expires by itself on the subscriber's
// side. Presence is a codecrafter.Presence registry.
package realtime

import (
	"context"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/codecrafter/codecrafter"
)

// Config tunes the service. Zero fields take the defaults.
type Config struct {
	// TypingTTL is how long a typing indicator lasts without a refresh
	// (default 5 s): a client that stops refreshing is shown not typing.
	TypingTTL time.Duration
	// Metrics, if set, observes chat delivery latency.
	Metrics *Metrics
}

// Defaults.
const (
	DefaultTypingTTL = 5 * time.Second
	MaxPageLimit     = 100 // messages(limit)
	replayPage       = 100
	// Waits between attempts to subscribe again after the bus ended a
	// chat subscription.
	resubscribeMin = 50 * time.Millisecond
	resubscribeMax = 5 * time.Second
)

// Service implements the realtime operations for the caller in ctx.
type Service struct {
	cfg      Config
	sessions codecrafter.SessionStore
	messages codecrafter.MessageStore
	bus      codecrafter.Bus
	presence codecrafter.Presence
	limit    codecrafter.Limiter // messages per user; nil: none
	log      *slog.Logger
	now      func() time.Time
}

// New returns a Service. limit (may be nil) rate-limits sendMessage per user.
func New(cfg Config, sessions codecrafter.SessionStore, messages codecrafter.MessageStore, bus codecrafter.Bus,
	presence codecrafter.Presence, limit codecrafter.Limiter, logger *slog.Logger) *Service {
	if cfg.TypingTTL <= 0 {
		cfg.TypingTTL = DefaultTypingTTL
	}
	return &Service{cfg: cfg, sessions: sessions, messages: messages, bus: bus, presence: presence,
		limit: limit, log: logger, now: time.Now}
}

// Send stores a chat message from the caller, then publishes it, and
// clears the caller's typing indicator.
func (s *Service) Send(ctx context.Context, sessionID, body string) (*codecrafter.Message, error) {
	userID, err := s.authorize(ctx, sessionID, codecrafter.ActionChat)
	if err != nil {
		return nil, err
	}
	body = strings.TrimSpace(body)
	switch n := utf8.RuneCountInString(body); {
	case !utf8.ValidString(body):
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "body: must be valid UTF-8")
	case n == 0:
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "body: must not be empty")
	case n > codecrafter.MaxMessageLen:
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "body: at most %d characters, got %d", codecrafter.MaxMessageLen, n)
	}
	if s.limit != nil {
		wait, err := s.limit.Take(ctx, userID)
		if err != nil {
			return nil, err
		}
		if wait > 0 {
			e := codecrafter.Errorf(codecrafter.ERATELIMITED, "you are sending messages too fast; wait a moment")
			e.RetryAfter = wait
			return nil, e
		}
	}
	m := &codecrafter.Message{SessionID: sessionID, UserID: userID, Body: body, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	if err := s.messages.AppendMessage(ctx, m); err != nil {
		return nil, err
	}
	// Stored: finish publishing even if the caller goes away.
	pctx := context.WithoutCancel(ctx)
	if err := s.bus.Publish(pctx, codecrafter.ChatTopic(sessionID), encodeMessage(m)); err != nil {
		s.log.WarnContext(ctx, "publish message", "session", sessionID, "err", err)
	}
	s.publishTyping(pctx, sessionID, userID, false)
	return m, nil
}

// Messages pages a session's messages oldest first, after the message
// with id after (nil: from the first).
func (s *Service) Messages(ctx context.Context, sessionID string, after *string, limit int) ([]*codecrafter.Message, error) {
	if limit < 1 || limit > MaxPageLimit {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "limit: must be 1 to %d, got %d", MaxPageLimit, limit)
	}
	seq, err := afterSeq(sessionID, after)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorize(ctx, sessionID, codecrafter.ActionRead); err != nil {
		return nil, err
	}
	return s.messages.Messages(ctx, sessionID, seq, limit)
}

func afterSeq(sessionID string, after *string) (int, error) {
	if after == nil || *after == "" {
		return 0, nil
	}
	sid, seq, err := codecrafter.ParseMessageID(*after)
	if err != nil {
		return 0, err
	}
	if sid != sessionID {
		return 0, codecrafter.Errorf(codecrafter.EINVALID, "after: message %q is not of this session", *after)
	}
	return seq, nil
}

// MessageAdded streams the session's new messages, each once, in order.
// With after, it first replays the stored messages that came after that
// one, then goes on live with no gap and no duplicate across the switch.
// When the bus ends the live subscription (fell behind, connection lost),
// it subscribes again and catches up from the store. The channel closes
// when ctx ends.
func (s *Service) MessageAdded(ctx context.Context, sessionID string, after *string) (<-chan *codecrafter.Message, error) {
	seq, err := afterSeq(sessionID, after)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	live, err := s.bus.Subscribe(ctx, codecrafter.ChatTopic(sessionID))
	if err != nil {
		cancel()
		return nil, codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "live chat is unavailable; try again shortly")
	}
	if _, err := s.authorize(ctx, sessionID, codecrafter.ActionRead); err != nil {
		cancel()
		return nil, err
	}
	if after == nil {
		// From what is stored now on: a resync after the bus ended the
		// subscription needs to know where "now" was.
		if seq, err = s.tail(ctx, sessionID); err != nil {
			cancel()
			return nil, err
		}
	}
	out := make(chan *codecrafter.Message)
	go func() {
		defer cancel()
		defer close(out)
		f := chatFollower{s: s, sessionID: sessionID, out: out, last: seq}
		f.follow(ctx, live)
	}()
	return out, nil
}

// tail returns the seq of the session's last stored message (0: none). It
// gallops over the history, then bisects, so a long chat costs a few reads.
func (s *Service) tail(ctx context.Context, sessionID string) (int, error) {
	lo, hi := 0, -1 // lo <= tail (lo is stored, or 0); tail <= hi once hi >= 0
	// probe reads a page above k: the tail if the page is not full.
	probe := func(k int) (tail int, found bool, err error) {
		ms, err := s.messages.Messages(ctx, sessionID, k, replayPage)
		switch {
		case err != nil:
			return 0, false, err
		case len(ms) == 0:
			hi = k
		case len(ms) < replayPage:
			return ms[len(ms)-1].Seq, true, nil
		default:
			lo = ms[len(ms)-1].Seq
		}
		return 0, false, nil
	}
	for step := 0; hi < 0; step = max(2*step, replayPage) {
		if tail, found, err := probe(lo + step); found || err != nil {
			return tail, err
		}
	}
	for lo < hi {
		if tail, found, err := probe(lo + (hi-lo+1)/2 - 1); found || err != nil {
			return tail, err
		}
	}
	return lo, nil
}

// chatFollower sends a session's messages to out in seq order, each once.
type chatFollower struct {
	s         *Service
	sessionID string
	out       chan<- *codecrafter.Message
	last      int // seq of the last message sent (or skipped: before the start)
}

// Concurrent senders can reach the bus out of order: a message ahead of
// the next one expected is held for up to reorderWait (at most maxEarly of
// them) for the ones between to arrive, before the store is read. Without
// it every subscriber of the session re-reads the store at once.
const (
	reorderWait = 100 * time.Millisecond
	maxEarly    = 64
)

func (f *chatFollower) follow(ctx context.Context, live <-chan []byte) {
	early := map[int]*codecrafter.Message{}
	gap := time.NewTimer(time.Hour)
	gap.Stop()
	defer gap.Stop()
	waiting := false
	wait := func(on bool) {
		switch {
		case on && !waiting:
			gap.Reset(reorderWait)
		case !on && waiting:
			gap.Stop()
		}
		waiting = on
	}
	// catchUp sends what the store has; when the store fails it tries
	// again shortly, since no later event may come to trigger it.
	catchUp := func() bool {
		clear(early) // the store has them
		wait(false)
		err := f.catchUp(ctx)
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			f.s.log.WarnContext(ctx, "chat catch-up; retrying", "session", f.sessionID, "err", err)
			wait(true)
		}
		return true
	}
	if !catchUp() { // what came after the start (the replay of after:)
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-gap.C:
			waiting = false
			if !catchUp() {
				return
			}
		case b, ok := <-live:
			if !ok {
				if live = f.resubscribe(ctx); live == nil || !catchUp() {
					return
				}
				continue
			}
			m, err := decodeMessage(f.sessionID, b)
			if err != nil {
				f.s.log.WarnContext(ctx, "bad chat event", "session", f.sessionID, "err", err)
				continue
			}
			switch {
			case m.Seq <= f.last: // already sent (read from the store)
			case m.Seq == f.last+1:
				for m != nil { // m, then any held that follow it
					f.s.cfg.Metrics.observeDelivery(f.s.now().Sub(m.CreatedAt))
					if !f.send(ctx, m) {
						return
					}
					m = early[f.last+1]
					delete(early, f.last)
				}
				wait(len(early) > 0)
			case len(early) < maxEarly:
				early[m.Seq] = m
				wait(true)
			default: // too far behind for a late arrival: the store has them
				if !catchUp() {
					return
				}
			}
		}
	}
}

// resubscribe subscribes again after the bus ended the subscription,
// retrying with backoff; nil when ctx ended first. Its caller catches up
// from the store, which has whatever the bus lost meanwhile.
func (f *chatFollower) resubscribe(ctx context.Context) <-chan []byte {
	wait := resubscribeMin
	for ctx.Err() == nil {
		live, err := f.s.bus.Subscribe(ctx, codecrafter.ChatTopic(f.sessionID))
		if err == nil {
			return live
		}
		f.s.log.WarnContext(ctx, "chat resubscribe", "session", f.sessionID, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		wait = min(2*wait, resubscribeMax)
	}
	return nil
}

// catchUp sends what the store holds after the last message sent.
func (f *chatFollower) catchUp(ctx context.Context) error {
	for {
		ms, err := f.s.messages.Messages(ctx, f.sessionID, f.last, replayPage)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if !f.send(ctx, m) {
				return ctx.Err()
			}
		}
		if len(ms) < replayPage {
			return nil
		}
	}
}

func (f *chatFollower) send(ctx context.Context, m *codecrafter.Message) bool {
	select {
	case f.out <- m:
		f.last = m.Seq
		return true
	case <-ctx.Done():
		return false
	}
}

// SetTyping announces that the caller is (or stopped) typing. A client
// keeps an indicator on by sending true again within the TTL.
func (s *Service) SetTyping(ctx context.Context, sessionID string, typing bool) error {
	userID, err := s.authorize(ctx, sessionID, codecrafter.ActionChat)
	if err != nil {
		return err
	}
	s.publishTyping(ctx, sessionID, userID, typing)
	return nil
}

func (s *Service) publishTyping(ctx context.Context, sessionID, userID string, typing bool) {
	ev := TypingEvent{UserID: userID, Typing: typing}
	if err := s.bus.Publish(ctx, codecrafter.TypingTopic(sessionID), mustJSON(ev)); err != nil {
		s.log.WarnContext(ctx, "publish typing", "session", sessionID, "err", err)
	}
}

// Typing streams typing changes in the session: each user's true, and a
// false when they send a message, say so, or let the indicator lapse.
// Typing is never stored, so when the bus ends the subscription (fell
// behind, connection lost) the channel closes although ctx lives: the
// caller reports UNAVAILABLE and its client subscribes again.
func (s *Service) Typing(ctx context.Context, sessionID string) (<-chan *TypingEvent, error) {
	ctx, cancel := context.WithCancel(ctx)
	live, err := s.bus.Subscribe(ctx, codecrafter.TypingTopic(sessionID))
	if err != nil {
		cancel()
		return nil, codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "typing indicators are unavailable; try again shortly")
	}
	if _, err := s.authorize(ctx, sessionID, codecrafter.ActionRead); err != nil {
		cancel()
		return nil, err
	}
	out := make(chan *TypingEvent)
	go func() {
		defer cancel()
		defer close(out)
		s.followTyping(ctx, sessionID, live, out)
	}()
	return out, nil
}

func (s *Service) followTyping(ctx context.Context, sessionID string, live <-chan []byte, out chan<- *TypingEvent) {
	typing := map[string]time.Time{} // user -> when their indicator lapses
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	send := func(ev TypingEvent) bool {
		select {
		case out <- &ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		var ev TypingEvent
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			now := s.now()
			for u, until := range typing {
				if !now.Before(until) {
					delete(typing, u)
					if !send(TypingEvent{SessionID: sessionID, UserID: u, Typing: false}) {
						return
					}
				}
			}
		case b, ok := <-live:
			if !ok {
				return
			}
			var err error
			if ev, err = decodeTyping(sessionID, b); err != nil {
				s.log.WarnContext(ctx, "bad typing event", "session", sessionID, "err", err)
				continue
			}
			_, was := typing[ev.UserID]
			if ev.Typing {
				typing[ev.UserID] = s.now().Add(s.cfg.TypingTTL)
			} else {
				delete(typing, ev.UserID)
			}
			if was != ev.Typing && !send(ev) { // refreshes are not news
				return
			}
		}
		// Re-arm for the next indicator to lapse.
		timer.Stop()
		var next time.Time
		for _, until := range typing {
			if next.IsZero() || until.Before(next) {
				next = until
			}
		}
		if !next.IsZero() {
			timer.Reset(max(next.Sub(s.now()), 0))
		}
	}
}

// PresenceEvents streams who is online in the session: first one event per
// user online now, then each change.
// As with Typing, the channel closes early when the bus ends the
// subscription (the client subscribes again for a fresh list).
func (s *Service) PresenceEvents(ctx context.Context, sessionID string) (<-chan *codecrafter.PresenceChange, error) {
	ctx, cancel := context.WithCancel(ctx)
	live, err := s.bus.Subscribe(ctx, codecrafter.PresenceTopic(sessionID))
	if err != nil {
		cancel()
		return nil, codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "presence is unavailable; try again shortly")
	}
	if _, err := s.authorize(ctx, sessionID, codecrafter.ActionRead); err != nil {
		cancel()
		return nil, err
	}
	now, err := s.presence.Online(ctx, sessionID)
	if err != nil {
		cancel()
		return nil, err
	}
	out := make(chan *codecrafter.PresenceChange)
	go func() {
		defer cancel()
		defer close(out)
		online := map[string]bool{}
		send := func(c codecrafter.PresenceChange) bool {
			if online[c.UserID] == c.Online {
				return true // not news (the first list and live events overlap)
			}
			online[c.UserID] = c.Online
			select {
			case out <- &c:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, u := range now {
			if !send(codecrafter.PresenceChange{SessionID: sessionID, UserID: u, Online: true}) {
				return
			}
		}
		for b := range live {
			c, err := codecrafter.DecodePresenceChange(b)
			if err != nil {
				s.log.WarnContext(ctx, "bad presence event", "session", sessionID, "err", err)
				continue
			}
			if !send(c) {
				return
			}
		}
	}()
	return out, nil
}

// Hold keeps the caller online in the session while ctx lasts; every
// live subscription to a session holds it.
func (s *Service) Hold(ctx context.Context, sessionID string) {
	userID := codecrafter.UserIDFromContext(ctx)
	if userID == "" || s.presence == nil {
		return
	}
	release, err := s.presence.Hold(ctx, sessionID, userID)
	if err != nil {
		s.log.WarnContext(ctx, "presence hold", "session", sessionID, "err", err)
		return
	}
	context.AfterFunc(ctx, release)
}

// Online reports whether userID is online in the session (false when
// presence cannot tell).
func (s *Service) Online(ctx context.Context, sessionID, userID string) bool {
	users, err := s.presence.Online(ctx, sessionID)
	if err != nil {
		s.log.WarnContext(ctx, "presence", "session", sessionID, "err", err)
		return false
	}
	for _, u := range users {
		if u == userID {
			return true
		}
	}
	return false
}

// authorize checks the caller may take action in the session: NOT_FOUND
// for outsiders, FORBIDDEN when their role does not allow it.
func (s *Service) authorize(ctx context.Context, sessionID string, action codecrafter.Action) (string, error) {
	userID, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return "", err
	}
	sess, err := s.sessions.Session(ctx, sessionID)
	if codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		return "", codecrafter.Errorf(codecrafter.ENOTFOUND, "session not found")
	}
	if err != nil {
		return "", err
	}
	if _, err := sess.Authorize(userID, action); err != nil {
		return "", err
	}
	return userID, nil
}
