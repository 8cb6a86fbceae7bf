package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	timelineFields = `cursor kind at user { id } fromRevision toRevision editCount message { id body } execution { id status stdout } role`
	timelineQ      = `query($s: ID!, $a: String, $l: Int) { timeline(sessionId: $s, after: $a, limit: $l) { ` + timelineFields + ` } }`
	timelineAddedQ = `subscription($s: ID!, $a: String) { timelineAdded(sessionId: $s, after: $a) { ` + timelineFields + ` } }`
)

type timelineItem struct {
	Cursor                              string
	Kind                                string
	At                                  time.Time
	User                                struct{ ID string }
	FromRevision, ToRevision, EditCount *int
	Message                             *struct{ ID, Body string }
	Execution                           *struct{ ID, Status, Stdout string }
	Role                                *string
}

// String is what the test compares: everything but the times.
func (it timelineItem) String() string {
	s := it.Kind + " " + it.User.ID
	switch {
	case it.Kind == "EDITS":
		s += fmt.Sprintf(" %d..%d (%d)", *it.FromRevision, *it.ToRevision, *it.EditCount)
	case it.Message != nil:
		s += " " + it.Message.Body
	case it.Execution != nil:
		s += " " + it.Execution.Status + " " + strings.TrimSpace(it.Execution.Stdout)
	}
	if it.Role != nil {
		s += " " + *it.Role
	}
	return s
}

