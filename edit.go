package codecrafter

import (
	"context"
	"time"
)

// TextOp is one component of an edit: exactly one field is set. Counts
// are in Unicode code points (see package ot).
type TextOp struct {
	Retain int
	Insert string
	Delete int
}

// Edit is one applied change of a session's code: it took the code from
// revision Revision-1 to Revision.
type Edit struct {
	SessionID string
	Revision  int
	UserID    string
	// ClientID and ClientSeq identify the submission, so that a resent
	// edit is recognised and not applied twice ("" and 0: none given).
	ClientID  string
	ClientSeq int
	Ops       []TextOp // as applied (transformed), normalised
	CreatedAt time.Time
}

// EditStore is a session's log of edits, the truth of its code: every
// change has a revision and an author.
type EditStore interface {
	// AppendEdits stores a prefix of edits (consecutive revisions from
	// edits[0].Revision; at least one of them) in one atomic write and
	// returns how many it stored; the caller appends the rest in turn.
	// before is the code at revision edits[0].Revision-1, which the store
	// may keep as a snapshot so that loading stays cheap. It is a
	// compare-and-set: CONFLICT, and nothing stored, when edits[0].Revision
	// is already stored (another writer got there first) or revision
	// edits[0].Revision-1 is not. The caller validated the edits.
	AppendEdits(ctx context.Context, edits []*Edit, before string) (int, error)
	// EditsSince returns a snapshot at some revision base <= after (the
	// code at base) and every edit after base up to the newest, in order,
	// so that the caller can rebuild the code at after and at the head.
	// With no edit stored it returns 0, "", nil and ok false: the code is
	// still the session's initial code.
	EditsSince(ctx context.Context, sessionID string, after int) (base int, code string, edits []*Edit, ok bool, err error)
}

// EditsTopic carries a session's applied edits (a doorbell: the log is
// the truth).
func EditsTopic(sessionID string) string { return "edits:" + sessionID }
