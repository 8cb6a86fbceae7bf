// Package sessions implements collaborative sessions: creation, settings,
// invites, membership and roles. Who may do what is the domain's
// permission matrix (codecrafter.Role.Can).
package sessions

import (
	"context"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/codecrafter/codecrafter"
)

// Service implements the session operations for the caller in ctx.
type Service struct {
	store    codecrafter.SessionStore
	runtimes codecrafter.Runtimes
	logger   *slog.Logger
	now      func() time.Time
}

// New returns a Service.
func New(store codecrafter.SessionStore, runtimes codecrafter.Runtimes, logger *slog.Logger) *Service {
	return &Service{store: store, runtimes: runtimes, logger: logger, now: time.Now}
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
	for range 3 { // an invite code collision is astronomically rare; retry anyway
		sess.InviteCode = codecrafter.RandomToken(12)
		if err = s.store.CreateSession(ctx, sess); !codecrafter.IsCode(err, codecrafter.ECONFLICT) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	s.logger.InfoContext(ctx, "session created", "session", sess.ID, "user", uid)
	return sess, nil
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
	return nil
}

// Join adds the caller as an EDITOR through an invite code. Joining a
// session one is already in changes nothing.
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
		return nil, codecrafter.Errorf(codecrafter.ENOTFOUND, "no session has this invite code")
	}
	if err != nil {
		return nil, err
	}
	return s.store.UpdateSession(ctx, found.ID, func(sess *codecrafter.Session) error {
		if sess.InviteCode != code {
			return codecrafter.Errorf(codecrafter.ENOTFOUND, "no session has this invite code")
		}
		if _, ok := sess.Participant(uid); ok {
			return nil
		}
		now := s.stamp()
		sess.Participants = append(sess.Participants, codecrafter.Participant{UserID: uid, Role: codecrafter.RoleEditor, JoinedAt: now})
		sess.UpdatedAt = now
		return nil
	})
}

// Leave removes the caller. The owner can't leave: they delete the
// session or hand it over first.
func (s *Service) Leave(ctx context.Context, id string) error {
	uid, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return err
	}
	_, err = s.store.UpdateSession(ctx, id, func(sess *codecrafter.Session) error {
		p, err := sess.Authorize(uid, codecrafter.ActionRead)
		if err != nil {
			return err
		}
		if p.Role == codecrafter.RoleOwner {
			return codecrafter.Errorf(codecrafter.EFORBIDDEN, "the owner cannot leave: make another participant OWNER first, or delete the session")
		}
		removeParticipant(sess, uid)
		sess.UpdatedAt = s.stamp()
		return nil
	})
	return err
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
	sess, err := s.store.UpdateSession(ctx, sessionID, func(sess *codecrafter.Session) error {
		if _, err := sess.Authorize(uid, codecrafter.ActionManage); err != nil {
			return err
		}
		if _, ok := sess.Participant(userID); !ok {
			return codecrafter.Errorf(codecrafter.ENOTFOUND, "user %s is not a participant of this session", userID)
		}
		if userID == uid {
			if role == codecrafter.RoleOwner {
				return nil
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
	if err != nil {
		return nil, err
	}
	p, _ := sess.Participant(userID)
	s.logger.InfoContext(ctx, "participant role set", "session", sessionID, "user", userID, "role", role)
	return &p, nil
}

// Remove takes a participant out of the session; only the owner may, and
// not themself.
func (s *Service) Remove(ctx context.Context, sessionID, userID string) error {
	uid, err := codecrafter.RequireUser(ctx)
	if err != nil {
		return err
	}
	_, err = s.store.UpdateSession(ctx, sessionID, func(sess *codecrafter.Session) error {
		if _, err := sess.Authorize(uid, codecrafter.ActionManage); err != nil {
			return err
		}
		if userID == uid {
			return codecrafter.Errorf(codecrafter.EINVALID, "userId: the owner cannot remove themself; delete the session or hand it over first")
		}
		if _, ok := sess.Participant(userID); !ok {
			return codecrafter.Errorf(codecrafter.ENOTFOUND, "user %s is not a participant of this session", userID)
		}
		removeParticipant(sess, userID)
		sess.UpdatedAt = s.stamp()
		return nil
	})
	return err
}

// InviteCode returns the session's invite code when the caller may manage
// it (the owner), and "" otherwise.
func InviteCode(ctx context.Context, sess *codecrafter.Session) string {
	if _, err := sess.Authorize(codecrafter.UserIDFromContext(ctx), codecrafter.ActionManage); err != nil {
		return ""
	}
	return sess.InviteCode
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

func removeParticipant(sess *codecrafter.Session, userID string) {
	kept := sess.Participants[:0]
	for _, p := range sess.Participants {
		if p.UserID != userID {
			kept = append(kept, p)
		}
	}
	sess.Participants = kept
}

func validTitle(t string) (string, error) {
	return codecrafter.NormalizeText("title", t, codecrafter.MaxTitleLen)
}

func (s *Service) validLanguage(l string) (string, error) {
	rt, err := codecrafter.ResolveLanguage(s.runtimes, l)
	return rt.Language, err
}
