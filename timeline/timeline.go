// Package timeline tells a session's story in one order: bursts of edits
// (per author), chat messages, runs once they end, and membership changes
// (joins, leaves, removals, role changes).
//
// Nothing is stored for it: a read merges the sources' stored records
// (the edit log, the chat, the runs, the membership history), each item
// keyed by (time, kind rank, id), and a cursor is that key. A
// subscription subscribes to every source first, reads, sends what comes
// after the cursor, then goes on live, dropping what the read already
// covered (by each source's own order: message seq, revision, membership
// seq, run id), so the switch has no gap and no duplicate.
//
// An edit burst is an author's edits each less than BurstGap after their
// previous one (others may edit in between: editCount says how many are
// theirs). It is keyed by its first edit, so while it grows its cursor
// stays, and a subscriber gets it again with the new toRevision.
package timeline

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/access"
	"github.com/codecrafter/codecrafter/events"
	"github.com/codecrafter/codecrafter/stream"
)

// Kind is what a timeline item tells.
type Kind string

const (
	KindEdits       Kind = "EDITS"
	KindMessage     Kind = "MESSAGE"
	KindRun         Kind = "RUN"
	KindJoined      Kind = "JOINED"
	KindLeft        Kind = "LEFT"
	KindRemoved     Kind = "REMOVED"
	KindRoleChanged Kind = "ROLE_CHANGED"
)

// Limits.
const (
	BurstGap     = 3 * time.Second // an author's longer pause starts a new burst
	DefaultLimit = 50
	MaxLimit     = 200
)

// Item is one entry of the timeline; which fields are set depends on Kind.
type Item struct {
	Cursor string
	Kind   Kind
	At     time.Time // for EDITS: the burst's last edit
	UserID string    // author, who ran, who joined, left, was removed or had their role changed
	// EDITS
	FromRevision, ToRevision, EditCount int
	Message                             *codecrafter.Message   // MESSAGE
	Execution                           *codecrafter.Execution // RUN
	Role                                codecrafter.Role       // JOINED, ROLE_CHANGED: the role they have now

	key  key
	last time.Time // EDITS: the author's last edit in the burst
}

// Store is what a Service reads.
type Store interface {
	codecrafter.SessionStore
	codecrafter.MessageStore
	codecrafter.EditStore
	codecrafter.ExecutionStore
	codecrafter.MemberEventStore
}

// Chat and Editor stream a session's messages and edits, each once and in
// order, to the caller in ctx; with after or sinceRevision nil, from what
// is stored now on (realtime.Service and editing.Service).
type (
	Chat interface {
		MessageAdded(ctx context.Context, sessionID string, after *string) (<-chan *codecrafter.Message, error)
	}
	Editor interface {
		CodeEdited(ctx context.Context, sessionID string, sinceRevision *int) (<-chan *codecrafter.Edit, error)
	}
)

// Service reads and follows timelines for the caller in ctx.
type Service struct {
	store  Store
	bus    codecrafter.Bus // MembersTopic, SessionExecutionsTopic
	chat   Chat
	editor Editor
	log    *slog.Logger
	now    func() time.Time
}

// New returns a Service.
func New(store Store, bus codecrafter.Bus, chat Chat, editor Editor, logger *slog.Logger) *Service {
	return &Service{store: store, bus: bus, chat: chat, editor: editor, log: logger, now: time.Now}
}

// Page returns up to limit items after the cursor after (nil: from the
// start), oldest first. The last item, when it is an edit burst, may
// still grow; Follow sends it again when it does.
func (s *Service) Page(ctx context.Context, sessionID string, after *string, limit int) ([]*Item, error) {
	if limit < 1 || limit > MaxLimit {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "limit: must be 1 to %d, got %d", MaxLimit, limit)
	}
	k, err := parseCursor(after)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, sessionID); err != nil {
		return nil, err
	}
	st, err := s.read(ctx, sessionID, k, limit)
	if err != nil {
		return nil, err
	}
	return st.items[:min(limit, len(st.items))], nil
}

