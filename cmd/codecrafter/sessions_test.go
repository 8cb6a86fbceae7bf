package main

import (
	"strings"
	"testing"

	"github.com/codecrafter/codecrafter"
)

const (
	createQ = `mutation($in: CreateSessionInput!) { createSession(input: $in) { id title language code revision inviteCode owner { id } participants { role user { id } } createdAt updatedAt } }`
	joinQ   = `mutation($c: String!) { joinSession(inviteCode: $c) { id participants { role user { id } } } }`
	roleQ   = `mutation($s: ID!, $u: ID!, $r: Role!) { setParticipantRole(sessionId: $s, userId: $u, role: $r) { role user { id } } }`
	sessQ   = `query($id: ID!) { session(id: $id) { id title language inviteCode owner { id } participants { role online user { id } } } }`
)

type sessionOut struct {
	ID, Title, Language, Code string
	Revision                  int
	InviteCode                *string
	Owner                     struct{ ID string }
	Participants              []struct {
		Role   string
		Online bool
		User   struct{ ID string }
	}
}

func (s sessionOut) role(userID string) string {
	for _, p := range s.Participants {
		if p.User.ID == userID {
			return p.Role
		}
	}
	return ""
}

// createSession makes a session owned by u.
func createSession(t testing.TB, u *user, title string) sessionOut {
	t.Helper()
	var out struct{ CreateSession sessionOut }
	u.Do(t, createQ, map[string]any{"in": map[string]any{"title": title, "language": "python", "code": "print(1)"}}, &out)
	return out.CreateSession
}

func join(t testing.TB, u *user, code string) {
	t.Helper()
	u.Do(t, joinQ, map[string]any{"c": code}, nil)
}

