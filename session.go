package codecrafter

import (
	"context"
	"time"
)

// Role is a participant's role in a session.
type Role string

const (
	RoleOwner  Role = "OWNER"
	RoleEditor Role = "EDITOR"
	RoleViewer Role = "VIEWER"
)

// Valid reports whether r is one of the three roles.
func (r Role) Valid() bool { return r == RoleOwner || r == RoleEditor || r == RoleViewer }

// CanEdit reports whether r may change code and run it.
func (r Role) CanEdit() bool { return r.Can(ActionEdit) && r.Can(ActionRun) }

// Session is a shared editing room.
type Session struct {
	ID         string
	Title      string
	Language   string
	Code       string
	Revision   int
	OwnerID    string
	InviteCode string
	// InviteDisabled turns the invite code off: joining with it is
	// refused until the owner turns it on again. (Disabled rather than
	// enabled so that sessions stored before it read as enabled.)
	InviteDisabled bool
	Participants   []Participant
	// Former are users who took part and no longer do: one who left
	// rejoins with the role they had, one who was removed cannot rejoin.
	// At most one record per user; none for a current participant.
	Former    []FormerParticipant
	CreatedAt time.Time
	UpdatedAt time.Time
	// Version counts stored writes, for optimistic concurrency in stores.
	Version int64
}

// Participant is a user's membership of a session.
type Participant struct {
	UserID   string
	Role     Role
	JoinedAt time.Time
	// SessionID is set by readers that hand a participant on (for its
	// online status); stores neither keep nor fill it.
	SessionID string
}

// FormerParticipant records a user who left or was removed.
type FormerParticipant struct {
	UserID  string
	Role    Role // the role they had
	Removed bool // by the owner (else they left)
	LeftAt  time.Time
}

// FormerParticipant returns the record of userID having left or been
// removed, if any.
func (s *Session) FormerParticipant(userID string) (FormerParticipant, bool) {
	for _, f := range s.Former {
		if f.UserID == userID {
			return f, true
		}
	}
	return FormerParticipant{}, false
}

// Participant returns the membership of userID, if any.
func (s *Session) Participant(userID string) (Participant, bool) {
	for _, p := range s.Participants {
		if p.UserID == userID {
			return p, true
		}
	}
	return Participant{}, false
}

// SessionStore persists sessions.
type SessionStore interface {
	// CreateSession stores s; CONFLICT when its invite code is taken.
	CreateSession(ctx context.Context, s *Session) error
	// Session returns the session with id; NOT_FOUND when there is none.
	Session(ctx context.Context, id string) (*Session, error)
	// SessionByInviteCode returns the session with that invite code; NOT_FOUND when there is none.
	SessionByInviteCode(ctx context.Context, code string) (*Session, error)
	// SessionsForUser returns the sessions userID takes part in, newest
	// (most recently created) first.
	SessionsForUser(ctx context.Context, userID string) ([]*Session, error)
	// UpdateSession reads the session, applies fn and stores the result
	// atomically, retrying fn when another write got there first. An error
	// from fn aborts with that error. It returns the stored session.
	UpdateSession(ctx context.Context, id string, fn func(*Session) error) (*Session, error)
	// DeleteSession removes the session; NOT_FOUND when there is none.
	DeleteSession(ctx context.Context, id string) error
}

// Limits on session fields.
const (
	MaxTitleLen = 200
	MaxCodeLen  = 64 << 10 // bytes, for session code and for runs
)

// Action is something a participant does in a session.
type Action string

const (
	ActionRead     Action = "read"     // see the session, its code and runs
	ActionChat     Action = "chat"     // send messages, typing indicators
	ActionEdit     Action = "edit"     // change the code
	ActionRun      Action = "run"      // execute code in the session
	ActionSettings Action = "settings" // change title and language
	ActionManage   Action = "manage"   // roles, removals, invite code, delete
)

// permissions is the role/permission matrix, in one place.
var permissions = map[Role]map[Action]bool{
	RoleOwner:  {ActionRead: true, ActionChat: true, ActionEdit: true, ActionRun: true, ActionSettings: true, ActionManage: true},
	RoleEditor: {ActionRead: true, ActionChat: true, ActionEdit: true, ActionRun: true, ActionSettings: true},
	RoleViewer: {ActionRead: true, ActionChat: true},
}

// Can reports whether role r allows action a.
func (r Role) Can(a Action) bool { return permissions[r][a] }

// Authorize checks that userID takes part in s and that their role allows
// action. Non-participants get NOT_FOUND (a session's existence is not
// revealed to outsiders); participants whose role forbids it get FORBIDDEN.
func (s *Session) Authorize(userID string, action Action) (Participant, error) {
	p, ok := s.Participant(userID)
	if !ok {
		return Participant{}, Errorf(ENOTFOUND, "session %s not found", s.ID)
	}
	if !p.Role.Can(action) {
		return p, Errorf(EFORBIDDEN, "your role %s does not allow %s in this session", p.Role, action)
	}
	return p, nil
}
