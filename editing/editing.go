// Package editing is the authority of a session's code: an edit made
// against a base revision is transformed over every edit applied since
// (package ot, the applied edit's insert first on a tie), appended to the
// log as the next revision by a compare-and-set, and published. The log
// is the truth: the code at any revision is its snapshot plus the edits
// after it. codeEdited subscribers replay from the log, then go on live.
package editing

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/access"
	"github.com/codecrafter/codecrafter/batch"
	"github.com/codecrafter/codecrafter/ot"
	"github.com/codecrafter/codecrafter/stream"
)

// Service runs the editing use cases for the caller in ctx.
type Service struct {
	sessions codecrafter.SessionStore
	edits    codecrafter.EditStore
	bus      codecrafter.Bus
	log      *slog.Logger
	now      func() time.Time

	queues *batch.Queues[*request] // per session: edits waiting for its writer
	heads  sync.Map                // session id -> *history, used by the session's writer only
	nHeads atomic.Int64

	recent *access.Recent // Edit's authorization, from recent session reads
}

// WatchAccess follows the bus's access changes until ctx ends, so that Edit
// may authorize against a session read shortly before (access.Recent).
// Without it (or while the subscription is down) every edit reads the
// session.
func (s *Service) WatchAccess(ctx context.Context) error { return s.recent.Watch(ctx) }

// remember caches h as the session's history; past maxHeads sessions the
// cache starts again empty (a bound, not an LRU: a miss costs one load).
func (s *Service) remember(sessionID string, h *history) {
	if _, had := s.heads.Swap(sessionID, h); had {
		return
	}
	if s.nHeads.Add(1) > maxHeads {
		s.heads.Range(func(k, _ any) bool { s.heads.Delete(k); return true })
		s.nHeads.Store(0)
	}
}

// Edit keeps each session's recent history in memory, so that a batch of
// edits usually costs one store write: the compare-and-set of the append
// finds out when another replica moved the head, and the history is
// reloaded.
const (
	keepEdits = 256  // beyond, the cached history drops its oldest half
	maxHeads  = 1000 // sessions whose history is cached
)

// New returns a Service.
func New(sessions codecrafter.SessionStore, edits codecrafter.EditStore, bus codecrafter.Bus, logger *slog.Logger) *Service {
	s := &Service{sessions: sessions, edits: edits, bus: bus, log: logger, now: time.Now,
		recent: access.NewRecent(sessions, bus, logger)}
	s.queues = batch.New(maxBatch, s.commit)
	return s
}

// OpInput is one component as a client sent it: exactly one field set.
type OpInput struct {
	Retain *int
	Insert *string
	Delete *int
}

// Input is an edit as a client sent it.
type Input struct {
	BaseRevision int
	Ops          []OpInput
	ClientID     *string // with Seq: the submission's identity, for resends
	Seq          *int
}

// Edit applies the caller's edit and returns it as applied, once stored.
// A resent edit (same clientId and seq) returns the edit as first applied.
func (s *Service) Edit(ctx context.Context, sessionID string, in Input) (*codecrafter.Edit, error) {
	sess, userID, err := s.recent.Authorize(ctx, sessionID, codecrafter.ActionEdit)
	if err != nil {
		return nil, err
	}
	op, err := parseOps(in.Ops)
	if err != nil {
		return nil, err
	}
	r := &request{ctx: ctx, sess: sess, userID: userID, base: in.BaseRevision, op: op, done: make(chan result, 1)}
	if in.ClientID != nil {
		r.clientID = *in.ClientID
		if r.clientID == "" || len(r.clientID) > 100 || in.Seq == nil || *in.Seq < 1 {
			return nil, codecrafter.Errorf(codecrafter.EINVALID, "clientId: 1 to 100 characters, with a positive seq")
		}
		r.seq = *in.Seq
	}
	if in.BaseRevision < 0 {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "baseRevision: must not be negative")
	}
	s.queues.Add(sessionID, r)
	select {
	case res := <-r.done:
		return res.edit, res.err
	case <-ctx.Done():
		// The writer may still store it: a resend with the same clientId
		// and seq finds out.
		return nil, codecrafter.Wrap(ctx.Err(), codecrafter.EUNAVAILABLE, "the edit was not confirmed in time; resend it with its clientId and seq")
	}
}