// Follow streams the items after the cursor after (nil: from now on),
// then new ones as they come, and an edit burst again (same cursor) each
// time it grows. Resuming after a cursor, the bursts at or before it that
// are still open (their author's last edit less than BurstGap ago) are
// sent again first: they may have grown since. The channel closes when
// ctx ends.
func (s *Service) Follow(ctx context.Context, sessionID string, after *string) (<-chan *Item, error) {
	k, err := parseCursor(after)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	ok := false
	defer func() {
		if !ok {
			cancel()
		}
	}()
	// Every source first, then the read: nothing falls in between.
	members, err := s.bus.Subscribe(ctx, codecrafter.MembersTopic(sessionID))
	if err != nil {
		return nil, unavailable(err)
	}
	runs, err := s.bus.Subscribe(ctx, codecrafter.SessionExecutionsTopic(sessionID))
	if err != nil {
		return nil, unavailable(err)
	}
	if err := s.authorize(ctx, sessionID); err != nil {
		return nil, err
	}
	msgs, err := s.chat.MessageAdded(ctx, sessionID, nil)
	if err != nil {
		return nil, err
	}
	edits, err := s.editor.CodeEdited(ctx, sessionID, nil)
	if err != nil {
		return nil, err
	}
	if after == nil { // from now on: what is stored after now, and on
		k = key{ms: s.now().UnixMilli(), rank: rankRun + 1}
	}
	st, err := s.read(ctx, sessionID, k, 0)
	if err != nil {
		return nil, err
	}
	if after != nil {
		st.items = append(st.items, st.open(k, s.now())...)
		slices.SortFunc(st.items, func(a, b *Item) int { return a.key.cmp(b.key) })
	}
	ok = true
	out := make(chan *Item)
	go func() {
		var wg sync.WaitGroup
		defer close(out)
		defer wg.Wait()
		defer cancel()
		f := follower{s: s, sessionID: sessionID, after: k, st: st, out: out}
		for _, it := range st.items {
			if !f.send(ctx, it) {
				return
			}
		}
		st.items = nil // sent: an idle subscription keeps only the open bursts
		memberEvents := make(chan *codecrafter.MemberEvent)
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream.Follow(ctx, s.memberStream(sessionID), members, st.memberSeq, memberEvents)
		}()
		f.live(ctx, msgs, edits, memberEvents, runs)
	}()
	return out, nil
}

// state is what a read found: the items after a cursor, in order, and how
// far each source was read.
type state struct {
	items     []*Item
	msgSeq    int             // the last message read
	rev       int             // the last revision read
	memberSeq int             // the last membership event read
	runs      map[string]bool // runs read, ended
	bursts    map[string]*Item
}

const readPage = 200

// read reads the sources of the session from before k and keeps the
// items after it. With limit > 0 (a page), it stops reading the chat and
// the membership history past limit items after k; with 0 it reads them
// to the end, and the state says where each source ended.
func (s *Service) read(ctx context.Context, sessionID string, k key, limit int) (*state, error) {
	st := &state{runs: map[string]bool{}, bursts: map[string]*Item{}}
	var items []*Item
	keep := func(it *Item) bool {
		if it.key.cmp(k) <= 0 {
			return false
		}
		items = append(items, it)
		return true
	}
	// Past the limit, a few more: stored order and time order may differ a little.
	full := func(n, got int) bool { return got < readPage || (limit > 0 && n >= limit+readPage/4) }
	for n := 0; ; { // a session's membership history is short: from the first
		evs, err := s.store.MemberEvents(ctx, sessionID, st.memberSeq, readPage)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if keep(memberItem(e)) {
				n++
			}
			st.memberSeq = e.Seq
		}
		if full(n, len(evs)) {
			break
		}
	}
	if k != start {
		var err error
		if st.msgSeq, err = s.chatBefore(ctx, sessionID, time.UnixMilli(k.ms).Add(-clockSlack)); err != nil {
			return nil, err
		}
	}
	for n := 0; ; {
		ms, err := s.store.Messages(ctx, sessionID, st.msgSeq, readPage)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if keep(messageItem(m)) {
				n++
			}
			st.msgSeq = m.Seq
		}
		if full(n, len(ms)) {
			break
		}
	}
	runs, err := s.runsAround(ctx, sessionID, k)
	if err != nil {
		return nil, err
	}
	for _, e := range runs {
		if it := runItem(e); it != nil {
			keep(it)
			st.runs[e.ID] = true
		}
	}
	edits, err := s.editsAround(ctx, sessionID, k)
	if err != nil {
		return nil, err
	}
	for _, e := range edits {
		if it, fresh := st.addEdit(e); fresh {
			keep(it)
		}
	}
	slices.SortFunc(items, func(a, b *Item) int { return a.key.cmp(b.key) })
	st.items = items
	return st, nil
}

