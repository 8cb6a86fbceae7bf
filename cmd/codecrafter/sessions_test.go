package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/gqltest"
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
		{"rotate the invite code", func(s sessionOut, _ string) (string, map[string]any) {
			return rotateQ, map[string]any{"s": s.ID}
		}, map[string]string{"OWNER": ok, "EDITOR": codecrafter.EFORBIDDEN, "VIEWER": codecrafter.EFORBIDDEN, "OUTSIDER": codecrafter.ENOTFOUND}},
		{"turn the invite off", func(s sessionOut, _ string) (string, map[string]any) {
			return enableQ, map[string]any{"s": s.ID, "on": false}
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
}

const (
	leaveQ   = `mutation($id: ID!) { leaveSession(id: $id) }`
	removeQ  = `mutation($s: ID!, $u: ID!) { removeParticipant(sessionId: $s, userId: $u) }`
	rotateQ  = `mutation($s: ID!) { rotateInviteCode(sessionId: $s) { id inviteCode inviteEnabled } }`
	enableQ  = `mutation($s: ID!, $on: Boolean!) { setInviteEnabled(sessionId: $s, enabled: $on) { id inviteCode inviteEnabled } }`
	inviteQ  = `query($id: ID!) { session(id: $id) { inviteCode inviteEnabled } }`
	removedM = "you were removed from this session; ask its owner"
)

type inviteOut struct {
	InviteCode    *string
	InviteEnabled *bool
}

// invite returns the session's invite as u sees it.
func invite(t *testing.T, u *user, sessionID string) inviteOut {
	t.Helper()
	var out struct{ Session inviteOut }
	u.Do(t, inviteQ, map[string]any{"id": sessionID}, &out)
	return out.Session
}

// A demoted participant who leaves and rejoins gets the role they had
// back, never more; one who left as an EDITOR comes back as one.
func TestRejoinKeepsRole(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	owner, vw, ed := ta.register(t, "own"), ta.register(t, "vw"), ta.register(t, "ed")
	s := createSession(t, owner, "roles")
	join(t, vw, *s.InviteCode)
	join(t, ed, *s.InviteCode)
	owner.Do(t, roleQ, map[string]any{"s": s.ID, "u": vw.ID, "r": "VIEWER"}, nil)
	for _, u := range []*user{vw, ed} {
		u.Do(t, leaveQ, map[string]any{"id": s.ID}, nil)
		u.Fail(t, codecrafter.ENOTFOUND, sessQ, map[string]any{"id": s.ID})
		join(t, u, *s.InviteCode)
	}
	var got struct{ Session sessionOut }
	owner.Do(t, sessQ, map[string]any{"id": s.ID}, &got)
	if r := got.Session.role(vw.ID); r != "VIEWER" {
		t.Errorf("the demoted viewer rejoined as %q, want VIEWER", r)
	}
	if r := got.Session.role(ed.ID); r != "EDITOR" {
		t.Errorf("the editor rejoined as %q, want EDITOR", r)
	}
	vw.Fail(t, codecrafter.EFORBIDDEN, `mutation($s: ID!) { execute(input: {language: "python", code: "print(1)", sessionId: $s}) { id } }`, map[string]any{"s": s.ID})
}

// A removed participant cannot come back: the old code is gone (removal
// rotates it) and the new one refuses them; setParticipantRole cannot
// reach them either.
func TestRemovalSticks(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	owner, ed, other := ta.register(t, "own"), ta.register(t, "ed"), ta.register(t, "other")
	s := createSession(t, owner, "removal")
	join(t, ed, *s.InviteCode)
	owner.Do(t, removeQ, map[string]any{"s": s.ID, "u": ed.ID}, nil)

	now := invite(t, owner, s.ID)
	if now.InviteCode == nil || *now.InviteCode == *s.InviteCode {
		t.Fatalf("invite code after the removal = %v, want a new one", now.InviteCode)
	}
	ed.Fail(t, codecrafter.ENOTFOUND, joinQ, map[string]any{"c": *s.InviteCode})
	if e := ed.Fail(t, codecrafter.EFORBIDDEN, joinQ, map[string]any{"c": *now.InviteCode}); e.Message != removedM {
		t.Errorf("message %q, want %q", e.Message, removedM)
	}
	ed.Fail(t, codecrafter.ENOTFOUND, sessQ, map[string]any{"id": s.ID})
	owner.Fail(t, codecrafter.ENOTFOUND, roleQ, map[string]any{"s": s.ID, "u": ed.ID, "r": "EDITOR"})
	// The owner rotating the code again does not let them in either.
	var rot struct{ RotateInviteCode inviteOut }
	owner.Do(t, rotateQ, map[string]any{"s": s.ID}, &rot)
	ed.Fail(t, codecrafter.EFORBIDDEN, joinQ, map[string]any{"c": *rot.RotateInviteCode.InviteCode})
	// Everyone else joins with the current code.
	join(t, other, *rot.RotateInviteCode.InviteCode)
}

func TestInviteControls(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	owner, ed, vw, outsider := ta.register(t, "own"), ta.register(t, "ed"), ta.register(t, "vw"), ta.register(t, "out")
	s := createSession(t, owner, "invites")
	join(t, ed, *s.InviteCode)
	join(t, vw, *s.InviteCode)
	owner.Do(t, roleQ, map[string]any{"s": s.ID, "u": vw.ID, "r": "VIEWER"}, nil)

	if got := invite(t, owner, s.ID); got.InviteEnabled == nil || !*got.InviteEnabled {
		t.Errorf("owner sees inviteEnabled %v, want true", got.InviteEnabled)
	}
	for _, u := range []*user{ed, vw} {
		if got := invite(t, u, s.ID); got.InviteEnabled != nil || got.InviteCode != nil {
			t.Errorf("a participant sees the invite: %+v", got)
		}
	}
	// Only the owner controls the invite; outsiders learn nothing.
	for _, c := range []struct {
		u    *user
		code string
	}{{ed, codecrafter.EFORBIDDEN}, {vw, codecrafter.EFORBIDDEN}, {outsider, codecrafter.ENOTFOUND}} {
		c.u.Fail(t, c.code, rotateQ, map[string]any{"s": s.ID})
		c.u.Fail(t, c.code, enableQ, map[string]any{"s": s.ID, "on": false})
	}

	// Rotating: the old code stops working, the new one works.
	var rot struct{ RotateInviteCode inviteOut }
	owner.Do(t, rotateQ, map[string]any{"s": s.ID}, &rot)
	code := rot.RotateInviteCode.InviteCode
	if code == nil || *code == *s.InviteCode || len(*code) < 12 {
		t.Fatalf("rotated code %v, want a new one", code)
	}
	late, later := ta.register(t, "late"), ta.register(t, "later")
	late.Fail(t, codecrafter.ENOTFOUND, joinQ, map[string]any{"c": *s.InviteCode})
	join(t, late, *code)

	// Turned off: refused, with a message saying so; on again: works.
	var off struct{ SetInviteEnabled inviteOut }
	owner.Do(t, enableQ, map[string]any{"s": s.ID, "on": false}, &off)
	if e := off.SetInviteEnabled.InviteEnabled; e == nil || *e {
		t.Errorf("inviteEnabled after turning it off = %v", e)
	}
	if e := later.Fail(t, codecrafter.EFORBIDDEN, joinQ, map[string]any{"c": *code}); !strings.Contains(e.Message, "turned off") {
		t.Errorf("message %q does not say the invite is turned off", e.Message)
	}
	join(t, late, *code) // already in: still fine
	owner.Do(t, enableQ, map[string]any{"s": s.ID, "on": true}, nil)
	join(t, later, *code)
	if got := invite(t, owner, s.ID); got.InviteEnabled == nil || !*got.InviteEnabled || *got.InviteCode != *code {
		t.Errorf("after turning it on: %+v", got)
	}
}

// A class opening the invite link at the same moment: everyone gets in,
// first time. They register at once, then all join at once.
func TestConcurrentJoins(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	owner := ta.register(t, "teacher")
	s := createSession(t, owner, "class")
	const students = 30
	errs := make(chan error, students)
	var registered, done sync.WaitGroup
	start := make(chan struct{})
	for i := range students {
		registered.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			token, err := registerStudent(ta, fmt.Sprint("student", i))
			registered.Done()
			if err != nil {
				errs <- err
				return
			}
			<-start
			if err := post(ta.URL, token, joinQ, map[string]any{"c": *s.InviteCode}, nil); err != nil {
				errs <- fmt.Errorf("student%d: join: %w", i, err)
			}
		}()
	}
	registered.Wait()
	close(start)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var got struct{ Session sessionOut }
	owner.Do(t, sessQ, map[string]any{"id": s.ID}, &got)
	if n := len(got.Session.Participants); n != students+1 {
		t.Errorf("%d participants, want %d", n, students+1)
	}
}

// registerStudent registers a fresh account and returns its access
// token; it reports errors instead of failing the test, as it runs on a
// goroutine of its own.
func registerStudent(ta *testApp, name string) (string, error) {
	var reg struct{ Register authPayload }
	email := name + "." + codecrafter.NewID() + "@example.com"
	if err := post(ta.URL, "", registerQ, map[string]any{"in": map[string]any{"email": email, "password": "correct horse battery", "name": name}}, &reg); err != nil {
		return "", fmt.Errorf("%s: register: %w", name, err)
	}
	return reg.Register.AccessToken, nil
}

// post runs one GraphQL operation and decodes its data into out; GraphQL
// errors are returned.
func post(url, token, query string, vars map[string]any, out any) error {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Data   json.RawMessage
		Errors []gqltest.Error
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("response %d: %w", resp.StatusCode, err)
	}
	if len(r.Errors) > 0 {
		return fmt.Errorf("%s: %s", r.Errors[0].Code(), r.Errors[0].Message)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(r.Data, out)
}