// Group commit: a session's edits queue up for its writer (one goroutine
// per session per process while there is work), which transforms and
// applies all the queued edits in order in memory, then stores them in
// one write; each answer waits until its edit is stored. One store round
// trip then carries many edits, which is what bounds a hot session.
// request is an edit waiting for its session's writer.
type request struct {
	ctx      context.Context
	sess     *codecrafter.Session
	userID   string
	base     int
	op       ot.Operation
	clientID string
	seq      int
	done     chan result // buffered: the writer never waits for the caller
}

type result struct {
	edit *codecrafter.Edit
	err  error
}

// maxBatch bounds the edits of one write.
const maxBatch = 64

// writeTimeout bounds a batch's store work, retries across replicas
// included (its requests may have ended; their edits are stored or not,
// each once).
const writeTimeout = 30 * time.Second

// commit applies batch in order on the session's history and stores the
// new edits, answering each request once its edit is stored. When
// another replica took a revision (the compare-and-set failed), it
// reloads and transforms the unanswered ones again, until writeTimeout.
func (s *Service) commit(sessionID string, batch []*request) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), writeTimeout)
	defer cancel()
	fail := func(err error) {
		s.heads.Delete(sessionID)
		for _, r := range batch {
			r.done <- result{err: err}
		}
	}
	for attempt := 0; len(batch) > 0; attempt++ {
		if ctx.Err() != nil {
			fail(codecrafter.Errorf(codecrafter.ECONFLICT, "the code is changing too fast; resend the edit"))
			return
		}
		minBase, maxBase := batch[0].base, batch[0].base
		for _, r := range batch {
			minBase, maxBase = min(minBase, r.base), max(maxBase, r.base)
		}
		v, _ := s.heads.Load(sessionID)
		h, _ := v.(*history)
		if h == nil || attempt > 0 || minBase < h.base || maxBase > h.head() {
			var err error
			if h, err = s.load(ctx, batch[0].sess, minBase); err != nil {
				fail(err)
				return
			}
		}
		// Stage every request on h (in memory), then store the new edits.
		// h is changed in place: on any failure it is dropped from the cache.
		stored := h.head() // durable up to here
		before, err := h.headCode()
		if err != nil {
			fail(err)
			return
		}
		results := make([]result, len(batch))
		var fresh []*codecrafter.Edit
		var after []string // after[i]: the code once fresh[i] is applied
		for i, r := range batch {
			e, next, err := s.stage(h, r)
			results[i] = result{edit: e, err: err}
			if next != nil {
				fresh, after = append(fresh, e), append(after, *next)
			}
		}
		answered := make([]bool, len(batch))
		answer := func() { // those whose edit is stored, and the errors
			for i, r := range batch {
				if !answered[i] && (results[i].err != nil || results[i].edit.Revision <= stored) {
					answered[i] = true
					r.done <- results[i]
				}
			}
		}
		answer()
		var werr error
		for len(fresh) > 0 {
			var n int
			if n, werr = s.edits.AppendEdits(ctx, fresh, before); werr != nil {
				break
			}
			payloads := make([][]byte, n)
			for i, e := range fresh[:n] {
				payloads[i] = encodeEdit(e)
			}
			if err := codecrafter.PublishAll(ctx, s.bus, codecrafter.EditsTopic(sessionID), payloads); err != nil {
				s.log.WarnContext(ctx, "publish edits", "session", sessionID, "err", err)
			}
			stored, before = fresh[n-1].Revision, after[n-1]
			fresh, after = fresh[n:], after[n:]
			answer()
		}
		if len(fresh) == 0 {
			h.trim()
			s.remember(sessionID, h)
			return
		}
		var rest []*request
		for i, r := range batch {
			if !answered[i] {
				rest = append(rest, r)
			}
		}
		batch = rest
		if !codecrafter.IsCode(werr, codecrafter.ECONFLICT) {
			fail(werr)
			return
		}
		// Another replica took the revision: reload, transform over it too.
		s.heads.Delete(sessionID)
		s.log.DebugContext(ctx, "edit revision taken", "session", sessionID, "revision", fresh[0].Revision, "attempt", attempt)
		// A replica whose writes keep losing to another's busy writer
		// retries at a random moment: in step with it, it could lose each
		// time, until the deadline.
		time.Sleep(rand.N(time.Duration(min(attempt+1, 10)) * time.Millisecond))
	}
}

