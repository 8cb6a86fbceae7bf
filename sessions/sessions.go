// Package sessions implements collaborative sessions: creation, settings,
// invites, membership and roles. Who may do what is the domain's
// permission matrix (codecrafter.Role.Can).
//
// A session remembers who left (they rejoin with the role they had) and
// who was removed (they cannot rejoin; removal also rotates the invite
// code, which they may have passed on). Every change to someone's access
// is published on codecrafter.AccessTopic once stored, so that live
// subscriptions react to it.
package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/codecrafter/codecrafter"
)

// Service implements the session operations for the caller in ctx.
type Service struct {
	store    codecrafter.SessionStore
	bus      codecrafter.Bus // AccessChange events
	runtimes codecrafter.Runtimes
	logger   *slog.Logger
	now      func() time.Time
	history  codecrafter.MemberEventStore // nil: no membership history
}

// New returns a Service that publishes access changes on bus.
func New(store codecrafter.SessionStore, bus codecrafter.Bus, runtimes codecrafter.Runtimes, logger *slog.Logger) *Service {
	return &Service{store: store, bus: bus, runtimes: runtimes, logger: logger, now: time.Now}
}

// WithHistory makes s record every join, leave, removal and role change
// in h (for the timeline) and announce it on codecrafter.MembersTopic.
func (s *Service) WithHistory(h codecrafter.MemberEventStore) *Service {
	s.history = h
	return s
}

func (s *Service) stamp() time.Time { return s.now().UTC().Truncate(time.Millisecond) }

// Create opens a session owned by the caller.
func (s *Service) Create(ctx context.Context, title, language string, code *string) (*codecrafter.Session, error) {
	uid, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	if title, err = validTitle(title); err != nil {
		return nil, err
	}
	if language, err = s.validLanguage(language); err != nil {
		return nil, err
	}
	var src string
	if code != nil {
		src = *code
	}
	if len(src) > codecrafter.MaxCodeLen {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "code: at most %d bytes, got %d", codecrafter.MaxCodeLen, len(src))
	}
	if !utf8.ValidString(src) {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "code: must be valid UTF-8")
	}
	now := s.stamp()
	sess := &codecrafter.Session{
		ID:           codecrafter.NewID(),
		Title:        title,
		Language:     language,
		Code:         src,
		OwnerID:      uid,
		Participants: []codecrafter.Participant{{UserID: uid, Role: codecrafter.RoleOwner, JoinedAt: now}},
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	err = retryCollision(func() error {
		sess.InviteCode = newInviteCode()
		return s.store.CreateSession(ctx, sess)
	})
	if err != nil {
		return nil, err
	}
	s.logger.InfoContext(ctx, "session created", "session", sess.ID, "user", uid)
	s.record(ctx, sess.ID, codecrafter.MemberJoined, uid, codecrafter.RoleOwner)
	return sess, nil
}

// Fork creates a session owned by the caller with code, which was src's at
// revision, src's language and a title naming where it came from.
func (s *Service) Fork(ctx context.Context, src *codecrafter.Session, revision int, code string) (*codecrafter.Session, error) {
	title := fmt.Sprintf("Fork of %s (revision %d)", src.Title, revision)
	if r := []rune(title); len(r) > codecrafter.MaxTitleLen {
		title = string(r[:codecrafter.MaxTitleLen])
	}
	return s.Create(ctx, title, src.Language, &code)
}

// Get returns a session the caller takes part in.
func (s *Service) Get(ctx context.Context, id string) (*codecrafter.Session, error) {
	sess, _, err := s.load(ctx, id, codecrafter.ActionRead)
	return sess, err
}

// Mine lists the caller's sessions, newest first.
func (s *Service) Mine(ctx context.Context) ([]*codecrafter.Session, error) {
	uid, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	return s.store.SessionsForUser(ctx, uid)
}

// Update changes title and/or language.
func (s *Service) Update(ctx context.Context, id string, title, language *string) (*codecrafter.Session, error) {
	uid, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	var t, l string
	if title != nil {
		if t, err = validTitle(*title); err != nil {
			return nil, err
		}
	}
	if language != nil {
		if l, err = s.validLanguage(*language); err != nil {
			return nil, err
		}
	}
	return s.store.UpdateSession(ctx, id, func(sess *codecrafter.Session) error {
		if _, err := sess.Authorize(uid, codecrafter.ActionSettings); err != nil {
			return err
		}
		if title != nil {
			sess.Title = t
		}
		if language != nil {
			sess.Language = l
		}
		sess.UpdatedAt = s.stamp()
		return nil
	})
}