func TestSessionLifecycle(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	owner, ed, outsider := ta.register(t, "owner"), ta.register(t, "ed"), ta.register(t, "out")

	s := createSession(t, owner, "  Pairing  ")
	if s.Title != "Pairing" || s.Language != "python" || s.Code != "print(1)" || s.Revision != 0 {
		t.Errorf("created %+v", s)
	}
	if s.InviteCode == nil || len(*s.InviteCode) < 12 || s.Owner.ID != owner.ID || s.role(owner.ID) != "OWNER" {
		t.Fatalf("created %+v: want an invite code and the caller as OWNER", s)
	}

	// Aliases resolve to the language id; unknown languages list the known.
	var aliased struct{ CreateSession sessionOut }
	owner.Do(t, createQ, map[string]any{"in": map[string]any{"title": "js", "language": "JS"}}, &aliased)
	if aliased.CreateSession.Language != "javascript" {
		t.Errorf("language alias JS stored as %q", aliased.CreateSession.Language)
	}
	for _, tc := range []struct{ name, title, lang, code, mention string }{
		{"unknown language", "t", "cobol", "", "language"},
		{"empty title", "   ", "python", "", "title"},
		{"long title", strings.Repeat("t", 201), "python", "", "title"},
		{"code too big", "t", "python", strings.Repeat("x", 64<<10+1), "code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := owner.Fail(t, codecrafter.EINVALID, createQ, map[string]any{"in": map[string]any{"title": tc.title, "language": tc.lang, "code": tc.code}})
			if !strings.Contains(e.Message, tc.mention) {
				t.Errorf("message %q does not mention %q", e.Message, tc.mention)
			}
		})
	}
	ta.client().Fail(t, codecrafter.EUNAUTHENTICATED, createQ, map[string]any{"in": map[string]any{"title": "t", "language": "python"}})

	// Joining: unknown code NOT_FOUND; joining twice changes nothing.
	ed.Fail(t, codecrafter.ENOTFOUND, joinQ, map[string]any{"c": "no-such-code"})
	ed.Fail(t, codecrafter.EINVALID, joinQ, map[string]any{"c": " "})
	join(t, ed, *s.InviteCode)
	join(t, ed, *s.InviteCode)
	var got struct{ Session sessionOut }
	ed.Do(t, sessQ, map[string]any{"id": s.ID}, &got)
	if len(got.Session.Participants) != 2 || got.Session.role(ed.ID) != "EDITOR" {
		t.Errorf("after joins: %+v", got.Session.Participants)
	}
	if got.Session.InviteCode != nil {
		t.Error("an editor sees the invite code")
	}
	outsider.Fail(t, codecrafter.ENOTFOUND, sessQ, map[string]any{"id": s.ID})
	outsider.Fail(t, codecrafter.ENOTFOUND, sessQ, map[string]any{"id": "000000000000000000000000"})

	// mySessions: newest first, only one's own.
	var mine struct{ MySessions []struct{ ID string } }
	owner.Do(t, `{ mySessions { id } }`, nil, &mine)
	if len(mine.MySessions) != 2 || mine.MySessions[0].ID != aliased.CreateSession.ID {
		t.Errorf("owner's sessions = %+v, want the js one first", mine.MySessions)
	}
	outsider.Do(t, `{ mySessions { id } }`, nil, &mine)
	if len(mine.MySessions) != 0 {
		t.Errorf("outsider sees %+v", mine.MySessions)
	}

	// Updates by an editor; bad language.
	var upd struct{ UpdateSession sessionOut }
	ed.Do(t, `mutation($id: ID!) { updateSession(id: $id, input: {title: "Renamed", language: "go"}) { title language } }`, map[string]any{"id": s.ID}, &upd)
	if upd.UpdateSession.Title != "Renamed" || upd.UpdateSession.Language != "go" {
		t.Errorf("update = %+v", upd.UpdateSession)
	}
	ed.Fail(t, codecrafter.EINVALID, `mutation($id: ID!) { updateSession(id: $id, input: {language: "brainfuck"}) { id } }`, map[string]any{"id": s.ID})

	// Handing over: the editor becomes OWNER, the old owner an EDITOR who
	// no longer sees the invite code.
	var r struct{ SetParticipantRole struct{ Role string } }
	owner.Do(t, roleQ, map[string]any{"s": s.ID, "u": ed.ID, "r": "OWNER"}, &r)
	if r.SetParticipantRole.Role != "OWNER" {
		t.Fatalf("role = %s", r.SetParticipantRole.Role)
	}
	owner.Do(t, sessQ, map[string]any{"id": s.ID}, &got)
	if got.Session.Owner.ID != ed.ID || got.Session.role(owner.ID) != "EDITOR" || got.Session.InviteCode != nil {
		t.Errorf("after hand-over: %+v", got.Session)
	}

	// Leaving: the new owner can't; the old one can, and then can't see it.
	ed.Fail(t, codecrafter.EFORBIDDEN, `mutation($id: ID!) { leaveSession(id: $id) }`, map[string]any{"id": s.ID})
	owner.Do(t, `mutation($id: ID!) { leaveSession(id: $id) }`, map[string]any{"id": s.ID}, nil)
	owner.Fail(t, codecrafter.ENOTFOUND, sessQ, map[string]any{"id": s.ID})
	owner.Fail(t, codecrafter.ENOTFOUND, `mutation($id: ID!) { leaveSession(id: $id) }`, map[string]any{"id": s.ID})

	// Deleting.
	ed.Do(t, `mutation($id: ID!) { deleteSession(id: $id) }`, map[string]any{"id": s.ID}, nil)
	ed.Fail(t, codecrafter.ENOTFOUND, sessQ, map[string]any{"id": s.ID})
	ed.Fail(t, codecrafter.ENOTFOUND, `mutation($id: ID!) { deleteSession(id: $id) }`, map[string]any{"id": s.ID})
}