// Sources are read from a little before the time they are needed from:
// items of one source are stored in about the order of their times, but
// not exactly (clocks of replicas, writes that wait).
const (
	clockSlack = time.Minute
	// runWindow bounds a run's life: the reaper ends runs QUEUED or
	// RUNNING for 10 minutes.
	runWindow = time.Hour
)

// chatBefore returns a seq such that the messages up to it are older than
// t (a place to read the chat from): it gallops over the chat with
// one-message reads, then bisects to within a page.
func (s *Service) chatBefore(ctx context.Context, sessionID string, t time.Time) (int, error) {
	older := func(seq int) (bool, error) { // message seq is stored and older than t
		ms, err := s.store.Messages(ctx, sessionID, seq-1, 1)
		return err == nil && len(ms) == 1 && ms[0].CreatedAt.Before(t), err
	}
	lo, hi := 0, 0 // older(lo) or lo == 0; !older(hi)
	for step := 32; ; step *= 2 {
		ok, err := older(lo + step)
		if err != nil {
			return 0, err
		}
		if !ok {
			hi = lo + step
			break
		}
		lo += step
	}
	for hi-lo > 32 {
		mid := (lo + hi) / 2
		ok, err := older(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// runsAround returns the session's runs that may have ended after k: all
// of them when k is the start, else the newest, more each time, until one
// created runWindow before k is among them.
func (s *Service) runsAround(ctx context.Context, sessionID string, k key) ([]*codecrafter.Execution, error) {
	if k == start {
		return s.store.ListExecutions(ctx, sessionID, 0)
	}
	since := time.UnixMilli(k.ms).Add(-runWindow)
	for n := 16; ; n *= 4 {
		runs, err := s.store.ListExecutions(ctx, sessionID, n)
		if err != nil || len(runs) < n || runs[len(runs)-1].CreatedAt.Before(since) {
			return runs, err
		}
	}
}

// editsAround returns enough of the edit log, up to the head, to tell the
// bursts after k and the bursts still open: all of it when k is the
// start; else back from the head, further each time, until the log read
// starts more than 2*BurstGap before k and every burst that might have
// begun before what was read has ended.
func (s *Service) editsAround(ctx context.Context, sessionID string, k key) ([]*codecrafter.Edit, error) {
	if k == start {
		_, _, edits, _, err := s.store.EditsSince(ctx, sessionID, 0)
		return edits, err
	}
	_, _, tail, ok, err := s.store.EditsSince(ctx, sessionID, math.MaxInt)
	if err != nil || !ok || len(tail) == 0 {
		return tail, err
	}
	head := tail[len(tail)-1].Revision
	need := time.UnixMilli(k.ms).Add(-2 * BurstGap)
	now := s.now()
	for back := 64; ; back *= 4 {
		base, _, edits, _, err := s.store.EditsSince(ctx, sessionID, max(head-back, 0))
		if err != nil {
			return nil, err
		}
		if base == 0 || len(edits) == 0 || (edits[0].CreatedAt.Before(need) && settled(edits, now)) {
			return edits, nil
		}
	}
}

// settled reports whether no burst that may have begun before edits[0]
// (its first edit here less than BurstGap after edits[0]) is still open.
func settled(edits []*codecrafter.Edit, now time.Time) bool {
	st := &state{bursts: map[string]*Item{}}
	var uncertain []*Item
	t0 := edits[0].CreatedAt
	for _, e := range edits {
		if b, fresh := st.addEdit(e); fresh && e.CreatedAt.Sub(t0) < BurstGap {
			uncertain = append(uncertain, b)
		}
	}
	for _, b := range uncertain {
		if now.Sub(b.last) < BurstGap {
			return false
		}
	}
	return true
}

// addEdit puts e in its author's burst; fresh says it starts one. Edits
// must come in revision order.
func (st *state) addEdit(e *codecrafter.Edit) (it *Item, fresh bool) {
	st.rev = e.Revision
	if b := st.bursts[e.UserID]; b != nil && e.CreatedAt.Sub(b.last) < BurstGap {
		b.ToRevision, b.EditCount, b.last = e.Revision, b.EditCount+1, e.CreatedAt
		b.At = later(b.At, e.CreatedAt)
		return b, false
	}
	b := &Item{Kind: KindEdits, UserID: e.UserID, At: e.CreatedAt.UTC(), last: e.CreatedAt,
		FromRevision: e.Revision, ToRevision: e.Revision, EditCount: 1,
		key: key{e.CreatedAt.UnixMilli(), rankEdits, pad(e.Revision)}}
	b.Cursor = b.key.cursor()
	st.bursts[e.UserID] = b
	return b, true
}

// open returns the bursts at or before k whose author may still add to them.
func (st *state) open(k key, now time.Time) []*Item {
	var out []*Item
	for _, b := range st.bursts {
		if b.key.cmp(k) <= 0 && now.Sub(b.last) < BurstGap {
			out = append(out, b)
		}
	}
	return out
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b.UTC()
	}
	return a
}

// follower sends a subscription's live items.
type follower struct {
	s         *Service
	sessionID string
	after     key // where the subscription started
	st        *state
	out       chan<- *Item
}

func (f *follower) send(ctx context.Context, it *Item) bool {
	cp := *it // bursts change as they grow
	select {
	case f.out <- &cp:
		return true
	case <-ctx.Done():
		return false
	}
}

func (f *follower) live(ctx context.Context, msgs <-chan *codecrafter.Message, edits <-chan *codecrafter.Edit,
	members <-chan *codecrafter.MemberEvent, runs <-chan []byte) {
	for {
		var it *Item
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return // the chat's subscription ended (access, or ctx)
			}
			if m.Seq <= f.st.msgSeq {
				continue // read already
			}
			f.st.msgSeq = m.Seq
			it = messageItem(m)
		case e, ok := <-edits:
			if !ok {
				return
			}
			if e.Revision <= f.st.rev {
				continue
			}
			it, _ = f.st.addEdit(e)
		case e := <-members:
			it = memberItem(e)
		case b, ok := <-runs:
			if !ok { // the bus ended it: subscribe again, and read what was missed
				if runs = f.resubscribe(ctx); runs == nil || !f.catchUpRuns(ctx) {
					return
				}
				continue
			}
			e, err := events.DecodeExecution(b)
			if err != nil {
				f.s.log.WarnContext(ctx, "bad session execution event", "session", f.sessionID, "err", err)
				continue
			}
			if it = runItem(e); it == nil || f.st.runs[e.ID] {
				continue
			}
			f.st.runs[e.ID] = true
		}
		if !f.send(ctx, it) {
			return
		}
	}
}

