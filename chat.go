package codecrafter

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Message is a chat message of a session. Seq numbers a session's
// messages from 1 with no gaps, in the order they were stored: a
// subscriber tells a gap (a Seq it has not seen) from a duplicate by it.
type Message struct {
	ID        string // MessageID(SessionID, Seq)
	SessionID string
	Seq       int
	UserID    string
	Body      string
	CreatedAt time.Time
}

// MaxMessageLen is the most characters (code points) a message body has.
const MaxMessageLen = 4000

// MessageID names message seq of a session; it is the id clients see and
// send back as "after".
func MessageID(sessionID string, seq int) string { return sessionID + "." + strconv.Itoa(seq) }

// ParseMessageID returns the session and seq a MessageID names;
// BAD_USER_INPUT when id is not one.
func ParseMessageID(id string) (sessionID string, seq int, err error) {
	i := strings.LastIndexByte(id, '.')
	if i > 0 {
		if seq, err = strconv.Atoi(id[i+1:]); err == nil && seq > 0 {
			return id[:i], seq, nil
		}
	}
	return "", 0, Errorf(EINVALID, "after: %q is not a message id", id)
}

// MessageStore persists chat messages.
type MessageStore interface {
	// AppendMessage stores m as the session's next message: it sets
	// m.Seq and m.ID. A message with Seq n is readable only once every
	// message before it is.
	AppendMessage(ctx context.Context, m *Message) error
	// AppendMessages stores ms, all of one session, as its next messages,
	// in order (not necessarily one after the other: another writer's may
	// come between), setting their Seq and ID.
	AppendMessages(ctx context.Context, ms []*Message) error
	// Messages returns up to limit messages of the session with Seq
	// above after, oldest first.
	Messages(ctx context.Context, sessionID string, after, limit int) ([]*Message, error)
}

// Presence knows who is online in a session: a user is online while they
// hold at least one live subscription to it, on any replica. It publishes
// a PresenceChange on PresenceTopic when someone comes or goes.
type Presence interface {
	// Hold marks userID online in sessionID until release is called.
	Hold(ctx context.Context, sessionID, userID string) (release func(), err error)
	// Online returns the users online in sessionID now.
	Online(ctx context.Context, sessionID string) ([]string, error)
}

// Bus topics of a session's realtime events.
func ChatTopic(sessionID string) string     { return "chat:" + sessionID }
func TypingTopic(sessionID string) string   { return "typing:" + sessionID }
func PresenceTopic(sessionID string) string { return "presence:" + sessionID }

// PresenceChange says a user came online or went offline in a session.
type PresenceChange struct {
	SessionID string `json:"sessionId"`
	UserID    string `json:"userId"`
	Online    bool   `json:"online"`
}

// EncodePresenceChange returns the PresenceTopic payload of c.
func EncodePresenceChange(c PresenceChange) []byte {
	b, _ := json.Marshal(c) // plain strings: cannot fail
	return b
}

// DecodePresenceChange parses a PresenceTopic payload.
func DecodePresenceChange(b []byte) (PresenceChange, error) {
	var c PresenceChange
	if err := json.Unmarshal(b, &c); err != nil || c.UserID == "" || c.SessionID == "" {
		return c, fmt.Errorf("decode presence change %q: %v", b, err)
	}
	return c, nil
}

// String is for logs.
func (c PresenceChange) String() string {
	return fmt.Sprintf("%s in %s online=%t", c.UserID, c.SessionID, c.Online)
}
