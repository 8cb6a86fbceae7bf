package codecrafter

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// MemberEventKind is what happened to someone's membership of a session.
type MemberEventKind string

const (
	MemberJoined      MemberEventKind = "JOINED" // created the session, or joined it
	MemberLeft        MemberEventKind = "LEFT"
	MemberRemoved     MemberEventKind = "REMOVED"
	MemberRoleChanged MemberEventKind = "ROLE_CHANGED"
)

// MemberEvent is one stored change of a session's membership, for its
// timeline. Seq numbers a session's events from 1 with no gaps, in the
// order they were stored.
type MemberEvent struct {
	SessionID string
	Seq       int
	Kind      MemberEventKind
	UserID    string
	Role      Role // JOINED, ROLE_CHANGED: the role they have now; else the one they had
	At        time.Time
}

// MemberEventStore keeps the history of sessions' memberships.
type MemberEventStore interface {
	// AppendMemberEvent stores e as its session's next event: it sets
	// e.Seq. An event with Seq n is readable only once every one before
	// it is.
	AppendMemberEvent(ctx context.Context, e *MemberEvent) error
	// MemberEvents returns up to limit events of the session with Seq
	// above after, oldest first.
	MemberEvents(ctx context.Context, sessionID string, after, limit int) ([]*MemberEvent, error)
}

// MembersTopic carries a session's stored membership events (a doorbell:
// the store is the truth).
func MembersTopic(sessionID string) string { return "members:" + sessionID }

type memberEventJSON struct {
	Seq    int             `json:"seq"`
	Kind   MemberEventKind `json:"kind"`
	UserID string          `json:"userId"`
	Role   Role            `json:"role,omitempty"`
	At     time.Time       `json:"at"`
}

// EncodeMemberEvent returns the MembersTopic payload of e.
func EncodeMemberEvent(e *MemberEvent) []byte {
	b, _ := json.Marshal(memberEventJSON{Seq: e.Seq, Kind: e.Kind, UserID: e.UserID, Role: e.Role, At: e.At}) // cannot fail
	return b
}

// DecodeMemberEvent parses a MembersTopic payload of sessionID.
func DecodeMemberEvent(sessionID string, b []byte) (*MemberEvent, error) {
	var ev memberEventJSON
	if err := json.Unmarshal(b, &ev); err != nil || ev.Seq < 1 || ev.UserID == "" {
		return nil, fmt.Errorf("decode member event %q: %v", b, err)
	}
	return &MemberEvent{SessionID: sessionID, Seq: ev.Seq, Kind: ev.Kind, UserID: ev.UserID, Role: ev.Role, At: ev.At}, nil
}