func (f *follower) resubscribe(ctx context.Context) <-chan []byte {
	wait := 50 * time.Millisecond
	for ctx.Err() == nil {
		ch, err := f.s.bus.Subscribe(ctx, codecrafter.SessionExecutionsTopic(f.sessionID))
		if err == nil {
			return ch
		}
		f.s.log.WarnContext(ctx, "timeline: resubscribing to runs", "session", f.sessionID, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		wait = min(2*wait, 5*time.Second)
	}
	return nil
}

// catchUpRuns sends the ended runs the store has that were not sent.
func (f *follower) catchUpRuns(ctx context.Context) bool {
	runs, err := f.s.runsAround(ctx, f.sessionID, f.after)
	if err != nil {
		f.s.log.WarnContext(ctx, "timeline: reading runs", "session", f.sessionID, "err", err)
		return ctx.Err() == nil // the next event tries again
	}
	var items []*Item
	for _, e := range runs {
		if it := runItem(e); it != nil && !f.st.runs[e.ID] && it.key.cmp(f.after) > 0 {
			f.st.runs[e.ID] = true
			items = append(items, it)
		}
	}
	slices.SortFunc(items, func(a, b *Item) int { return a.key.cmp(b.key) })
	for _, it := range items {
		if !f.send(ctx, it) {
			return false
		}
	}
	return true
}

func (s *Service) memberStream(sessionID string) stream.Source[*codecrafter.MemberEvent] {
	return stream.Source[*codecrafter.MemberEvent]{
		Name: "membership events", Log: s.log.With("session", sessionID),
		Seq:    func(e *codecrafter.MemberEvent) int { return e.Seq },
		Decode: func(b []byte) (*codecrafter.MemberEvent, error) { return codecrafter.DecodeMemberEvent(sessionID, b) },
		Read: func(ctx context.Context, after int) ([]*codecrafter.MemberEvent, bool, error) {
			evs, err := s.store.MemberEvents(ctx, sessionID, after, readPage)
			return evs, len(evs) == readPage, err
		},
		Subscribe: func(ctx context.Context) (<-chan []byte, error) {
			return s.bus.Subscribe(ctx, codecrafter.MembersTopic(sessionID))
		},
	}
}

// authorize checks the caller takes part in the session: others get
// NOT_FOUND, as if it did not exist.
func (s *Service) authorize(ctx context.Context, sessionID string) error {
	_, _, err := access.Caller(ctx, s.store, sessionID, codecrafter.ActionRead)
	return err
}

func unavailable(err error) error {
	return codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "the live timeline is unavailable; try again shortly")
}

