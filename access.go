package codecrafter

import (
	"encoding/json"
	"fmt"
	"time"
)

// Claims is what a verified access token says about its holder.
type Claims struct {
	UserID string
	// FamilyID is the refresh-token family of the login the token came
	// from; revoking the family (logout, refresh reuse) ends the access
	// of every connection that authenticated with one of its tokens.
	FamilyID  string
	ExpiresAt time.Time
}

// AccessTopic carries AccessChange events to every replica, so that
// access taken away ends at once wherever the user is connected: live
// subscriptions of a removed participant end, and sockets of a revoked
// login close. Each replica subscribes to it once.
const AccessTopic = "access"

// AccessChange says that someone's access changed. Exactly one of the
// forms is used:
//
//	{SessionID, UserID}: that participant was removed, left, or had
//	    their role changed (listeners re-check the session).
//	{SessionID}: the session was deleted (everyone's access ends).
//	{FamilyID}: a login was revoked (logout, refresh token reuse).
type AccessChange struct {
	SessionID string `json:"sessionId,omitempty"`
	UserID    string `json:"userId,omitempty"`
	FamilyID  string `json:"familyId,omitempty"`
}

// EncodeAccessChange returns the AccessTopic payload for c.
func EncodeAccessChange(c AccessChange) []byte {
	b, _ := json.Marshal(c) // plain strings: cannot fail
	return b
}

// DecodeAccessChange parses an AccessTopic payload.
func DecodeAccessChange(b []byte) (AccessChange, error) {
	var c AccessChange
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("decode access change: %w", err)
	}
	if c.SessionID == "" && c.FamilyID == "" {
		return c, fmt.Errorf("decode access change: neither sessionId nor familyId in %q", b)
	}
	return c, nil
}