// Delete removes a session; only its owner may.
func (s *Service) Delete(ctx context.Context, id string) error {
	if _, _, err := s.load(ctx, id, codecrafter.ActionManage); err != nil {
		return err
	}
	if err := s.store.DeleteSession(ctx, id); err != nil {
		return err
	}
	s.logger.InfoContext(ctx, "session deleted", "session", id)
	s.publish(ctx, codecrafter.AccessChange{SessionID: id})
	return nil
}

// Join adds the caller through an invite code: as an EDITOR, or with the
// role they had if they left before. Someone the owner removed is
// refused (FORBIDDEN), and so is everyone while the invite is turned off.
// Joining a session one is already in changes nothing.
func (s *Service) Join(ctx context.Context, inviteCode string) (*codecrafter.Session, error) {
	uid, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	code := strings.TrimSpace(inviteCode)
	if code == "" {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "inviteCode: must not be empty")
	}
	found, err := s.store.SessionByInviteCode(ctx, code)
	if codecrafter.IsCode(err, codecrafter.ENOTFOUND) {
		return nil, errNoInvite()
	}
	if err != nil {
		return nil, err
	}
	if _, ok := found.Participant(uid); ok {
		return found, nil // no write: a link opened twice adds nothing to a race of joins
	}
	sess, err := s.store.UpdateSession(ctx, found.ID, func(sess *codecrafter.Session) error {
		if sess.InviteCode != code {
			return errNoInvite()
		}
		if _, ok := sess.Participant(uid); ok {
			return errUnchanged
		}
		role := codecrafter.RoleEditor
		if f, ok := sess.FormerParticipant(uid); ok {
			if f.Removed {
				return codecrafter.Errorf(codecrafter.EFORBIDDEN, "you were removed from this session; ask its owner")
			}
			if f.Role == codecrafter.RoleViewer {
				role = f.Role // never more than they had
			}
		}
		if sess.InviteDisabled {
			return codecrafter.Errorf(codecrafter.EFORBIDDEN, "this session's invite link is turned off; ask its owner")
		}
		now := s.stamp()
		sess.Former = withoutFormer(sess.Former, uid)
		sess.Participants = append(sess.Participants, codecrafter.Participant{UserID: uid, Role: role, JoinedAt: now})
		sess.UpdatedAt = now
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return s.store.Session(ctx, found.ID)
	}
	if err == nil {
		p, _ := sess.Participant(uid)
		s.record(ctx, sess.ID, codecrafter.MemberJoined, uid, p.Role)
	}
	return sess, err
}

func errNoInvite() error {
	return codecrafter.Errorf(codecrafter.ENOTFOUND, "no session has this invite code")
}

// Leave removes the caller, keeping their role on record for a rejoin.
// The owner can't leave: they delete the session or hand it over first.
func (s *Service) Leave(ctx context.Context, id string) error {
	uid, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return err
	}
	var role codecrafter.Role
	_, err = s.store.UpdateSession(ctx, id, func(sess *codecrafter.Session) error {
		p, err := sess.Authorize(uid, codecrafter.ActionRead)
		if err != nil {
			return err
		}
		if p.Role == codecrafter.RoleOwner {
			return codecrafter.Errorf(codecrafter.EFORBIDDEN, "the owner cannot leave: make another participant OWNER first, or delete the session")
		}
		s.depart(sess, p, false)
		role = p.Role
		return nil
	})
	if err != nil {
		return err
	}
	s.publish(ctx, codecrafter.AccessChange{SessionID: id, UserID: uid})
	s.record(ctx, id, codecrafter.MemberLeft, uid, role)
	return nil
}