// Items at the same millisecond: membership first (a join before what the
// newcomer does), then edits, messages, runs.
const (
	rankMember = iota
	rankEdits
	rankMessage
	rankRun
)

func memberItem(e *codecrafter.MemberEvent) *Item {
	it := &Item{Kind: Kind(e.Kind), At: e.At.UTC(), UserID: e.UserID, key: key{e.At.UnixMilli(), rankMember, pad(e.Seq)}}
	if e.Kind == codecrafter.MemberJoined || e.Kind == codecrafter.MemberRoleChanged {
		it.Role = e.Role
	}
	it.Cursor = it.key.cursor()
	return it
}

func messageItem(m *codecrafter.Message) *Item {
	it := &Item{Kind: KindMessage, At: m.CreatedAt.UTC(), UserID: m.UserID, Message: m, key: key{m.CreatedAt.UnixMilli(), rankMessage, pad(m.Seq)}}
	it.Cursor = it.key.cursor()
	return it
}

// runItem is the item of an ended run; nil while it is not.
func runItem(e *codecrafter.Execution) *Item {
	if !e.Status.Final() || e.FinishedAt == nil {
		return nil
	}
	at := e.FinishedAt.UTC()
	it := &Item{Kind: KindRun, At: at, UserID: e.UserID, Execution: e, key: key{at.UnixMilli(), rankRun, e.ID}}
	it.Cursor = it.key.cursor()
	return it
}

// key orders the timeline: time in milliseconds, rank, then an id that
// sorts as a string (numbers zero-padded).
type key struct {
	ms   int64
	rank int
	id   string
}

var start = key{ms: math.MinInt64}

func (a key) cmp(b key) int {
	return cmp.Or(cmp.Compare(a.ms, b.ms), cmp.Compare(a.rank, b.rank), strings.Compare(a.id, b.id))
}

func pad(n int) string { return fmt.Sprintf("%012d", n) }

// A cursor is its key, opaque: base64url of "ms.rank.id".
func (a key) cursor() string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d.%d.%s", a.ms, a.rank, a.id)))
}

func parseCursor(c *string) (key, error) {
	if c == nil || *c == "" {
		return start, nil
	}
	bad := codecrafter.Errorf(codecrafter.EINVALID, "after: %q is not a timeline cursor", *c)
	b, err := base64.RawURLEncoding.DecodeString(*c)
	if err != nil {
		return key{}, bad
	}
	parts := strings.SplitN(string(b), ".", 3)
	if len(parts) != 3 || parts[2] == "" {
		return key{}, bad
	}
	ms, err1 := strconv.ParseInt(parts[0], 10, 64)
	rank, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || rank < rankMember || rank > rankRun {
		return key{}, bad
	}
	return key{ms, rank, parts[2]}, nil
}
