package ferret

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// wireProxy stands between clients and the embedded FerretDB, for two
// reasons found by testing FerretDB v1.24 (SQLite backend):
//
//   - It runs an update or findAndModify as "query, then write each match
//     back by _id", with nothing stopping another write in between: 20
//     racing findAndModify guarded by {usedAt: {$exists: false}} gave up to
//     6 winners. The proxy lets one write command at a time through (until
//     its reply), across every client connection, so that single-document
//     updates are atomic again. Reads are not held up.
//   - It pushes only a filter that is exactly {_id: ...} down to SQLite;
//     any other filter decodes every document of the collection in Go. For
//     a findAndModify whose query is an _id plus simple guards, the proxy
//     (holding the write lock) fetches the document by _id, checks the
//     guards itself (matchGuards) and forwards the query as {_id} alone
//     (or an _id nothing has, when a guard fails).
//
// After a createIndexes or create it also adds the _id index FerretDB
// lacks (see ensureIDIndex).
type wireProxy struct {
	ln      net.Listener
	backend string // FerretDB's address
	dir     string // FerretDB's SQLite directory
	logger  *slog.Logger

	lock chan struct{} // full while a write command is in flight
	done chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	// The proxy's own connection for guard lookups; used only while
	// holding lock.
	lookup   net.Conn
	lookupR  *bufio.Reader
	lookupID int32
}

// readCommands are the commands that change nothing; any other command
// (and any message that is not an OP_MSG) waits for the write lock. An
// aggregate with $out or $merge would write unguarded: this package
// sends none.
var readCommands = map[string]bool{
	"find": true, "getmore": true, "killcursors": true, "aggregate": true,
	"count": true, "distinct": true, "explain": true,
	"hello": true, "ismaster": true, "ping": true, "buildinfo": true,
	"listcollections": true, "listindexes": true, "listdatabases": true,
	"collstats": true, "dbstats": true, "datasize": true, "serverstatus": true,
	"hostinfo": true, "getparameter": true, "getcmdlineopts": true, "getlog": true,
	"connectionstatus": true, "whatsmyuri": true, "endsessions": true,
	"saslstart": true, "saslcontinue": true, "usersinfo": true,
}