// SetRole changes a participant's role; only the owner may. Making
// someone OWNER hands the session over: the old owner becomes an EDITOR.
func (s *Service) SetRole(ctx context.Context, sessionID, userID string, role codecrafter.Role) (*codecrafter.Participant, error) {
	uid, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	if !role.Valid() {
		return nil, codecrafter.Errorf(codecrafter.EINVALID, "role: %q is not OWNER, EDITOR or VIEWER", role)
	}
	var had codecrafter.Role // userID's role before
	sess, err := s.store.UpdateSession(ctx, sessionID, func(sess *codecrafter.Session) error {
		if _, err := sess.Authorize(uid, codecrafter.ActionManage); err != nil {
			return err
		}
		target, ok := sess.Participant(userID)
		if !ok {
			return codecrafter.Errorf(codecrafter.ENOTFOUND, "user %s is not a participant of this session", userID)
		}
		had = target.Role
		if userID == uid {
			if role == codecrafter.RoleOwner {
				return errUnchanged
			}
			return codecrafter.Errorf(codecrafter.EINVALID, "userId: the owner cannot change their own role; make another participant OWNER to hand the session over")
		}
		for i := range sess.Participants {
			p := &sess.Participants[i]
			switch {
			case p.UserID == userID:
				p.Role = role
			case role == codecrafter.RoleOwner && p.UserID == uid:
				p.Role = codecrafter.RoleEditor
			}
		}
		if role == codecrafter.RoleOwner {
			sess.OwnerID = userID
		}
		sess.UpdatedAt = s.stamp()
		return nil
	})
	changed := !errors.Is(err, errUnchanged)
	if !changed { // the owner making themself OWNER
		sess, err = s.store.Session(ctx, sessionID)
	}
	if err != nil {
		return nil, err
	}
	p, _ := sess.Participant(userID)
	if changed {
		s.logger.InfoContext(ctx, "participant role set", "session", sessionID, "user", userID, "role", role)
		s.publish(ctx, codecrafter.AccessChange{SessionID: sessionID, UserID: userID})
		if role != had {
			s.record(ctx, sessionID, codecrafter.MemberRoleChanged, userID, role)
		}
		if role == codecrafter.RoleOwner { // the old owner is an EDITOR now
			s.publish(ctx, codecrafter.AccessChange{SessionID: sessionID, UserID: uid})
			s.record(ctx, sessionID, codecrafter.MemberRoleChanged, uid, codecrafter.RoleEditor)
		}
	}
	return &p, nil
}

// errUnchanged aborts an update that would change nothing.
var errUnchanged = errors.New("sessions: nothing to change")

// Remove takes a participant out of the session for good; only the owner
// may, and not themself. The invite code is rotated too: the removed
// person may have passed it on.
func (s *Service) Remove(ctx context.Context, sessionID, userID string) error {
	uid, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return err
	}
	var had codecrafter.Role
	err = retryCollision(func() error {
		code := newInviteCode()
		_, err := s.store.UpdateSession(ctx, sessionID, func(sess *codecrafter.Session) error {
			if _, err := sess.Authorize(uid, codecrafter.ActionManage); err != nil {
				return err
			}
			if userID == uid {
				return codecrafter.Errorf(codecrafter.EINVALID, "userId: the owner cannot remove themself; delete the session or hand it over first")
			}
			p, ok := sess.Participant(userID)
			if !ok {
				return codecrafter.Errorf(codecrafter.ENOTFOUND, "user %s is not a participant of this session", userID)
			}
			s.depart(sess, p, true)
			had = p.Role
			sess.InviteCode = code
			return nil
		})
		return err
	})
	if err != nil {
		return err
	}
	s.logger.InfoContext(ctx, "participant removed", "session", sessionID, "user", userID)
	s.publish(ctx, codecrafter.AccessChange{SessionID: sessionID, UserID: userID})
	s.record(ctx, sessionID, codecrafter.MemberRemoved, userID, had)
	return nil
}

