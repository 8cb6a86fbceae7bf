package main

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

const (
	editQ       = `mutation($s: ID!, $in: EditInput!) { editCode(sessionId: $s, input: $in) { revision ops { retain insert delete } author { id } } }`
	codeEditedQ = `subscription($s: ID!, $since: Int) { codeEdited(sessionId: $s, sinceRevision: $since) { revision ops { retain insert delete } author { id } } }`
)

type codeEdit struct {
	Revision int
	Ops      []struct {
		Retain *int
		Insert *string
		Delete *int
	}
	Author struct{ ID string }
}

// TestEditingThroughGraphQL: edits made against a stale revision are
// transformed (the applied one first at a tie); session.code and revision
// follow; a resent edit lands once; a viewer cannot edit; subscribers of
// both protocols catch up from a revision, then get the next edit live.
func TestEditingThroughGraphQL(t *testing.T) {
	ta := startApp(t)
	ada, bob := ta.register(t, "ada"), ta.register(t, "bob")
	s := createSession(t, ada, "edit") // code "print(1)"
	join(t, bob, *s.InviteCode)
	edit := func(u *user, base int, ops []map[string]any, extra map[string]any) codeEdit {
		in := map[string]any{"baseRevision": base, "ops": ops}
		for k, v := range extra {
			in[k] = v
		}
		var out struct{ EditCode codeEdit }
		u.Do(t, editQ, map[string]any{"s": s.ID, "in": in}, &out)
		return out.EditCode
	}
	// Both at revision 0, inserting at 6 (inside the parentheses).
	a := edit(ada, 0, []map[string]any{{"retain": 6}, {"insert": "2"}, {"retain": 2}}, map[string]any{"clientId": "ada-1", "seq": 1})
	b := edit(bob, 0, []map[string]any{{"retain": 6}, {"insert": "3"}, {"retain": 2}}, nil)
	if a.Revision != 1 || b.Revision != 2 || b.Author.ID != bob.ID {
		t.Fatalf("revisions %d %d, author %s", a.Revision, b.Revision, b.Author.ID)
	}
	if b.Ops[0].Retain == nil || *b.Ops[0].Retain != 7 {
		t.Fatalf("bob's edit not transformed over ada's: %+v", b.Ops)
	}
	// A resend (the answer was lost) lands once.
	if again := edit(ada, 0, []map[string]any{{"retain": 6}, {"insert": "2"}, {"retain": 2}}, map[string]any{"clientId": "ada-1", "seq": 1}); again.Revision != 1 {
		t.Fatalf("resend got revision %d", again.Revision)
	}
	var got struct {
		Session struct {
			Code     string
			Revision int
		}
	}
	bob.Do(t, `query($s: ID!) { session(id: $s) { code revision } }`, map[string]any{"s": s.ID}, &got)
	if got.Session.Code != "print(231)" || got.Session.Revision != 2 {
		t.Fatalf("session %+v, want print(231) at revision 2", got.Session)
	}
	// Errors.
	ada.Fail(t, "BAD_USER_INPUT", editQ, map[string]any{"s": s.ID, "in": map[string]any{"baseRevision": 2, "ops": []map[string]any{{"retain": 3}}}})
	ada.Fail(t, "CONFLICT", editQ, map[string]any{"s": s.ID, "in": map[string]any{"baseRevision": 9, "ops": []map[string]any{{"retain": 10}}}})
	ada.Do(t, `mutation($s: ID!, $u: ID!) { setParticipantRole(sessionId: $s, userId: $u, role: VIEWER) { role } }`, map[string]any{"s": s.ID, "u": bob.ID}, nil)
	bob.Fail(t, "FORBIDDEN", editQ, map[string]any{"s": s.ID, "in": map[string]any{"baseRevision": 2, "ops": []map[string]any{{"retain": 10}}}})

	// Late subscribers of both protocols catch up from revision 1, then live.
	for _, proto := range []string{"graphql-transport-ws", "graphql-ws"} {
		sock := openSocket(t, ta, proto, bob.Access)
		sock.subscribe("edits", codeEditedQ, map[string]any{"s": s.ID, "since": 1})
		next := func() codeEdit {
			return field[codeEdit](t, sock.await("edits", func(map[string]json.RawMessage) bool { return true }), "codeEdited")
		}
		if e := next(); e.Revision != 2 {
			t.Fatalf("%s: caught up with revision %d, want 2", proto, e.Revision)
		}
		var head struct {
			Session struct {
				Code     string
				Revision int
			}
		}
		ada.Do(t, `query($s: ID!) { session(id: $s) { code revision } }`, map[string]any{"s": s.ID}, &head)
		e := edit(ada, head.Session.Revision, []map[string]any{{"retain": utf8.RuneCountInString(head.Session.Code)}, {"insert": "\n"}}, nil)
		for want := 3; want <= e.Revision; want++ { // the rest of the log, then the new edit live
			if got := next(); got.Revision != want {
				t.Fatalf("%s: revision %d, want %d", proto, got.Revision, want)
			}
		}
	}
}

