// Package realtime is a session's chat, typing indicators and presence.
// Chat messages are stored, then published. A process follows a session's
// chat once for all its subscribers (a stream.Hub): it subscribes to the
// bus first, then reads the store's tail, then hands out live messages
// above it, re-reading the store on a gap, so that it misses nothing and
// sends nothing twice (the discipline of executionOutput); a subscriber
// that resumes from an older message replays the store up to the
// follower, then joins it. Typing is
// ephemeral: never stored, and it expires by itself on the subscriber's
// side. Presence is a codecrafter.Presence registry.
package realtime

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/access"
	"github.com/codecrafter/codecrafter/batch"
	"github.com/codecrafter/codecrafter/push"
	"github.com/codecrafter/codecrafter/stream"
)

// Config tunes the service. Zero fields take the defaults.
type Config struct {
	// TypingTTL is how long a typing indicator lasts without a refresh
	// (default 5 s): a client that stops refreshing is shown not typing.
	TypingTTL time.Duration
	// Metrics, if set, observes chat delivery latency.
	Metrics *Metrics
	// MessageBuffer is how many messages MessageAdded holds for a reader
	// (default 256); one slower than that is dropped and watches again
	// from the store.
	MessageBuffer int
}

// Defaults.
const (
	DefaultTypingTTL     = 5 * time.Second
	DefaultMessageBuffer = 256
	MaxPageLimit         = 100 // messages(limit)
	replayPage           = 100
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
	chat     *stream.Hub[*codecrafter.Message] // one follower per session
	recent   *access.Recent                    // authorization from recent session reads (authorizeRecent)
	sends    *batch.Queues[*sendRequest]       // per session: messages waiting for its writer
}

// New returns a Service. limit (may be nil) rate-limits sendMessage per user.
func New(cfg Config, sessions codecrafter.SessionStore, messages codecrafter.MessageStore, bus codecrafter.Bus,
	presence codecrafter.Presence, limit codecrafter.Limiter, logger *slog.Logger) *Service {
	if cfg.TypingTTL <= 0 {
		cfg.TypingTTL = DefaultTypingTTL
	}
	if cfg.MessageBuffer <= 0 {
		cfg.MessageBuffer = DefaultMessageBuffer
	}
	s := &Service{cfg: cfg, sessions: sessions, messages: messages, bus: bus, presence: presence,
		limit: limit, log: logger, now: time.Now, recent: access.NewRecent(sessions, bus, logger)}
	s.sends = batch.New(maxSendBatch, s.commitSends)
	s.chat = stream.NewHub(stream.HubConfig[*codecrafter.Message]{Source: s.chatStream, Tail: s.tail})
	return s
}

// WatchAccess follows the bus's access changes until ctx ends, so that
// Send may authorize against a session read shortly before
// (access.Recent). Without it every message reads the session.
func (s *Service) WatchAccess(ctx context.Context) error { return s.recent.Watch(ctx) }

// Send stores a chat message from the caller, then publishes it, and
// clears the caller's typing indicator.
func (s *Service) Send(ctx context.Context, sessionID, body string) (*codecrafter.Message, error) {
	userID, err := s.authorizeRecent(ctx, sessionID, codecrafter.ActionChat)
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
	r := &sendRequest{ctx: ctx, m: m, done: make(chan error, 1)}
	s.sends.Add(sessionID, r)
	// Not abandoned when ctx ends: once queued the message is stored (or
	// not) by the writer, and the answer says which.
	if err := <-r.done; err != nil {
		return nil, err
	}
	return m, nil
}

// sendRequest is a message waiting for its session's writer.
type sendRequest struct {
	ctx  context.Context // the sender's: its values, for the logs
	m    *codecrafter.Message
	done chan error // buffered: the writer never waits for the sender
}

// Bounds of a group of messages stored in one write.
const (
	maxSendBatch = 32
	sendTimeout  = 30 * time.Second
)

// commitSends stores a session's queued messages in one append where
// they fit, publishes them in order and clears their senders' typing.
func (s *Service) commitSends(sessionID string, batch []*sendRequest) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), sendTimeout)
	defer cancel()
	ms := make([]*codecrafter.Message, len(batch))
	for i, r := range batch {
		ms[i] = r.m
	}
	err := s.messages.AppendMessages(ctx, ms)
	// Answered once published, as a single send was: a sender that hears
	// back knows its message and its typing's end are on their way.
	defer func() {
		for _, r := range batch {
			if r.m.Seq == 0 { // not stored: the write failed before it
				r.done <- err
			} else {
				r.done <- nil
			}
		}
	}()
	var stored [][]byte
	var senders []string // each once, in order: their typing ends
	for _, m := range ms {
		if m.Seq != 0 {
			stored = append(stored, encodeMessage(m))
			if !slices.Contains(senders, m.UserID) {
				senders = append(senders, m.UserID)
			}
		}
	}
	if len(stored) == 0 {
		return
	}
	if err := codecrafter.PublishAll(ctx, s.bus, codecrafter.ChatTopic(sessionID), stored); err != nil {
		s.log.WarnContext(ctx, "publish messages", "session", sessionID, "err", err)
	}
	for _, u := range senders {
		s.publishTyping(ctx, sessionID, u, false)
	}
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
//
// It is WatchMessages for a channel reader: a reader more than
// Config.MessageBuffer messages behind is dropped by the session's
// follower, and once it has read those buffered it watches again after
// the last, from the store: it too misses nothing.
func (s *Service) MessageAdded(ctx context.Context, sessionID string, after *string) (<-chan *codecrafter.Message, error) {
	seq, err := s.watchable(ctx, sessionID, after)
	if err != nil {
		return nil, err
	}
	buf := make(chan *codecrafter.Message, s.cfg.MessageBuffer)
	ended := make(chan error, 1)
	last := seq // of the last message put in buf; read after end, which follows the last emit
	emit := func(m *codecrafter.Message) bool {
		select {
		case buf <- m:
			last = m.Seq
			return true
		default:
			return false
		}
	}
	end := func(err error) { ended <- err }
	if err := s.watchChat(ctx, sessionID, seq, emit, end); err != nil {
		return nil, err
	}
	out := make(chan *codecrafter.Message)
	go func() {
		defer close(out)
		forward := func(m *codecrafter.Message) bool {
			select {
			case out <- m:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case m := <-buf:
				if !forward(m) {
					return
				}
			case err := <-ended:
				for len(buf) > 0 { // the rest: no emit comes after end
					if !forward(<-buf) {
						return
					}
				}
				if err == nil || ctx.Err() != nil {
					return
				}
				// Fell behind, and the reader has now read all it was
				// given: watch again from there.
				if err := s.watchChat(ctx, sessionID, last, emit, end); err != nil {
					s.log.WarnContext(ctx, "chat: watch again", "session", sessionID, "err", err)
					return
				}
			}
		}
	}()
	return out, nil
}