// TestTimeline: a session's story (joins, edits in bursts per author,
// chat, a run with its final status, a role change, a leave, a removal)
// comes in one order from timeline, page by page with after; timelineAdded
// resumes after a cursor on both protocols with no gap and no duplicate,
// then goes on live (a new burst, a growing one sent again with its
// cursor, a message, a join, a run once it ends); outsiders get NOT_FOUND,
// and a participant's subscription ends when they are removed.
func TestTimeline(t *testing.T) {
	ta := startWorkerApp(t)
	ada, bob, cid, dan := ta.register(t, "ada"), ta.register(t, "bob"), ta.register(t, "cid"), ta.register(t, "dan")
	outsider := ta.register(t, "eve")
	s := createSession(t, ada, "story") // "print(1)"
	join(t, bob, *s.InviteCode)
	rev := 0
	edit := func(u *user, ops ...map[string]any) {
		var out struct{ EditCode codeEdit }
		u.Do(t, editQ, map[string]any{"s": s.ID, "in": map[string]any{"baseRevision": rev, "ops": ops}}, &out)
		rev = out.EditCode.Revision
	}
	edit(ada, map[string]any{"retain": 8}, map[string]any{"insert": "\n"})            // "print(1)\n"
	edit(ada, map[string]any{"retain": 9}, map[string]any{"insert": "print(2)"})      // "print(1)\nprint(2)"
	edit(bob, map[string]any{"retain": 17}, map[string]any{"insert": "\nprint(3)\n"}) // bob's burst
	send := func(u *user, body string) {
		u.Do(t, sendQ, map[string]any{"s": s.ID, "b": body}, nil)
	}
	send(ada, "hello")
	send(bob, "hi ada")
	run := execute(t, ada.Client, map[string]any{"language": "python", "sessionId": s.ID})
	checkRun(t, collectOutput(t, ada.Client, run.ID), "SUCCEEDED")
	join(t, cid, *s.InviteCode)
	ada.Do(t, roleQ, map[string]any{"s": s.ID, "u": cid.ID, "r": "VIEWER"}, nil)
	cid.Do(t, `mutation($s: ID!) { leaveSession(id: $s) }`, map[string]any{"s": s.ID}, nil)
	var sess struct{ Session struct{ InviteCode string } }
	ada.Do(t, `query($s: ID!) { session(id: $s) { inviteCode } }`, map[string]any{"s": s.ID}, &sess)
	join(t, dan, sess.Session.InviteCode)
	ada.Do(t, `mutation($s: ID!, $u: ID!) { removeParticipant(sessionId: $s, userId: $u) }`, map[string]any{"s": s.ID, "u": dan.ID}, nil)

	page := func(u *user, after *string, limit int) []timelineItem {
		var out struct{ Timeline []timelineItem }
		u.Do(t, timelineQ, map[string]any{"s": s.ID, "a": after, "l": limit}, &out)
		return out.Timeline
	}
	all := page(bob, nil, 30) // (the complexity limit: 30 items of this selection)
	var story, edits []string
	for _, it := range all {
		if it.Kind == "EDITS" {
			edits = append(edits, it.String())
			continue
		}
		story = append(story, it.String())
	}
	want := []string{
		"JOINED " + ada.ID + " OWNER", "JOINED " + bob.ID + " EDITOR",
		"MESSAGE " + ada.ID + " hello", "MESSAGE " + bob.ID + " hi ada",
		"RUN " + ada.ID + " SUCCEEDED 1\n2\n3",
		"JOINED " + cid.ID + " EDITOR", "ROLE_CHANGED " + cid.ID + " VIEWER", "LEFT " + cid.ID,
		"JOINED " + dan.ID + " EDITOR", "REMOVED " + dan.ID,
	}
	if strings.Join(story, "|") != strings.Join(want, "|") {
		t.Fatalf("timeline without edits:\n%q\nwant\n%q", story, want)
	}
	// Edits: ada's two in one burst, unless a pause of 3 s came between
	// them (a loaded machine), and bob's own; before the chat.
	wantEdits := []string{"EDITS " + ada.ID + " 1..2 (2)", "EDITS " + bob.ID + " 3..3 (1)"}
	if split := []string{"EDITS " + ada.ID + " 1..1 (1)", "EDITS " + ada.ID + " 2..2 (1)", wantEdits[1]}; !slices.Equal(edits, wantEdits) && !slices.Equal(edits, split) {
		t.Fatalf("edit bursts %q, want %q", edits, wantEdits)
	}
	if all[0].Kind != "JOINED" || all[2].Kind != "EDITS" || all[len(edits)+2].Kind != "MESSAGE" {
		t.Fatalf("order: %v", all)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Kind != "EDITS" && all[i-1].Kind != "EDITS" && all[i].At.Truncate(time.Millisecond).Before(all[i-1].At.Truncate(time.Millisecond)) {
			t.Fatalf("item %d at %v before item %d at %v", i, all[i].At, i-1, all[i-1].At)
		}
	}
	if all[len(edits)+4].Execution.ID != run.ID {
		t.Fatalf("run item %+v, want run %s", all[len(edits)+4], run.ID)
	}

	// Pages of 3 with after give the same items, each once.
	var paged []timelineItem
	var after *string
	for {
		p := page(ada, after, 3)
		if len(p) == 0 {
			break
		}
		paged = append(paged, p...)
		after = &p[len(p)-1].Cursor
	}
	withCursors := func(items []timelineItem) (out []string) {
		for _, it := range items {
			out = append(out, it.String()+" @"+it.Cursor)
		}
		return out
	}
	if !slices.Equal(withCursors(paged), withCursors(all)) {
		t.Fatalf("paged:\n%v\nall:\n%v", paged, all)
	}
	cursors := map[string]bool{}
	for _, it := range all {
		cursors[it.Cursor] = true
	}
	if len(cursors) != len(all) {
		t.Fatalf("%d cursors for %d items", len(cursors), len(all))
	}

	// Outsiders and bad arguments.
	outsider.Fail(t, "NOT_FOUND", timelineQ, map[string]any{"s": s.ID, "l": 10})
	dan.Fail(t, "NOT_FOUND", timelineQ, map[string]any{"s": s.ID, "l": 10}) // removed
	bob.Fail(t, "BAD_USER_INPUT", timelineQ, map[string]any{"s": s.ID, "a": "not a cursor", "l": 10})
	bob.Fail(t, "BAD_USER_INPUT", `query($s: ID!) { timeline(sessionId: $s, limit: 201) { cursor } }`, map[string]any{"s": s.ID})
	if r, ok := outsider.Subscribe(t, timelineAddedQ, map[string]any{"s": s.ID}).Next(t, 20*time.Second); !ok || r.Code() != "NOT_FOUND" {
		t.Fatalf("outsider's subscription: %+v, want NOT_FOUND", r)
	}

	// timelineAdded after the cursor of the second message: the rest, then live.
	k := len(edits) + 3
	next := func(sock *rawSocket) timelineItem {
		return field[timelineItem](t, sock.await("tl", func(map[string]json.RawMessage) bool { return true }), "timelineAdded")
	}
	// nextFresh skips bursts sent again (one at or before the cursor may
	// still be open, or grow).
	nextFresh := func(sock *rawSocket, seen map[string]bool) timelineItem {
		for {
			it := next(sock)
			if it.Kind != "EDITS" || !seen[it.Cursor] {
				return it
			}
		}
	}
	upTo := func(n int) map[string]bool {
		m := map[string]bool{}
		for _, it := range all[:n] {
			m[it.Cursor] = true
		}
		return m
	}
	socks := map[string]*rawSocket{}
	for _, proto := range []string{"graphql-transport-ws", "graphql-ws"} {
		sock := openSocket(t, ta, proto, bob.Access)
		sock.subscribe("tl", timelineAddedQ, map[string]any{"s": s.ID, "a": all[k].Cursor})
		for i := k + 1; i < len(all); i++ {
			if got := nextFresh(sock, upTo(k+1)); got.String() != all[i].String() || got.Cursor != all[i].Cursor {
				t.Fatalf("%s: replayed %v (%s), want item %d %v (%s)", proto, got, got.Cursor, i, all[i], all[i].Cursor)
			}
		}
		socks[proto] = sock
	}
	// Live: a message, bursts, a join, a run once it ended.
	seen := upTo(len(all))
	live := func(what string, match func(timelineItem) bool) timelineItem {
		t.Helper()
		var first timelineItem
		for proto, sock := range socks {
			got := nextFresh(sock, seen)
			if !match(got) {
				t.Fatalf("%s: live %s: got %v", proto, what, got)
			}
			first = got
		}
		seen[first.Cursor] = true
		return first
	}
	send(ada, "live")
	msg := live("message", func(it timelineItem) bool { return it.String() == "MESSAGE "+ada.ID+" live" })
	edit(bob, map[string]any{"retain": 27}, map[string]any{"insert": "# bob"})
	// bob's first burst may still be open: then this grows it (its cursor).
	var burst timelineItem
	for proto, sock := range socks {
		if burst = next(sock); burst.Kind != "EDITS" || burst.User.ID != bob.ID || *burst.ToRevision != rev {
			t.Fatalf("%s: after bob's edit: %v", proto, burst)
		}
	}
	seen[burst.Cursor] = true
	edit(bob, map[string]any{"retain": 32}, map[string]any{"insert": "!"})
	for proto, sock := range socks { // grown (same cursor), or a new burst after a pause
		got := next(sock)
		if got.Kind != "EDITS" || got.User.ID != bob.ID || *got.ToRevision != rev || (got.Cursor == burst.Cursor) != (*got.FromRevision == *burst.FromRevision) {
			t.Fatalf("%s: after bob's second edit: %v, the burst was %v", proto, got, burst)
		}
		seen[got.Cursor] = true
	}
	var inv struct{ RotateInviteCode struct{ InviteCode string } }
	ada.Do(t, `mutation($s: ID!) { rotateInviteCode(sessionId: $s) { inviteCode } }`, map[string]any{"s": s.ID}, &inv)
	join(t, outsider, inv.RotateInviteCode.InviteCode)
	live("join", func(it timelineItem) bool { return it.String() == "JOINED "+outsider.ID+" EDITOR" })
	run2 := execute(t, bob.Client, map[string]any{"language": "python", "code": "print('again')", "sessionId": s.ID})
	live("run", func(it timelineItem) bool {
		return it.Kind == "RUN" && it.Execution.ID == run2.ID && it.Execution.Status == "SUCCEEDED"
	})

	// Resuming after the live message: what came after it, nothing twice.
	sock := openSocket(t, ta, "graphql-ws", bob.Access)
	sock.subscribe("tl", timelineAddedQ, map[string]any{"s": s.ID, "a": msg.Cursor})
	if got := nextFresh(sock, seen); got.String() != "JOINED "+outsider.ID+" EDITOR" {
		t.Fatalf("resumed with %v, want the join", got)
	}
	if got := nextFresh(sock, seen); got.Kind != "RUN" || got.Execution.ID != run2.ID {
		t.Fatalf("resumed with %v, want the run", got)
	}
	send(bob, "last")
	if got := nextFresh(sock, seen); got.String() != "MESSAGE "+bob.ID+" last" {
		t.Fatalf("then %v, want bob's message", got)
	}

	// Removed: the subscription ends with NOT_FOUND.
	ada.Do(t, `mutation($s: ID!, $u: ID!) { removeParticipant(sessionId: $s, userId: $u) }`, map[string]any{"s": s.ID, "u": bob.ID}, nil)
	for {
		m := sock.next()
		if m.ID != "tl" || m.Type == "next" || m.Type == "data" {
			continue // bob's own removal may come first
		}
		if m.Type != "error" || !strings.Contains(string(m.Payload), "NOT_FOUND") {
			t.Fatalf("after removal: got %s %s, want an error with NOT_FOUND", m.Type, m.Payload)
		}
		break
	}
}