// TestPermissionMatrix runs every session operation as each role and as an
// outsider against a fresh session, and checks the answer's error code.
func TestPermissionMatrix(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	ok := ""
	type op struct {
		name  string
		query func(s sessionOut, target string) (string, map[string]any)
		// target: whose role/removal the operation is about ("" none).
		want map[string]string // by role of the caller: OWNER, EDITOR, VIEWER, OUTSIDER
	}
	ops := []op{
		{"read session", func(s sessionOut, _ string) (string, map[string]any) {
			return sessQ, map[string]any{"id": s.ID}
		}, map[string]string{"OWNER": ok, "EDITOR": ok, "VIEWER": ok, "OUTSIDER": codecrafter.ENOTFOUND}},
		{"update settings", func(s sessionOut, _ string) (string, map[string]any) {
			return `mutation($id: ID!) { updateSession(id: $id, input: {title: "x"}) { id } }`, map[string]any{"id": s.ID}
		}, map[string]string{"OWNER": ok, "EDITOR": ok, "VIEWER": codecrafter.EFORBIDDEN, "OUTSIDER": codecrafter.ENOTFOUND}},
		{"set role of the viewer", func(s sessionOut, target string) (string, map[string]any) {
			return roleQ, map[string]any{"s": s.ID, "u": target, "r": "EDITOR"}
		}, map[string]string{"OWNER": ok, "EDITOR": codecrafter.EFORBIDDEN, "VIEWER": codecrafter.EFORBIDDEN, "OUTSIDER": codecrafter.ENOTFOUND}},
		{"remove the viewer", func(s sessionOut, target string) (string, map[string]any) {
			return `mutation($s: ID!, $u: ID!) { removeParticipant(sessionId: $s, userId: $u) }`, map[string]any{"s": s.ID, "u": target}
		}, map[string]string{"OWNER": ok, "EDITOR": codecrafter.EFORBIDDEN, "VIEWER": codecrafter.EFORBIDDEN, "OUTSIDER": codecrafter.ENOTFOUND}},
		{"delete", func(s sessionOut, _ string) (string, map[string]any) {
			return `mutation($id: ID!) { deleteSession(id: $id) }`, map[string]any{"id": s.ID}
		}, map[string]string{"OWNER": ok, "EDITOR": codecrafter.EFORBIDDEN, "VIEWER": codecrafter.EFORBIDDEN, "OUTSIDER": codecrafter.ENOTFOUND}},
		{"leave", func(s sessionOut, _ string) (string, map[string]any) {
			return `mutation($id: ID!) { leaveSession(id: $id) }`, map[string]any{"id": s.ID}
		}, map[string]string{"OWNER": codecrafter.EFORBIDDEN, "EDITOR": ok, "VIEWER": ok, "OUTSIDER": codecrafter.ENOTFOUND}},
		{"run code", func(s sessionOut, _ string) (string, map[string]any) {
			return `mutation($s: ID!) { execute(input: {language: "python", code: "print(1)", sessionId: $s}) { id } }`, map[string]any{"s": s.ID}
		}, map[string]string{"OWNER": ok, "EDITOR": ok, "VIEWER": codecrafter.EFORBIDDEN, "OUTSIDER": codecrafter.ENOTFOUND}},
		{"list runs", func(s sessionOut, _ string) (string, map[string]any) {
			return `query($s: ID!) { executions(sessionId: $s) { id } }`, map[string]any{"s": s.ID}
		}, map[string]string{"OWNER": ok, "EDITOR": ok, "VIEWER": ok, "OUTSIDER": codecrafter.ENOTFOUND}},
	}
	for _, o := range ops {
		for _, role := range []string{"OWNER", "EDITOR", "VIEWER", "OUTSIDER"} {
			t.Run(o.name+"/"+role, func(t *testing.T) {
				t.Parallel()
				owner, editor, viewer, outsider := ta.register(t, "o"), ta.register(t, "e"), ta.register(t, "v"), ta.register(t, "x")
				s := createSession(t, owner, "matrix")
				join(t, editor, *s.InviteCode)
				join(t, viewer, *s.InviteCode)
				owner.Do(t, roleQ, map[string]any{"s": s.ID, "u": viewer.ID, "r": "VIEWER"}, nil)
				caller := map[string]*user{"OWNER": owner, "EDITOR": editor, "VIEWER": viewer, "OUTSIDER": outsider}[role]
				q, vars := o.query(s, viewer.ID)
				r := caller.Raw(t, q, vars)
				if got := r.Code(); got != o.want[role] {
					t.Errorf("%s as %s: code %q, want %q (%+v)", o.name, role, got, o.want[role], r.Errors)
				}
			})
		}
	}
}

func TestParticipantEdgeCases(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	owner, ed, stranger := ta.register(t, "own"), ta.register(t, "ed"), ta.register(t, "str")
	s := createSession(t, owner, "edges")
	join(t, ed, *s.InviteCode)
	rm := `mutation($s: ID!, $u: ID!) { removeParticipant(sessionId: $s, userId: $u) }`

	owner.Fail(t, codecrafter.EINVALID, roleQ, map[string]any{"s": s.ID, "u": owner.ID, "r": "VIEWER"})
	owner.Fail(t, codecrafter.ENOTFOUND, roleQ, map[string]any{"s": s.ID, "u": stranger.ID, "r": "VIEWER"})
	owner.Fail(t, codecrafter.EINVALID, roleQ, map[string]any{"s": s.ID, "u": ed.ID, "r": "ADMIN"})
	owner.Fail(t, codecrafter.EINVALID, rm, map[string]any{"s": s.ID, "u": owner.ID})
	owner.Fail(t, codecrafter.ENOTFOUND, rm, map[string]any{"s": s.ID, "u": stranger.ID})

	owner.Do(t, rm, map[string]any{"s": s.ID, "u": ed.ID}, nil)
	ed.Fail(t, codecrafter.ENOTFOUND, sessQ, map[string]any{"id": s.ID})
	// A removed participant may come back through the invite code.
	join(t, ed, *s.InviteCode)
	ed.Do(t, sessQ, map[string]any{"id": s.ID}, nil)
}