// RotateInviteCode gives the session a new random invite code; the old
// one stops working. Only the owner may.
func (s *Service) RotateInviteCode(ctx context.Context, sessionID string) (*codecrafter.Session, error) {
	uid, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	var sess *codecrafter.Session
	err = retryCollision(func() error {
		code := newInviteCode()
		sess, err = s.store.UpdateSession(ctx, sessionID, func(sess *codecrafter.Session) error {
			if _, err := sess.Authorize(uid, codecrafter.ActionManage); err != nil {
				return err
			}
			sess.InviteCode = code
			sess.UpdatedAt = s.stamp()
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.logger.InfoContext(ctx, "invite code rotated", "session", sessionID)
	return sess, nil
}

// SetInviteEnabled turns the invite code on or off; while it is off,
// joinSession refuses it (FORBIDDEN). Only the owner may.
func (s *Service) SetInviteEnabled(ctx context.Context, sessionID string, enabled bool) (*codecrafter.Session, error) {
	uid, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	return s.store.UpdateSession(ctx, sessionID, func(sess *codecrafter.Session) error {
		if _, err := sess.Authorize(uid, codecrafter.ActionManage); err != nil {
			return err
		}
		sess.InviteDisabled = !enabled
		sess.UpdatedAt = s.stamp()
		return nil
	})
}

// InviteCode returns the session's invite code when the caller may manage
// it (the owner), and "" otherwise.
func InviteCode(ctx context.Context, sess *codecrafter.Session) string {
	if !mayManage(ctx, sess) {
		return ""
	}
	return sess.InviteCode
}

// InviteEnabled reports whether the invite code works, to the owner; nil
// for others.
func InviteEnabled(ctx context.Context, sess *codecrafter.Session) *bool {
	if !mayManage(ctx, sess) {
		return nil
	}
	on := !sess.InviteDisabled
	return &on
}

func mayManage(ctx context.Context, sess *codecrafter.Session) bool {
	_, err := sess.Authorize(codecrafter.UserIDFromContext(ctx), codecrafter.ActionManage)
	return err == nil
}

// load fetches a session and checks the caller may take action in it.
func (s *Service) load(ctx context.Context, id string, action codecrafter.Action) (*codecrafter.Session, codecrafter.Participant, error) {
	uid, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return nil, codecrafter.Participant{}, err
	}
	sess, err := s.store.Session(ctx, id)
	if err != nil {
		return nil, codecrafter.Participant{}, err
	}
	p, err := sess.Authorize(uid, action)
	if err != nil {
		return nil, p, err
	}
	return sess, p, nil
}

// depart takes participant p out of sess and records that they left or
// were removed, with the role they had.
func (s *Service) depart(sess *codecrafter.Session, p codecrafter.Participant, removed bool) {
	now := s.stamp()
	sess.Participants = slices.DeleteFunc(slices.Clone(sess.Participants), func(q codecrafter.Participant) bool { return q.UserID == p.UserID })
	sess.Former = append(withoutFormer(sess.Former, p.UserID),
		codecrafter.FormerParticipant{UserID: p.UserID, Role: p.Role, Removed: removed, LeftAt: now})
	sess.UpdatedAt = now
}

// withoutFormer returns a copy of former without userID's record (a
// copy: stores may share the slice with what they read).
func withoutFormer(former []codecrafter.FormerParticipant, userID string) []codecrafter.FormerParticipant {
	out := make([]codecrafter.FormerParticipant, 0, len(former)+1)
	for _, f := range former {
		if f.UserID != userID {
			out = append(out, f)
		}
	}
	return out
}

// publish tells every replica that someone's access changed. It comes
// after the store write, and is best effort: listeners also re-check the
// store, and a lost event must not undo a change already made.
func (s *Service) publish(ctx context.Context, c codecrafter.AccessChange) {
	// Not cut short by the caller going away once the change is made.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	if err := s.bus.Publish(ctx, codecrafter.AccessTopic, codecrafter.EncodeAccessChange(c)); err != nil {
		s.logger.WarnContext(ctx, "publishing an access change", "session", c.SessionID, "user", c.UserID, "err", err)
	}
}

const publishTimeout = 5 * time.Second

// record stores a membership change in the history, once the change is
// stored, and rings the MembersTopic doorbell. Best effort, like publish:
// the change itself is made whatever happens here.
func (s *Service) record(ctx context.Context, sessionID string, kind codecrafter.MemberEventKind, userID string, role codecrafter.Role) {
	if s.history == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	e := &codecrafter.MemberEvent{SessionID: sessionID, Kind: kind, UserID: userID, Role: role, At: s.stamp()}
	if err := s.history.AppendMemberEvent(ctx, e); err != nil {
		s.logger.WarnContext(ctx, "recording a membership event", "session", sessionID, "user", userID, "kind", kind, "err", err)
		return
	}
	if err := s.bus.Publish(ctx, codecrafter.MembersTopic(sessionID), codecrafter.EncodeMemberEvent(e)); err != nil {
		s.logger.WarnContext(ctx, "publishing a membership event", "session", sessionID, "err", err)
	}
}

func newInviteCode() string { return codecrafter.RandomToken(12) }

// retryCollision runs write with a fresh invite code again when the code
// was taken (CONFLICT): astronomically rare with 12 random bytes, but
// cheap to handle.
func retryCollision(write func() error) error {
	var err error
	for range 3 {
		if err = write(); !codecrafter.IsCode(err, codecrafter.ECONFLICT) {
			break
		}
	}
	return err
}

func validTitle(t string) (string, error) {
	return codecrafter.NormalizeText("title", t, codecrafter.MaxTitleLen)
}

func (s *Service) validLanguage(l string) (string, error) {
	rt, err := codecrafter.ResolveLanguage(s.runtimes, l)
	return rt.Language, err
}