// WatchMessages calls emit with the session's new messages, each once, in
// order (with after as in MessageAdded), and end once after the last: nil
// when ctx ended, UNAVAILABLE when emit returned false (the watcher could
// not keep up; the message says which after to watch again with). emit
// must not block: it is called on the session's one follower in this
// process (or on the goroutine replaying the store for this watcher), with
// the same *Message for every watcher. Errors (access, a bad after, the
// bus or store unavailable) are returned at once, and then neither emit
// nor end is called.
func (s *Service) WatchMessages(ctx context.Context, sessionID string, after *string, emit func(*codecrafter.Message) bool, end func(error)) error {
	seq, err := s.watchable(ctx, sessionID, after)
	if err != nil {
		return err
	}
	return s.watchChat(ctx, sessionID, seq, emit, end)
}

// watchable checks the caller may watch the session's chat, and returns
// the seq to watch after (-1: from now on).
func (s *Service) watchable(ctx context.Context, sessionID string, after *string) (int, error) {
	seq, err := afterSeq(sessionID, after)
	if err != nil {
		return 0, err
	}
	if _, err := s.authorizeRecent(ctx, sessionID, codecrafter.ActionRead); err != nil {
		return 0, err
	}
	if after == nil || *after == "" {
		return -1, nil
	}
	return seq, nil
}

// watchChat watches the session's chat on the hub, counting deliveries
// and saying in a fell-behind error where to resume.
func (s *Service) watchChat(ctx context.Context, sessionID string, after int, emit func(*codecrafter.Message) bool, end func(error)) error {
	last := after // of the last message emitted; read by end, after the last emit
	return s.chat.Watch(ctx, sessionID, after, func(m *codecrafter.Message) bool {
		s.cfg.Metrics.countDelivery() // before: once emitted, the subscriber may look
		if !emit(m) {
			return false
		}
		last = m.Seq
		return true
	}, func(err error) {
		if codecrafter.IsCode(err, codecrafter.EUNAVAILABLE) {
			msg := "live chat fell behind; subscribe again"
			if last > 0 {
				msg += fmt.Sprintf(" with after: %q", codecrafter.MessageID(sessionID, last))
			}
			err = codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, msg)
		}
		end(err)
	})
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

// chatStream is a session's chat as a numbered stream.
func (s *Service) chatStream(sessionID string) stream.Source[*codecrafter.Message] {
	return stream.Source[*codecrafter.Message]{
		Name: "chat", Log: s.log.With("session", sessionID),
		Seq:    func(m *codecrafter.Message) int { return m.Seq },
		Decode: func(b []byte) (*codecrafter.Message, error) { return decodeMessage(sessionID, b) },
		Read: func(ctx context.Context, after int) ([]*codecrafter.Message, bool, error) {
			ms, err := s.messages.Messages(ctx, sessionID, after, replayPage)
			return ms, len(ms) == replayPage, err
		},
		Subscribe: func(ctx context.Context) (<-chan []byte, error) {
			return s.bus.Subscribe(ctx, codecrafter.ChatTopic(sessionID))
		},
		Live: func(m *codecrafter.Message) { s.cfg.Metrics.observeDelivery(s.now().Sub(m.CreatedAt)) },
	}
}

// SetTyping announces that the caller is (or stopped) typing. A client
// keeps an indicator on by sending true again within the TTL.
func (s *Service) SetTyping(ctx context.Context, sessionID string, typing bool) error {
	userID, err := s.authorizeRecent(ctx, sessionID, codecrafter.ActionChat)
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
	if _, err := s.authorizeRecent(ctx, sessionID, codecrafter.ActionRead); err != nil {
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
	if _, err := s.authorizeRecent(ctx, sessionID, codecrafter.ActionRead); err != nil {
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
	push.OnEnd(ctx, release)
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

// authorizeRecent is authorize from a session read shortly before
// (access.Recent): for sends and typing, the hot paths, and for
// subscriptions, whose resolvers watch access before this check (so a
// change the held read missed still ends them when its event comes).
func (s *Service) authorizeRecent(ctx context.Context, sessionID string, action codecrafter.Action) (string, error) {
	_, userID, err := s.recent.Authorize(ctx, sessionID, action)
	return userID, err
}

// authorize checks the caller may take action in the session: NOT_FOUND
// for outsiders, FORBIDDEN when their role does not allow it.
func (s *Service) authorize(ctx context.Context, sessionID string, action codecrafter.Action) (string, error) {
	_, userID, err := access.Caller(ctx, s.sessions, sessionID, action)
	return userID, err
}