// TestTimelineAcrossReplicas: what happens through one replica reaches a
// timelineAdded subscriber of the other (events on Redis, the store shared).
func TestTimelineAcrossReplicas(t *testing.T) {
	t.Parallel()
	a, b := startReplicas(t)
	ada, bob, cid := a.register(t, "ada"), b.register(t, "bob"), a.register(t, "cid")
	s := createSession(t, ada, "two replicas")
	join(t, bob, *s.InviteCode)
	var tl struct{ Timeline []timelineItem }
	bob.Do(t, timelineQ, map[string]any{"s": s.ID, "l": 10}, &tl)
	if len(tl.Timeline) != 2 || tl.Timeline[1].String() != "JOINED "+bob.ID+" EDITOR" {
		t.Fatalf("timeline through b: %v", tl.Timeline)
	}
	sock := openSocket(t, b, "graphql-transport-ws", bob.Access)
	sock.subscribe("tl", timelineAddedQ, map[string]any{"s": s.ID, "a": tl.Timeline[1].Cursor})
	ada.Do(t, sendQ, map[string]any{"s": s.ID, "b": "through a"}, nil)
	ada.Do(t, editQ, map[string]any{"s": s.ID, "in": map[string]any{"baseRevision": 0, "ops": []map[string]any{{"insert": "# "}, {"retain": 8}}}}, nil)
	join(t, cid, *s.InviteCode)
	ada.Do(t, roleQ, map[string]any{"s": s.ID, "u": cid.ID, "r": "VIEWER"}, nil)
	for _, want := range []string{
		"MESSAGE " + ada.ID + " through a", "EDITS " + ada.ID + " 1..1 (1)",
		"JOINED " + cid.ID + " EDITOR", "ROLE_CHANGED " + cid.ID + " VIEWER",
	} {
		if got := field[timelineItem](t, sock.await("tl", func(map[string]json.RawMessage) bool { return true }), "timelineAdded"); got.String() != want {
			t.Fatalf("through b: %v, want %s", got, want)
		}
	}
}
