package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/codecrafter/codecrafter/ot"
)

// TestThreeClientsEditAcrossReplicas: three clients edit one session at
// once with random edits, spread over two replicas (one Redis, one store)
// and both WebSocket protocols, each the way a client of the README's
// protocol works (editClient); all end with the server's document, and
// replaying the broadcast edits gives it too.
func TestThreeClientsEditAcrossReplicas(t *testing.T) {
	t.Parallel()
	a, b := startReplicas(t)
	editTogether(t, a, b)
}

const headQ = `query($id: ID!) { session(id: $id) { code revision } }`

// editTogether runs three editClients on a session: ada edits through A
// and follows codeEdited on A (graphql-transport-ws), bob edits through B
// and follows on B (graphql-ws), carol edits through A and follows on B
// (graphql-transport-ws).
func editTogether(t *testing.T, a, b *testApp) {
	t.Helper()
	ada := a.register(t, "ada")
	s := createSession(t, ada, "three editors")
	bob, carol := b.register(t, "bob"), a.register(t, "carol")
	join(t, bob, *s.InviteCode)
	join(t, carol, *s.InviteCode)
	carol.Client = a.client().With(carol.Access)
	bob.Client = b.client().With(bob.Access)

	const edits = 20 // each client's own, as typed
	clients := []*editClient{
		newEditClient(t, ada, openSocket(t, a, "graphql-transport-ws", ada.Access), s, 1),
		newEditClient(t, bob, openSocket(t, b, "graphql-ws", bob.Access), s, 2),
		newEditClient(t, carol, openSocket(t, b, "graphql-transport-ws", carol.Access), s, 3),
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { c.run(edits) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var head struct{ Session sessionOut }
	ada.Do(t, headQ, map[string]any{"id": s.ID}, &head)
	sent, rebased := 0, 0
	for _, c := range clients {
		sent, rebased = sent+c.seq, rebased+c.rebased
	}
	if head.Session.Revision != sent { // each sent edit landed once
		t.Fatalf("head revision %d after %d edits sent", head.Session.Revision, sent)
	}
	t.Logf("%d edits sent (%d typed, the rest composed while one was outstanding); %d revisions rebased over a pending one", sent, 3*edits, rebased)
	for _, c := range clients {
		c.catchUp(head.Session.Revision)
		if c.doc != head.Session.Code {
			t.Errorf("%s ends with %q, the server has %q", c.u.Name, c.doc, head.Session.Code)
		}
		replayed := s.Code
		for i, e := range c.seen {
			var err error
			if replayed, err = ot.Apply(replayed, e.op()); err != nil {
				t.Fatalf("%s: replaying revision %d: %v", c.u.Name, i+1, err)
			}
		}
		if replayed != head.Session.Code {
			t.Errorf("replaying what %s got gives %q, the server has %q", c.u.Name, replayed, head.Session.Code)
		}
	}
	var onB struct{ Session sessionOut }
	bob.Do(t, headQ, map[string]any{"id": s.ID}, &onB)
	if onB.Session.Code != head.Session.Code || onB.Session.Revision != head.Session.Revision {
		t.Errorf("B has revision %d %q, A %d %q", onB.Session.Revision, onB.Session.Code, head.Session.Revision, head.Session.Code)
	}
}

// editClient is a client of the editing protocol, as in ot.js: it types
// on its own copy of the document at once; one edit at a time is sent
// (outstanding), based on the newest revision it has, and what it types
// meanwhile waits, composed (buffer). It follows codeEdited from revision
// 0: its own edit coming back is the acknowledgement; anyone else's is
// transformed over outstanding and buffer (the applied edit first:
// Transform(applied, mine)) and applied to the copy.
type editClient struct {
	t     *testing.T
	u     *user
	sess  sessionOut
	r     *rand.Rand
	edits <-chan codeEdit
	errs  <-chan error

	doc                 string
	rev                 int // the newest revision the copy includes
	outstanding, buffer ot.Operation
	// sending: outstanding is sent, not yet acknowledged (a transform may
	// leave it empty: the server still gives it a revision)
	sending bool
	sentRev int        // the revision the server gave outstanding
	seq     int        // edits sent
	rebased int        // others' edits transformed over a pending one of ours
	seen    []codeEdit // every revision, in order
}

func newEditClient(t *testing.T, u *user, sock *rawSocket, s sessionOut, seed uint64) *editClient {
	sock.subscribe("edits", codeEditedQ, map[string]any{"s": s.ID, "since": 0})
	edits, errs := followEdits(t, sock, "edits")
	return &editClient{t: t, u: u, sess: s, r: rand.New(rand.NewPCG(seed, 8)), edits: edits, errs: errs, doc: s.Code}
}

// run types n edits, taking in revisions in between, until its own have
// all come back.
func (c *editClient) run(n int) {
	for typed := 0; typed < n || c.sending; {
		// With an edit outstanding, it mostly waits for the next revision
		// (which comes: its own at least) before typing on.
		if typed < n && (!c.sending || c.r.IntN(3) == 0) {
			c.typeOne()
			typed++
			continue
		}
		if !c.receive() {
			return
		}
	}
}

// catchUp takes in edits until the copy is at rev.
func (c *editClient) catchUp(rev int) {
	for c.rev < rev && c.receive() {
	}
}

// typeOne makes a random edit of the copy and sends or buffers it.
func (c *editClient) typeOne() {
	op := randomOp(c.r, c.doc, c.u.Name[:1])
	doc, err := ot.Apply(c.doc, op)
	if err != nil {
		c.t.Errorf("%s: typing %v on %q: %v", c.u.Name, op, c.doc, err)
		return
	}
	c.doc = doc
	switch {
	case !c.sending:
		c.outstanding, c.sending = op, true
		c.send()
	case c.buffer == nil:
		c.buffer = op
	default:
		if c.buffer, err = ot.Compose(c.buffer, op); err != nil {
			c.t.Errorf("%s: compose: %v", c.u.Name, err)
		}
	}
}

// send submits outstanding, based on rev.
func (c *editClient) send() {
	c.seq++
	ops := make([]map[string]any, len(c.outstanding))
	for i, o := range c.outstanding {
		switch {
		case o.Retain > 0:
			ops[i] = map[string]any{"retain": o.Retain}
		case o.Delete > 0:
			ops[i] = map[string]any{"delete": o.Delete}
		default:
			ops[i] = map[string]any{"insert": o.Insert}
		}
	}
	r := c.u.Raw(c.t, editQ, map[string]any{"s": c.sess.ID, "in": map[string]any{
		"baseRevision": c.rev, "ops": ops, "clientId": c.u.Name, "seq": c.seq}})
	var out struct{ EditCode codeEdit }
	if len(r.Errors) > 0 || json.Unmarshal(r.Data, &out) != nil {
		c.t.Errorf("%s: editCode: %+v", c.u.Name, r.Errors)
		return
	}
	c.sentRev = out.EditCode.Revision
}

// receive takes in the next revision; false when none came.
func (c *editClient) receive() bool {
	var e codeEdit
	select {
	case e = <-c.edits:
	case err := <-c.errs:
		c.t.Errorf("%s: codeEdited: %v", c.u.Name, err)
		return false
	}
	if e.Revision != c.rev+1 {
		c.t.Errorf("%s: revision %d after %d", c.u.Name, e.Revision, c.rev)
		return false
	}
	c.rev++
	c.seen = append(c.seen, e)
	if e.Author.ID == c.u.ID { // our outstanding edit, acknowledged
		if !c.sending || e.Revision != c.sentRev {
			c.t.Errorf("%s: own revision %d, but sent %d (sending %v)", c.u.Name, e.Revision, c.sentRev, c.sending)
			return false
		}
		c.outstanding, c.buffer, c.sending = c.buffer, nil, c.buffer != nil
		if c.sending {
			c.send()
		}
		return true
	}
	applied := e.op()
	var err error
	if c.sending {
		c.rebased++
		if applied, c.outstanding, err = ot.Transform(applied, c.outstanding); err == nil && c.buffer != nil {
			applied, c.buffer, err = ot.Transform(applied, c.buffer)
		}
	}
	if err == nil {
		c.doc, err = ot.Apply(c.doc, applied)
	}
	if err != nil {
		c.t.Errorf("%s: taking in revision %d: %v", c.u.Name, e.Revision, err)
		return false
	}
	return true
}

func (e codeEdit) op() ot.Operation {
	op := make(ot.Operation, len(e.Ops))
	for i, o := range e.Ops {
		switch {
		case o.Retain != nil:
			op[i].Retain = *o.Retain
		case o.Insert != nil:
			op[i].Insert = *o.Insert
		case o.Delete != nil:
			op[i].Delete = *o.Delete
		}
	}
	return op
}

// randomOp is an insert (astral characters too) or a delete of doc.
func randomOp(r *rand.Rand, doc, who string) ot.Operation {
	n := utf8.RuneCountInString(doc)
	pos := r.IntN(n + 1)
	var mid ot.Op
	if n > 0 && r.IntN(3) == 0 {
		mid.Delete = 1 + r.IntN(min(3, n))
		pos = min(pos, n-mid.Delete)
	} else {
		mid.Insert = []string{who, "😀", "é", "\n", who + who}[r.IntN(5)]
	}
	var op ot.Operation
	for _, o := range []ot.Op{{Retain: pos}, mid, {Retain: n - pos - mid.Delete}} {
		if o != (ot.Op{}) {
			op = append(op, o)
		}
	}
	return op
}

// followEdits hands operation id's codeEdited events on sock to a channel,
// and a failure (an error, the end, or nothing for a minute) to the other.
func followEdits(t *testing.T, sock *rawSocket, id string) (<-chan codeEdit, <-chan error) {
	edits, errs := make(chan codeEdit, 4096), make(chan error, 1)
	go func() {
		for {
			m, err := sock.read(time.Minute)
			if err != nil {
				errs <- err
				return
			}
			if m.ID != id {
				continue
			}
			if m.Type != "next" && m.Type != "data" {
				errs <- fmt.Errorf("%s %s", m.Type, m.Payload)
				return
			}
			var p struct {
				Data   struct{ CodeEdited codeEdit }
				Errors json.RawMessage
			}
			if err := json.Unmarshal(m.Payload, &p); err != nil || p.Errors != nil {
				errs <- fmt.Errorf("%s (%v)", m.Payload, err)
				return
			}
			select {
			case edits <- p.Data.CodeEdited:
			case <-t.Context().Done():
				return
			}
		}
	}()
	return edits, errs
}
