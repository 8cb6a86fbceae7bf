package realtime

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/codecrafter/codecrafter"
)

// Bus payloads, all JSON:
//
//	codecrafter.ChatTopic(sid):     a stored message {"seq":3,"userId":"..","body":"..","at":"..."}
//	codecrafter.TypingTopic(sid):   {"userId":"..","typing":true}
//	codecrafter.PresenceTopic(sid): codecrafter.EncodePresenceChange
//
// The bus is a doorbell for chat: a subscriber that sees a gap in seq
// reads the store, which writers fill before they publish.

type messageEvent struct {
	Seq    int       `json:"seq"`
	UserID string    `json:"userId"`
	Body   string    `json:"body"`
	At     time.Time `json:"at"`
}

func encodeMessage(m *codecrafter.Message) []byte {
	return mustJSON(messageEvent{Seq: m.Seq, UserID: m.UserID, Body: m.Body, At: m.CreatedAt})
}

func decodeMessage(sessionID string, b []byte) (*codecrafter.Message, error) {
	var ev messageEvent
	if err := json.Unmarshal(b, &ev); err != nil || ev.Seq < 1 {
		return nil, fmt.Errorf("decode message event %q: %v", b, err)
	}
	return &codecrafter.Message{
		ID: codecrafter.MessageID(sessionID, ev.Seq), SessionID: sessionID, Seq: ev.Seq,
		UserID: ev.UserID, Body: ev.Body, CreatedAt: ev.At,
	}, nil
}

// TypingEvent says whether a user is typing in a session.
type TypingEvent struct {
	SessionID string `json:"-"`
	UserID    string `json:"userId"`
	Typing    bool   `json:"typing"`
}

func decodeTyping(sessionID string, b []byte) (TypingEvent, error) {
	var ev TypingEvent
	if err := json.Unmarshal(b, &ev); err != nil || ev.UserID == "" {
		return ev, fmt.Errorf("decode typing event %q: %v", b, err)
	}
	ev.SessionID = sessionID
	return ev, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain strings, numbers and times: cannot fail
	}
	return b
}