type selectionEvent struct {
	User     struct{ ID string }
	Revision int
	Ranges   []struct{ Anchor, Head int }
}

// TestSelectionsAndCodeAt: a cursor set at an older revision reaches the
// others moved with the text, and goes when its user goes offline;
// codeAt gives the code at each revision.
func TestSelectionsAndCodeAt(t *testing.T) {
	ta := startApp(t)
	ada, bob := ta.register(t, "ada"), ta.register(t, "bob")
	s := createSession(t, ada, "cursors") // "print(1)"
	join(t, bob, *s.InviteCode)
	vars := map[string]any{"s": s.ID}

	bobSock := openSocket(t, ta, "graphql-ws", bob.Access)
	bobSock.subscribe("sel", `subscription($s: ID!) { selections(sessionId: $s) { user { id } revision ranges { anchor head } } }`, vars)
	adaSock := openSocket(t, ta, "graphql-transport-ws", ada.Access)
	// Ada is online while this lasts: from revision 0, so that its first
	// event (bob's edit below) shows it live before she goes.
	adaSock.subscribe("edits", codeEditedQ, map[string]any{"s": s.ID, "since": 0})

	var e struct{ EditCode codeEdit }
	bob.Do(t, editQ, map[string]any{"s": s.ID, "in": map[string]any{"baseRevision": 0, "ops": []map[string]any{{"insert": "# "}, {"retain": 8}}}}, &e)
	// Ada's cursor after "print(" at revision 0 lands at 8 on revision 1;
	// repeated until bob's subscription is live (selections have no replay).
	setQ := `mutation($s: ID!) { setSelection(sessionId: $s, revision: 0, ranges: [{anchor: 6, head: 6}]) { revision } }`
	bobSock.seen("sel", func() { ada.Do(t, setQ, vars, nil) }, func(d map[string]json.RawMessage) bool {
		ev := field[selectionEvent](t, d, "selections")
		return ev.User.ID == ada.ID && ev.Revision == 1 && len(ev.Ranges) == 1 && ev.Ranges[0].Anchor == 8 && ev.Ranges[0].Head == 8
	})
	adaSock.await("edits", func(d map[string]json.RawMessage) bool { return field[codeEdit](t, d, "codeEdited").Revision == 1 })
	adaSock.conn.Close() // offline: her cursor goes
	bobSock.await("sel", func(d map[string]json.RawMessage) bool {
		ev := field[selectionEvent](t, d, "selections")
		return ev.User.ID == ada.ID && len(ev.Ranges) == 0
	})

	for rev, want := range []string{"print(1)", "# print(1)"} {
		var got struct{ CodeAt string }
		bob.Do(t, `query($s: ID!, $r: Int!) { codeAt(sessionId: $s, revision: $r) }`, map[string]any{"s": s.ID, "r": rev}, &got)
		if got.CodeAt != want {
			t.Fatalf("codeAt %d: %q, want %q", rev, got.CodeAt, want)
		}
	}
	bob.Fail(t, "BAD_USER_INPUT", `query($s: ID!) { codeAt(sessionId: $s, revision: 7) }`, vars)
}