func startWireProxy(ln net.Listener, backend, dir string, logger *slog.Logger) *wireProxy {
	p := &wireProxy{
		ln: ln, backend: backend, dir: dir, logger: logger,
		lock:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		conns: map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go p.serve()
	return p
}

// close stops accepting, drops every connection and waits for the
// proxy's goroutines.
func (p *wireProxy) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *wireProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.logger.Warn("embedded mongo: accept", "err", err)
			select {
			case <-p.done:
				return
			case <-time.After(100 * time.Millisecond): // e.g. out of file descriptors
			}
			continue
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

// track registers c to be closed by close; false when closing already.
func (p *wireProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *wireProxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *wireProxy) acquire() bool {
	select {
	case p.lock <- struct{}{}:
		return true
	case <-p.done:
		return false
	}
}

func (p *wireProxy) release() { <-p.lock }

func (p *wireProxy) handle(client net.Conn) {
	defer p.wg.Done()
	defer p.drop(client)
	server, err := net.DialTimeout("tcp", p.backend, 5*time.Second)
	if err != nil {
		p.logger.Error("embedded mongo: dial FerretDB", "err", err)
		return
	}
	if !p.track(server) {
		server.Close()
		return
	}
	defer p.drop(server)

	c := &proxyConn{p: p, client: client, server: server}
	replies := make(chan struct{})
	go func() {
		defer close(replies)
		c.replies()
		client.Close() // ends requests
	}()
	c.requests()
	client.Close()
	// A client gone mid-write (the driver drops a connection when a
	// context ends) must not free the lock before FerretDB is done with
	// that write: wait for its reply.
	if c.isHolding() {
		select {
		case <-replies:
		case <-time.After(time.Minute):
		case <-p.done:
		}
	}
	server.Close()
	<-replies
	c.releaseHeld()
}

// proxyConn is one client connection and its FerretDB connection.
type proxyConn struct {
	p              *wireProxy
	client, server net.Conn

	mu      sync.Mutex
	holding bool   // a write of this connection holds the lock...
	pending int32  // ...until the reply to this request id
	after   func() // runs on that reply, before the lock is released
}

func (c *proxyConn) requests() {
	r := bufio.NewReaderSize(c.client, 64<<10)
	for {
		m, err := readMessage(r)
		if err != nil {
			return
		}
		msg, _ := parseOpMsg(m) // nil for other op codes: treated as writes
		if msg != nil && readCommands[msg.command()] {
			if _, err := c.server.Write(m); err != nil {
				return
			}
			continue
		}
		if !c.p.acquire() {
			return
		}
		m, after := c.p.prepare(m, msg)
		if msg != nil && msg.flags&flagMoreToCome != 0 {
			// No reply will come: the write is as done as we can tell.
			_, err = c.server.Write(m)
			if after != nil {
				after()
			}
			c.p.release()
		} else {
			c.hold(m.requestID(), after)
			if _, err = c.server.Write(m); err != nil {
				c.releaseHeld()
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *proxyConn) replies() {
	r := bufio.NewReaderSize(c.server, 64<<10)
	for {
		m, err := readMessage(r)
		if err != nil {
			return
		}
		c.replied(m.responseTo())
		if _, err := c.client.Write(m); err != nil {
			return
		}
	}
}

func (c *proxyConn) hold(requestID int32, after func()) {
	c.mu.Lock()
	c.holding, c.pending, c.after = true, requestID, after
	c.mu.Unlock()
}

func (c *proxyConn) replied(responseTo int32) {
	c.mu.Lock()
	if !c.holding || c.pending != responseTo {
		c.mu.Unlock()
		return
	}
	after := c.after
	c.holding, c.after = false, nil
	c.mu.Unlock()
	if after != nil {
		after()
	}
	c.p.release()
}

func (c *proxyConn) isHolding() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holding
}

func (c *proxyConn) releaseHeld() {
	c.mu.Lock()
	held := c.holding
	c.holding, c.after = false, nil
	c.mu.Unlock()
	if held {
		c.p.release()
	}
}

// prepare runs with the write lock held: it may rewrite a findAndModify
// and returns what to do once the reply comes.
func (p *wireProxy) prepare(m message, msg *opMessage) (message, func()) {
	if msg == nil {
		return m, nil
	}
	switch msg.command() {
	case "findandmodify":
		return p.rewriteGuard(m, msg), nil
	case "createindexes", "create":
		db, _ := msg.body.Lookup("$db").StringValueOK()
		coll, _ := msg.body.Index(0).Value().StringValueOK()
		return m, func() { p.indexID(db, coll) }
	}
	return m, nil
}

func (p *wireProxy) indexID(db, coll string) {
	if db == "" || coll == "" || filepath.Base(db) != db {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ensureIDIndex(ctx, filepath.Join(p.dir, db+".sqlite"), coll); err != nil {
		p.logger.Warn("embedded mongo: _id index", "db", db, "collection", coll, "err", err)
	}
}

// rewriteGuard replaces a findAndModify query of the form {_id, guards...}
// by {_id} after checking the guards itself; see wireProxy. It leaves the
// message alone whenever it cannot decide.
func (p *wireProxy) rewriteGuard(m message, msg *opMessage) message {
	query, ok := msg.body.Lookup("query").DocumentOK()
	if !ok {
		return m
	}
	if upsert, _ := msg.body.Lookup("upsert").BooleanOK(); upsert {
		return m
	}
	id, guards, ok := splitGuard(query)
	if !ok || len(guards) == 0 {
		return m
	}
	db, _ := msg.body.Lookup("$db").StringValueOK()
	coll, _ := msg.body.Index(0).Value().StringValueOK()
	doc, found, err := p.findByID(db, coll, id, guards)
	if err != nil {
		p.logger.Warn("embedded mongo: guard lookup", "err", err)
		return m
	}
	target := id // when not found, {_id: id} finds nothing too
	if found {
		match, known := matchGuards(doc, guards)
		if !known {
			return m
		}
		if !match {
			target = noMatchID
		}
	}
	elems, err := msg.body.Elements()
	if err != nil {
		return m
	}
	cmd := make(bson.D, 0, len(elems))
	for _, e := range elems {
		if e.Key() == "query" {
			cmd = append(cmd, bson.E{Key: "query", Value: bson.D{{Key: "_id", Value: target}}})
		} else {
			cmd = append(cmd, bson.E{Key: e.Key(), Value: e.Value()})
		}
	}
	body, err := bson.Marshal(cmd)
	if err != nil {
		return m
	}
	return msg.encode(m.requestID(), body)
}

// findByID fetches the guarded fields of one document on the proxy's own
// connection.
func (p *wireProxy) findByID(db, coll, id string, guards []bson.RawElement) (bson.Raw, bool, error) {
	if p.lookup == nil {
		conn, err := net.DialTimeout("tcp", p.backend, 5*time.Second)
		if err != nil {
			return nil, false, err
		}
		if !p.track(conn) {
			conn.Close()
			return nil, false, net.ErrClosed
		}
		p.lookup, p.lookupR = conn, bufio.NewReader(conn)
	}
	doc, found, err := p.lookupRoundTrip(db, coll, id, guards)
	if err != nil {
		p.drop(p.lookup)
		p.lookup, p.lookupR = nil, nil
	}
	return doc, found, err
}

func (p *wireProxy) lookupRoundTrip(db, coll, id string, guards []bson.RawElement) (bson.Raw, bool, error) {
	projection := bson.D{}
	for _, g := range guards {
		projection = append(projection, bson.E{Key: g.Key(), Value: 1})
	}
	p.lookupID++
	m, err := newCommand(p.lookupID, bson.D{
		{Key: "find", Value: coll},
		{Key: "filter", Value: bson.D{{Key: "_id", Value: id}}},
		{Key: "projection", Value: projection},
		{Key: "limit", Value: int32(1)},
		{Key: "singleBatch", Value: true},
		{Key: "$db", Value: db},
	})
	if err != nil {
		return nil, false, err
	}
	if err := p.lookup.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return nil, false, err
	}
	if _, err := p.lookup.Write(m); err != nil {
		return nil, false, err
	}
	for {
		reply, err := readMessage(p.lookupR)
		if err != nil {
			return nil, false, err
		}
		if reply.responseTo() != p.lookupID {
			continue
		}
		msg, err := parseOpMsg(reply)
		if err != nil {
			return nil, false, err
		}
		if ok, _ := msg.body.Lookup("ok").AsFloat64OK(); ok != 1 {
			return nil, false, fmt.Errorf("find: %s", msg.body.Lookup("errmsg"))
		}
		batch, ok := msg.body.Lookup("cursor", "firstBatch").ArrayOK()
		if !ok {
			return nil, false, errors.New("find: no cursor.firstBatch")
		}
		v, err := batch.IndexErr(0)
		if err != nil {
			return nil, false, nil // empty batch: no such document
		}
		doc, ok := v.DocumentOK()
		return doc, ok, nil
	}
}