// stage applies r's edit on h in memory and returns it as applied with the
// code after it; a resend returns the edit as first applied and no code.
func (s *Service) stage(h *history, r *request) (*codecrafter.Edit, *string, error) {
	if r.base > h.head() {
		return nil, nil, codecrafter.Errorf(codecrafter.ECONFLICT, "baseRevision %d is newer than the document (revision %d): reload the session", r.base, h.head())
	}
	if r.clientID != "" {
		if e := h.find(r.base, r.clientID, r.seq); e != nil {
			return e, nil, nil // a resend: applied once already
		}
	}
	if n, err := h.lenAt(r.base); err != nil {
		return nil, nil, err
	} else if r.op.BaseLen() != n {
		return nil, nil, codecrafter.Errorf(codecrafter.EINVALID, "ops: the edit spans %d code points, the code at revision %d has %d (retains + deletes must cover it)", r.op.BaseLen(), r.base, n)
	}
	applied := r.op
	var err error
	for _, e := range h.edits {
		if e.Revision > r.base {
			if _, applied, err = ot.Transform(toOT(e.Ops), applied); err != nil {
				return nil, nil, fmt.Errorf("transform over revision %d: %w", e.Revision, err)
			}
		}
	}
	headCode, err := h.headCode()
	if err != nil {
		return nil, nil, err
	}
	next, err := ot.Apply(headCode, applied)
	if err != nil {
		return nil, nil, fmt.Errorf("apply at revision %d: %w", h.head(), err)
	}
	if len(next) > codecrafter.MaxCodeLen {
		return nil, nil, codecrafter.Errorf(codecrafter.EINVALID, "code: at most %d bytes after the edit, would be %d", codecrafter.MaxCodeLen, len(next))
	}
	e := &codecrafter.Edit{
		SessionID: r.sess.ID, Revision: h.head() + 1, UserID: r.userID,
		ClientID: r.clientID, ClientSeq: r.seq, Ops: fromOT(applied),
		CreatedAt: s.now().UTC().Truncate(time.Millisecond),
	}
	h.appended(e, next)
	return e, &next, nil
}

// Head returns the session's current revision and code.
func (s *Service) Head(ctx context.Context, sess *codecrafter.Session) (int, string, error) {
	h, err := s.load(ctx, sess, -1)
	if err != nil {
		return 0, "", err
	}
	code, err := h.codeAt(h.head())
	return h.head(), code, err
}

// CodeAt returns the session's code at revision rev.
func (s *Service) CodeAt(ctx context.Context, sessionID string, rev int) (string, error) {
	sess, _, err := s.authorize(ctx, sessionID, codecrafter.ActionRead)
	if err != nil {
		return "", err
	}
	if rev < 0 {
		return "", codecrafter.Errorf(codecrafter.EINVALID, "revision: must not be negative")
	}
	h, err := s.load(ctx, sess, rev)
	if err != nil {
		return "", err
	}
	if rev > h.head() {
		return "", codecrafter.Errorf(codecrafter.EINVALID, "revision: the session has revisions 0 to %d, not %d", h.head(), rev)
	}
	return h.codeAt(rev)
}

// ForkSource returns the session and its code at rev, for a fork: the
// caller must take part in it.
func (s *Service) ForkSource(ctx context.Context, sessionID string, rev int) (*codecrafter.Session, string, error) {
	code, err := s.CodeAt(ctx, sessionID, rev)
	if err != nil {
		return nil, "", err
	}
	sess, _, err := s.authorize(ctx, sessionID, codecrafter.ActionRead)
	return sess, code, err
}