// TestRunsTiedToRevisions: a session run says which revision's code it
// ran; with code omitted it runs the session's current code.
func TestRunsTiedToRevisions(t *testing.T) {
	ta := startApp(t)
	ada := ta.register(t, "ada")
	s := createSession(t, ada, "runs") // "print(1)"
	ada.Do(t, editQ, map[string]any{"s": s.ID, "in": map[string]any{"baseRevision": 0, "ops": []map[string]any{{"retain": 6}, {"delete": 1}, {"insert": "2"}, {"retain": 1}}}}, nil)
	type run struct {
		ID, Code string
		Revision *int
	}
	execute := func(code *string) run {
		in := map[string]any{"language": "python", "sessionId": s.ID}
		if code != nil {
			in["code"] = *code
		}
		var out struct{ Execute run }
		ada.Do(t, `mutation($in: ExecuteInput!) { execute(input: $in) { id code revision } }`, map[string]any{"in": in}, &out)
		return out.Execute
	}
	same, other := "print(2)", "print(3)"
	for _, c := range []struct {
		name string
		code *string
		rev  *int
	}{{"code omitted", nil, ip(1)}, {"the current code", &same, ip(1)}, {"other code", &other, nil}} {
		r := execute(c.code)
		switch {
		case c.rev == nil && r.Revision != nil, c.rev != nil && (r.Revision == nil || *r.Revision != *c.rev):
			t.Fatalf("%s: revision %v, want %v", c.name, r.Revision, c.rev)
		case c.code == nil && r.Code != "print(2)":
			t.Fatalf("%s: ran %q", c.name, r.Code)
		}
		if r.Revision != nil {
			var at struct{ CodeAt string }
			ada.Do(t, `query($s: ID!, $r: Int!) { codeAt(sessionId: $s, revision: $r) }`, map[string]any{"s": s.ID, "r": *r.Revision}, &at)
			if at.CodeAt != r.Code {
				t.Fatalf("%s: codeAt %q, run's code %q", c.name, at.CodeAt, r.Code)
			}
		}
	}
	var list struct{ Executions []run }
	ada.Do(t, `query($s: ID!) { executions(sessionId: $s) { id revision } }`, map[string]any{"s": s.ID}, &list)
	if len(list.Executions) != 3 || list.Executions[2].Revision == nil || *list.Executions[2].Revision != 1 {
		t.Fatalf("executions: %+v", list.Executions)
	}
	ada.Fail(t, "BAD_USER_INPUT", `mutation { execute(input: {language: "python"}) { id } }`, nil)
}

func ip(n int) *int { return &n }

// TestForkSession: a fork is a new session of the caller's with the code
// as it was at the revision; outsiders cannot fork.
func TestForkSession(t *testing.T) {
	ta := startApp(t)
	ada, bob, eve := ta.register(t, "ada"), ta.register(t, "bob"), ta.register(t, "eve")
	s := createSession(t, ada, "origin") // "print(1)"
	join(t, bob, *s.InviteCode)
	ada.Do(t, editQ, map[string]any{"s": s.ID, "in": map[string]any{"baseRevision": 0, "ops": []map[string]any{{"insert": "# "}, {"retain": 8}}}}, nil)
	forkQ := `mutation($s: ID!, $r: Int!) { forkSession(sessionId: $s, revision: $r) { id title language code revision owner { id } participants { role user { id } } } }`
	var out struct {
		ForkSession struct {
			ID, Title, Language, Code string
			Revision                  int
			Owner                     struct{ ID string }
			Participants              []struct{ Role string }
		}
	}
	bob.Do(t, forkQ, map[string]any{"s": s.ID, "r": 0}, &out)
	f := out.ForkSession
	if f.ID == s.ID || f.Owner.ID != bob.ID || f.Code != "print(1)" || f.Revision != 0 || f.Language != "python" || len(f.Participants) != 1 || f.Title != "Fork of origin (revision 0)" {
		t.Fatalf("fork: %+v", f)
	}
	eve.Fail(t, "NOT_FOUND", forkQ, map[string]any{"s": s.ID, "r": 0})
	bob.Fail(t, "BAD_USER_INPUT", forkQ, map[string]any{"s": s.ID, "r": 5})
}