// SetSelection shows the caller's cursors and selections (code points) to
// the session's selections subscribers. Ranges made at an older revision
// are moved over the edits applied since, so they are sent at the head.
func (s *Service) SetSelection(ctx context.Context, sessionID string, rev int, ranges []ot.Selection) (*Selection, error) {
	sess, userID, err := s.authorize(ctx, sessionID, codecrafter.ActionRead)
	if err != nil {
		return nil, err
	}
	if len(ranges) > MaxRanges {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "ranges: at most %d", MaxRanges)
	}
	if rev < 0 {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "revision: must not be negative")
	}
	h, err := s.load(ctx, sess, rev)
	if err != nil {
		return nil, err
	}
	if rev > h.head() {
		return nil, codecrafter.Errorf(codecrafter.ECONFLICT, "revision %d is newer than the document (revision %d): reload the session", rev, h.head())
	}
	atRev, err := h.codeAt(rev)
	if err != nil {
		return nil, err
	}
	n := utf8.RuneCountInString(atRev)
	for i, r := range ranges {
		if r.Anchor < 0 || r.Head < 0 || r.Anchor > n || r.Head > n {
			return nil, codecrafter.Errorf(codecrafter.EINVALID, "ranges[%d]: positions must be within 0 to %d at revision %d", i, n, rev)
		}
	}
	moved := append([]ot.Selection(nil), ranges...)
	for _, e := range h.edits {
		if e.Revision <= rev {
			continue
		}
		for i := range moved {
			moved[i] = ot.TransformSelection(toOT(e.Ops), moved[i])
		}
	}
	sel := &Selection{SessionID: sessionID, UserID: userID, Revision: h.head(), Ranges: moved}
	b, _ := json.Marshal(sel)
	if err := s.bus.Publish(ctx, selectionsTopic(sessionID), b); err != nil {
		s.log.WarnContext(ctx, "publish selection", "session", sessionID, "err", err)
	}
	return sel, nil
}

// MaxRanges bounds the ranges of one selection.
const MaxRanges = 100

// Selection is a user's cursors and selections at a revision.
type Selection struct {
	SessionID string         `json:"sessionId"`
	UserID    string         `json:"userId"`
	Revision  int            `json:"revision"`
	Ranges    []ot.Selection `json:"ranges"`
}

func selectionsTopic(sessionID string) string { return "selections:" + sessionID }

// Selections streams the session's selections as users set them, and an
// empty one for a user who goes offline (selections are ephemeral: they
// last while their user is online). When the bus ends the subscription the
// channel closes early (nothing is stored to resync from).
func (s *Service) Selections(ctx context.Context, sessionID string) (<-chan *Selection, error) {
	ctx, cancel := context.WithCancel(ctx)
	sels, err := s.bus.Subscribe(ctx, selectionsTopic(sessionID))
	if err != nil {
		cancel()
		return nil, codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "live selections are unavailable; try again shortly")
	}
	pres, err := s.bus.Subscribe(ctx, codecrafter.PresenceTopic(sessionID))
	if err != nil {
		cancel()
		return nil, codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "live selections are unavailable; try again shortly")
	}
	if _, _, err := s.authorize(ctx, sessionID, codecrafter.ActionRead); err != nil {
		cancel()
		return nil, err
	}
	out := make(chan *Selection)
	go func() {
		defer cancel()
		defer close(out)
		for {
			var sel *Selection
			select {
			case <-ctx.Done():
				return
			case b, ok := <-sels:
				if !ok {
					return
				}
				sel = &Selection{}
				if err := json.Unmarshal(b, sel); err != nil || sel.UserID == "" {
					continue
				}
			case b, ok := <-pres:
				if !ok {
					return
				}
				c, err := codecrafter.DecodePresenceChange(b)
				if err != nil || c.Online {
					continue
				}
				sel = &Selection{SessionID: sessionID, UserID: c.UserID, Ranges: []ot.Selection{}}
			}
			select {
			case out <- sel:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// history is a snapshot and the edits after it, up to the head.
type history struct {
	base  int
	code  string // at base
	edits []*codecrafter.Edit

	headText string // the code at the head, once computed (headOK)
	headOK   bool
}

// headCode returns the code at the head, computed once.
func (h *history) headCode() (string, error) {
	if !h.headOK {
		code, err := h.codeAt(h.head())
		if err != nil {
			return "", err
		}
		h.headText, h.headOK = code, true
	}
	return h.headText, nil
}

// lenAt returns the length in code points of the code at rev, from the
// snapshot's and the edits' lengths (no rebuild of the text).
func (h *history) lenAt(rev int) (int, error) {
	n := utf8.RuneCountInString(h.code)
	for _, e := range h.edits {
		if e.Revision > rev {
			break
		}
		op := toOT(e.Ops)
		if op.BaseLen() != n {
			return 0, fmt.Errorf("the log's revision %d spans %d code points, the code has %d", e.Revision, op.BaseLen(), n)
		}
		n = op.TargetLen()
	}
	return n, nil
}

// appended records e, whose result is next.
func (h *history) appended(e *codecrafter.Edit, next string) {
	h.edits = append(h.edits, e)
	h.headText, h.headOK = next, true
}

// trim keeps the history short (not while a batch is staged: its
// requests' bases must stay within it).
func (h *history) trim() {
	if len(h.edits) > keepEdits {
		base := h.head() - keepEdits/2
		if code, err := h.codeAt(base); err == nil {
			h.code, h.edits, h.base = code, slices.Clone(h.edits[base-h.base:]), base
		}
	}
}

func (h *history) head() int { return h.base + len(h.edits) }

// load reads the log from a snapshot at or before rev (-1: the newest).
func (s *Service) load(ctx context.Context, sess *codecrafter.Session, rev int) (*history, error) {
	after := rev
	if after < 0 {
		after = int(^uint(0) >> 1)
	}
	base, code, edits, ok, err := s.edits.EditsSince(ctx, sess.ID, after)
	if err != nil {
		return nil, err
	}
	if !ok {
		return &history{code: sess.Code}, nil
	}
	return &history{base: base, code: code, edits: edits}, nil
}

// codeAt rebuilds the code at rev (base <= rev <= head).
func (h *history) codeAt(rev int) (string, error) {
	code := h.code
	for _, e := range h.edits {
		if e.Revision > rev {
			break
		}
		var err error
		if code, err = ot.Apply(code, toOT(e.Ops)); err != nil {
			return "", fmt.Errorf("replay revision %d: %w", e.Revision, err)
		}
	}
	return code, nil
}

// find returns the edit that clientID submitted as seq after rev, if any.
func (h *history) find(rev int, clientID string, seq int) *codecrafter.Edit {
	for _, e := range h.edits {
		if e.Revision > rev && e.ClientID == clientID && e.ClientSeq == seq {
			return e
		}
	}
	return nil
}

// CodeEdited streams the session's applied edits in revision order, each
// once. With sinceRevision it first replays the log after that revision,
// then goes on live; without, it starts at the current revision. A
// revision older than the kept history or newer than the head is CONFLICT.
func (s *Service) CodeEdited(ctx context.Context, sessionID string, sinceRevision *int) (<-chan *codecrafter.Edit, error) {
	ctx, cancel := context.WithCancel(ctx)
	live, err := s.bus.Subscribe(ctx, codecrafter.EditsTopic(sessionID))
	if err != nil {
		cancel()
		return nil, codecrafter.Wrap(err, codecrafter.EUNAVAILABLE, "live edits are unavailable; try again shortly")
	}
	sess, _, err := s.authorize(ctx, sessionID, codecrafter.ActionRead)
	if err != nil {
		cancel()
		return nil, err
	}
	h, err := s.load(ctx, sess, -1)
	if err != nil {
		cancel()
		return nil, err
	}
	last := h.head()
	if sinceRevision != nil {
		if *sinceRevision < 0 || *sinceRevision > h.head() {
			cancel()
			return nil, codecrafter.Errorf(codecrafter.ECONFLICT, "sinceRevision %d is outside the history (0 to %d): reload the session", *sinceRevision, h.head())
		}
		last = *sinceRevision
	}
	out := make(chan *codecrafter.Edit)
	go func() {
		defer cancel()
		defer close(out)
		stream.Follow(ctx, s.editStream(sess), live, last, out)
	}()
	return out, nil
}

// editStream is a session's edit log as a numbered stream.
func (s *Service) editStream(sess *codecrafter.Session) stream.Source[*codecrafter.Edit] {
	return stream.Source[*codecrafter.Edit]{
		Name: "edits", Log: s.log.With("session", sess.ID),
		Seq:    func(e *codecrafter.Edit) int { return e.Revision },
		Decode: func(b []byte) (*codecrafter.Edit, error) { return decodeEdit(sess.ID, b) },
		Read: func(ctx context.Context, after int) ([]*codecrafter.Edit, bool, error) {
			h, err := s.load(ctx, sess, after)
			if err != nil {
				return nil, false, err
			}
			return h.edits, false, nil // from a snapshot at or before after: the follower skips those
		},
		Subscribe: func(ctx context.Context) (<-chan []byte, error) {
			return s.bus.Subscribe(ctx, codecrafter.EditsTopic(sess.ID))
		},
	}
}

func (s *Service) authorize(ctx context.Context, sessionID string, action codecrafter.Action) (*codecrafter.Session, string, error) {
	return access.Caller(ctx, s.sessions, sessionID, action)
}

func parseOps(in []OpInput) (ot.Operation, error) {
	ops := make([]ot.Op, 0, len(in))
	for i, o := range in {
		set := 0
		var op ot.Op
		if o.Retain != nil {
			set++
			op.Retain = *o.Retain
		}
		if o.Insert != nil {
			set++
			op.Insert = *o.Insert
		}
		if o.Delete != nil {
			set++
			op.Delete = *o.Delete
		}
		if set != 1 {
			return nil, codecrafter.Errorf(codecrafter.EINVALID, "ops[%d]: set exactly one of retain, insert, delete", i)
		}
		if op == (ot.Op{}) {
			continue // an empty component: nothing to do
		}
		ops = append(ops, op)
	}
	return ot.Normalize(ops)
}

func toOT(ops []codecrafter.TextOp) ot.Operation {
	out := make(ot.Operation, len(ops))
	for i, o := range ops {
		out[i] = ot.Op{Retain: o.Retain, Insert: o.Insert, Delete: o.Delete}
	}
	return out
}

func fromOT(op ot.Operation) []codecrafter.TextOp {
	out := make([]codecrafter.TextOp, len(op))
	for i, o := range op {
		out[i] = codecrafter.TextOp{Retain: o.Retain, Insert: o.Insert, Delete: o.Delete}
	}
	return out
}

// editEvent is the EditsTopic payload.
type editEvent struct {
	Rev       int                  `json:"rev"`
	UserID    string               `json:"userId"`
	ClientID  string               `json:"clientId,omitempty"`
	ClientSeq int                  `json:"clientSeq,omitempty"`
	Ops       []codecrafter.TextOp `json:"ops"`
	At        time.Time            `json:"at"`
}

func encodeEdit(e *codecrafter.Edit) []byte {
	b, _ := json.Marshal(editEvent{Rev: e.Revision, UserID: e.UserID, ClientID: e.ClientID, ClientSeq: e.ClientSeq, Ops: e.Ops, At: e.CreatedAt})
	return b
}

func decodeEdit(sessionID string, b []byte) (*codecrafter.Edit, error) {
	var ev editEvent
	if err := json.Unmarshal(b, &ev); err != nil || ev.Rev < 1 {
		return nil, fmt.Errorf("decode edit event %q: %v", b, err)
	}
	return &codecrafter.Edit{SessionID: sessionID, Revision: ev.Rev, UserID: ev.UserID, ClientID: ev.ClientID,
		ClientSeq: ev.ClientSeq, Ops: ev.Ops, CreatedAt: ev.At}, nil
}
