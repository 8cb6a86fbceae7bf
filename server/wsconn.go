package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/push"
)

// wsTransport serves GraphQL over WebSocket, both subprotocols:
// graphql-transport-ws (graphql-ws, Apollo) and the legacy graphql-ws
// (subscriptions-transport-ws). It replaces gqlgen's transport to bound
// what an idle socket costs: one goroutine (the reader), no buffers held
// between writes, and no goroutine per subscription whose resolver
// delivers through push.Sink. Such subscriptions that are identical (same
// document, variables and user) encode each event once (wsGroup).
type wsTransport struct{ s *Server }

var _ graphql.Transport = wsTransport{}

func (wsTransport) Supports(r *http.Request) bool { return r.Header.Get("Upgrade") != "" }

// Frames and bytes a socket may have waiting to be written; beyond, the
// client is not reading and is disconnected (it resumes when back).
const (
	wsMaxQueuedFrames = 8192
	wsMaxQueuedBytes  = 16 << 20
	wsWriteTimeout    = 10 * time.Second
	closeTooSlow      = 1013 // "try again later"
)

func (t wsTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	s := t.s
	st := wsStateFrom(r.Context()) // set by serveWebsocket, the only way here
	header := http.Header{}
	if name := w.Header().Get(ReplicaHeader); name != "" {
		header.Set(ReplicaHeader, name) // gorilla writes the response, not w
	}
	up := websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		Subprotocols:     []string{graphqlTransportWS, graphqlWS},
		CheckOrigin:      func(r *http.Request) bool { return s.origins.allowed(r) },
		// Our own small read buffer (handed over by hijackWriter: the
		// reader looks at what it holds) and pooled write buffers, so that
		// net/http's (dropped when Do returns) do not stay per socket.
		WriteBufferPool: &wsWriteBuffers,
	}
	hw := &hijackWriter{ResponseWriter: w}
	conn, err := up.Upgrade(hw, r, header)
	if err != nil {
		return // gorilla answered
	}
	ctx := st.ctx // not r's: gqlgen's handler adds an operation trace
	c := &wsConn{
		s: s, exec: exec, st: st, conn: conn, batch: hw.conn, br: hw.br, ctx: ctx,
		legacy: conn.Subprotocol() != graphqlTransportWS,
		budget: newMessageBudget(s.cfg.WebSocket, time.Now()),
	}
	if sc, ok := hw.conn.Conn.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	c.cancel = st.cancel // ctx is serveWebsocket's, the socket's own
	st.accepted(conn, c.finished, func() { c.close(websocket.CloseNormalClosure, "terminated") })
	if ctx.Err() != nil { // Shutdown came before accepted: it closes later ones
		c.close(websocket.CloseNormalClosure, "terminated")
	}
	s.metrics.wsActive.Inc()
	s.logger(ctx).Info("websocket connected", "subprotocol", conn.Subprotocol(), "origin", r.Header.Get("Origin"))
	conn.SetReadLimit(s.cfg.WebSocketReadLimit)
	conn.SetPongHandler(func(string) error { c.alive(); return nil })
	c.alive()
	c.timer = time.AfterFunc(s.cfg.WebSocketInitTimeout, c.tick)
	if p := wsPoll(); p != nil && c.raw != nil {
		c.poller, c.pollID = p, p.add(c)
	}
	if !c.park() {
		go c.read()
	}
}

const (
	graphqlTransportWS = "graphql-transport-ws"
	graphqlWS          = "graphql-ws"
)

var wsWriteBuffers sync.Pool

// wsConn is one socket.
type wsConn struct {
	s      *Server
	exec   graphql.GraphExecutor
	st     *wsState
	conn   *websocket.Conn
	batch  *batchConn      // under conn: the writer's batches go out in one write
	br     *bufio.Reader   // conn's read buffer
	raw    syscall.RawConn // the socket's, to wait for input without reading; nil: none (TLS)
	legacy bool            // graphql-ws (subscriptions-transport-ws)

	budget    messageBudget // the client's messages (read's)
	timer     *time.Timer   // tick's: connection_init's deadline, then the keep-alive
	lastInput atomic.Int64  // when the last input came (UnixNano), for ping

	poller *wsPoller // nil: read waits for input on its goroutine
	pollID uint64
	pmu    sync.Mutex // guards parked and armed
	parked bool       // waiting for the poller, with no goroutine
	armed  bool       // in the poller's set

	ctx    context.Context // the socket's: ends when it closes
	cancel context.CancelFunc

	initCtx context.Context // after connection_init: the user's context

	mu       sync.Mutex
	ops      []*wsOp // running (a few: a slice costs less than a map); an id is not used twice at once
	opsEnded bool    // the socket closed: endOps ends ops

	wmu      sync.Mutex // guards the write queue
	out      [][]byte
	outBytes int
	writing  bool // a writer goroutine is draining out
	closing  bool
	// Set by close before closing, read by the writer after.
	closeCode   int
	closeReason string

	closeOnce sync.Once
}

// message is a protocol message of either subprotocol.
type message struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// read waits for input (at once when the poller woke it), reads and
// handles the client's messages while there are some, then parks the
// socket with the poller, which runs read again on input:
// an idle socket holds no goroutine. Without a poller (TLS, not Linux),
// read waits for input itself. When the connection fails or closes, read
// releases everything.
func (c *wsConn) read() {
	for {
		err := c.readable()
		if err == nil && c.skipPong() {
			if c.park() {
				return
			}
			continue
		}
		if err == nil {
			err = c.next()
		}
		if err != nil {
			c.readFailed(err)
			c.finish()
			return
		}
		if c.park() {
			return
		}
	}
}

// next reads a message and acts on it.
func (c *wsConn) next() error {
	_, b, err := c.conn.ReadMessage() // bounded by the read limit
	if err != nil {
		return err
	}
	if c.isClosing() {
		// Drain until the client answers the close frame (or the
		// writer's deadline): closing with unread input would reset the
		// connection before the client reads why.
		return nil
	}
	c.alive()
	if !c.budget.take(time.Now()) {
		c.close(websocket.ClosePolicyViolation, "Too many messages: slow down")
		return nil
	}
	c.message(b) // one that ends the socket closes it
	return nil
}

// skipPong consumes a pong frame (the answer to the keep-alive's
// WebSocket ping, graphql-ws) that input starts with, as gorilla's pong
// handler would: gorilla reads control frames only on its way to a data
// message, and waiting for one would hold read's goroutine. Input is at
// a frame's start here: read lets gorilla read whole messages only.
func (c *wsConn) skipPong() bool {
	const pong, masked = 0x80 | websocket.PongMessage, 0x80 // FIN, opcode; mask bit
	b, err := c.br.Peek(2)
	if err != nil || b[0] != pong || b[1]&masked == 0 || b[1]&0x7f > 125 {
		return false // gorilla reads it, and says what is wrong
	}
	n := 2 + 4 + int(b[1]&0x7f) // header, mask key, payload
	if _, err := c.br.Peek(n); err != nil {
		return false
	}
	_, _ = c.br.Discard(n)
	c.alive()
	return true
}

// alive notes input: the peer is dropped when it sends nothing (not even
// the answer to a keep-alive) for two intervals and a second of grace.
func (c *wsConn) alive() {
	now := time.Now()
	c.lastInput.Store(now.UnixNano())
	_ = c.conn.SetReadDeadline(now.Add(2*c.s.cfg.WebSocketKeepAlive + time.Second))
}

// park arms the poller and reports true when the socket has no input
// buffered and is not closing (a closing socket drains its input on
// read's goroutine, until the close handshake's deadline).
func (c *wsConn) park() bool {
	if c.poller == nil || c.br.Buffered() > 0 {
		return false
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.isClosing() { // checked under pmu: wake comes after closing is set
		return false
	}
	var err error
	if cerr := c.raw.Control(func(fd uintptr) { err = c.poller.arm(int(fd), c.pollID, !c.armed) }); cerr != nil {
		return false // closed: the read says so
	}
	if err != nil {
		return false // read waits instead
	}
	c.armed, c.parked = true, true
	return true
}

// wake runs read for a parked socket: on input (the poller's call), or so
// that it sees its connection closed or its read deadline passed.
func (c *wsConn) wake() {
	c.pmu.Lock()
	parked := c.parked
	c.parked = false
	c.pmu.Unlock()
	if parked {
		go c.read()
	}
}

// readable waits until the socket has input (or its read deadline
// passes, or it closes): at once when the read buffer holds some.
func (c *wsConn) readable() error {
	if c.raw == nil || c.br.Buffered() > 0 {
		return nil
	}
	var peek [1]byte
	err := c.raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN && err != syscall.EINTR // data, EOF or an error: the read says which
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return nil // other errors: the read reports them
}

func (c *wsConn) isClosing() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.closing
}

// message acts on one client message; false ends the socket.
func (c *wsConn) message(b []byte) bool {
	var m message
	if json.Unmarshal(b, &m) != nil || m.Type == "" {
		c.close(closeBadMessage, "Invalid message received")
		return false
	}
	if code, reason := c.st.incoming(m.Type); code != 0 {
		c.close(code, reason)
		return false
	}
	return c.handle(&m)
}

// closeBadMessage is graphql-transport-ws's code for a message it cannot
// parse or does not expect.
const closeBadMessage = 4400

func (c *wsConn) readFailed(err error) {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		c.st.closed(ce.Code) // gorilla answered with the same code
	case errors.Is(err, websocket.ErrReadLimit):
		c.st.closed(websocket.CloseMessageTooBig) // gorilla sent it
	default:
		c.s.websocketError(c.ctx, err)
	}
}

// handle acts on one message; false ends the socket.
func (c *wsConn) handle(m *message) bool {
	switch m.Type {
	case "connection_init":
		return c.init(m.Payload)
	case "subscribe", "start":
		return c.start(m)
	case "complete", "stop":
		if op := c.op(m.ID); op != nil {
			op.cancel(nil)
		}
	case "ping":
		c.send(frame("pong", "", nil))
	case "pong":
	case "connection_terminate":
		c.close(websocket.CloseNormalClosure, "terminated")
		return false
	default:
		c.close(closeBadMessage, "Invalid message received: unexpected type "+truncate(m.Type, 40))
		return false
	}
	return true
}

// init authenticates the socket (websocketInit) and acknowledges.
func (c *wsConn) init(payload json.RawMessage) bool {
	var p transport.InitPayload
	if len(payload) > 0 && json.Unmarshal(payload, &p) != nil {
		c.close(closeBadMessage, "Invalid message received: connection_init payload is not an object")
		return false
	}
	ctx, _, err := c.s.websocketInit(c.ctx, p)
	if err != nil {
		refused := &initRefused{code: closeForbidden, reason: "Forbidden", message: err.Error()}
		errors.As(err, &refused)
		if c.legacy {
			b, _ := json.Marshal(&gqlerror.Error{Message: refused.message})
			c.send(frame("connection_error", "", b))
		}
		c.close(refused.code, refused.reason)
		return false
	}
	c.initCtx = ctx // the socket's, with the user: access ending closes the socket
	c.st.ack()
	c.send(frame("connection_ack", "", nil))
	if c.legacy {
		c.send(frame("ka", "", nil))
	}
	c.rearm()
	return true
}

// tick is the socket's one timer: connection_init's deadline, then the
// keep-alive, and the access token's expiry.
func (c *wsConn) tick() {
	if !c.st.isAcked() {
		c.close(closeInitTimeout, "Connection initialisation timeout")
		return
	}
	if userID, expires := c.st.identity(); !expires.IsZero() && !time.Now().Before(expires) {
		c.s.endAccess(c.initCtx, c.st, userID, "Forbidden: access token expired; reconnect with a fresh one")
		return
	}
	c.ping()
}

// rearm sets the timer for the next keep-alive, or the token's expiry
// when that comes first.
func (c *wsConn) rearm() {
	d := c.s.cfg.WebSocketKeepAlive
	if _, expires := c.st.identity(); !expires.IsZero() {
		d = min(d, time.Until(expires))
	}
	c.timer.Reset(d)
}

// ping keeps the socket alive: a protocol ping (graphql-transport-ws,
// answered by pong) or ka and a WebSocket ping (graphql-ws, whose clients
// answer the latter by themselves). The read deadline drops a peer that
// answers nothing for two intervals.
func (c *wsConn) ping() {
	if c.ctx.Err() != nil {
		return
	}
	if time.Since(time.Unix(0, c.lastInput.Load())) > c.s.cfg.WebSocketKeepAlive*3/2 {
		c.wake() // no answer to the last ping: wait for one until the read deadline
	}
	if c.legacy {
		c.send(frame("ka", "", nil))
		_ = c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteTimeout))
	} else {
		c.send(frame("ping", "", nil))
	}
	c.rearm()
}

// frame encodes a protocol message; payload is raw JSON or nil.
func frame(typ, id string, payload []byte) []byte {
	b := make([]byte, 0, 32+len(id)+len(payload))
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, '"')
	if id != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, id)
	}
	if payload != nil {
		b = append(b, `,"payload":`...)
		b = append(b, payload...)
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// send queues a frame for the writer. It reports false when the socket is
// closing or the client is too slow (the socket is then closed).
func (c *wsConn) send(f []byte) bool {
	c.wmu.Lock()
	if c.closing {
		c.wmu.Unlock()
		return false
	}
	if len(c.out) >= wsMaxQueuedFrames || c.outBytes+len(f) > wsMaxQueuedBytes {
		c.wmu.Unlock()
		c.s.metrics.slowSockets.Inc()
		c.close(closeTooSlow, "Too slow: messages were not read in time; reconnect and resume")
		return false
	}
	c.out = append(c.out, f)
	c.outBytes += len(f)
	start := !c.writing
	c.writing = true
	c.wmu.Unlock()
	if start {
		go c.write()
	}
	return true
}

// write drains the queue and ends: an idle socket has no writer. Once the
// socket is closing it writes what was queued before (a connection_error,
// say), then the close frame, and closes the connection.
func (c *wsConn) write() {
	for {
		c.wmu.Lock()
		batch, closing := c.out, c.closing
		c.out, c.outBytes = nil, 0
		if len(batch) == 0 && !closing {
			c.writing = false
			c.wmu.Unlock()
			return
		}
		c.wmu.Unlock()
		deadline := time.Now().Add(wsWriteTimeout)
		if closing {
			deadline = time.Now().Add(time.Second)
		}
		c.batch.start()
		_ = c.conn.SetWriteDeadline(deadline) // one for the batch: each costs a timer update
		var err error
		for _, f := range batch {
			if err = c.conn.WriteMessage(websocket.TextMessage, f); err != nil {
				break
			}
		}
		if ferr := c.batch.flush(); err == nil {
			err = ferr
		}
		if err != nil {
			c.s.websocketError(c.ctx, err)
			_ = c.conn.Close() // the reader ends, and with it the socket
			c.close(websocket.CloseAbnormalClosure, "")
			c.wake()
			return
		}
		if len(batch) == 0 { // closing, and all written
			if code := c.closeCode; code != websocket.CloseAbnormalClosure { // 1006 is never sent
				// A close frame's payload is at most 125 bytes, 2 of them the code.
				msg := websocket.FormatCloseMessage(code, truncate(c.closeReason, 123))
				_ = c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
				// The reader drains until the client's answer, a second at most.
				_ = c.conn.SetReadDeadline(time.Now().Add(time.Second))
				c.wake()
				return
			}
			_ = c.conn.Close()
			c.wake()
			return
		}
	}
}

// close ends the socket: its operations end at once, the writer sends
// what was queued, then a close frame (with the forced code when the
// server ended the socket's access), and closes the connection, which
// ends the reader.
func (c *wsConn) close(code int, reason string) {
	c.closeOnce.Do(func() {
		if fc, fm := c.st.forcedClose(); fc != 0 {
			code, reason = fc, fm
		}
		if code != websocket.CloseAbnormalClosure {
			c.st.closed(code)
		}
		c.cancel()
		c.mu.Lock()
		c.opsEnded = true // start adds no more
		c.mu.Unlock()
		go c.endOps() // not here: a caller may hold an operation's lock
		c.wmu.Lock()
		c.closing = true
		c.closeCode, c.closeReason = code, reason
		if code == closeTooSlow || code == websocket.CloseAbnormalClosure {
			c.out, c.outBytes = nil, 0
		}
		start := !c.writing
		c.writing = true
		c.wmu.Unlock()
		if start {
			go c.write()
		}
	})
}

// finish runs when the reader ends: it ends every operation and accounts
// for the socket.
func (c *wsConn) finish() {
	c.close(websocket.CloseAbnormalClosure, "")
	_ = c.conn.Close()
	c.timer.Stop()
	if c.poller != nil {
		c.poller.remove(c.pollID)
	}
	c.endOps() // close's may still be running: all end before the account
	c.st.finish()
}

// endOps ends the socket's operations (their hooks run), as the socket
// closes.
func (c *wsConn) endOps() {
	c.mu.Lock()
	ops := slices.Clone(c.ops)
	c.mu.Unlock()
	for _, op := range ops {
		op.finish()
	}
}

// finished is wsState's account of a socket this transport served.
func (c *wsConn) finished(start time.Time, code int) {
	if code == 0 {
		code = websocket.CloseAbnormalClosure // no close frame either way
	}
	c.s.metrics.wsActive.Dec()
	c.s.logger(c.ctx).Info("websocket disconnected",
		"duration", time.Since(start).Round(time.Millisecond), "close_code", code)
}

// start runs an operation on a goroutine of its own, so that the reader
// stays shallow (its stack is per socket): queries and mutations until
// they answer; subscriptions until the resolver has set up, when it
// delivers through push (wsOp), or else for as long as they last.
func (c *wsConn) start(m *message) bool {
	op := &wsOp{c: c, id: m.ID}
	c.mu.Lock()
	if c.opsEnded {
		c.mu.Unlock()
		return false
	}
	if c.opLocked(m.ID) != nil {
		c.mu.Unlock()
		c.close(closeDuplicateID, "Subscriber for "+truncate(m.ID, 80)+" already exists")
		return false
	}
	c.ops = append(c.ops, op)
	c.mu.Unlock()
	// Not a child of the socket's context, which would keep a map of
	// its children for the socket's life: close ends every operation
	// (endOps), and with it its context.
	op.base, op.cancel = context.WithCancelCause(context.WithoutCancel(c.initCtx))
	op.ctx = op.base
	go op.prepare(graphql.Now(), m.Payload)
	return true
}

// op returns the running operation id, or nil.
func (c *wsConn) op(id string) *wsOp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opLocked(id)
}

func (c *wsConn) opLocked(id string) *wsOp {
	for _, op := range c.ops {
		if op.id == id {
			return op
		}
	}
	return nil
}

// prepare parses and validates the operation, then runs it. A
// subscription of the same document, operation and variables as one
// running already takes that one's OperationContext instead: it would be
// the same (the server's operation context mutators read only those and
// the transport), and each costs a few KiB for its subscription's life.
func (op *wsOp) prepare(start time.Time, payload json.RawMessage) {
	c := op.c
	var params graphql.RawParams
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber() // as gqlgen's transports do: Int variables stay exact
	if err := dec.Decode(&params); err != nil {
		op.Fail(&gqlerror.Error{Message: "invalid json"})
		op.finish()
		return
	}
	params.Query = c.s.queries.intern(params.Query) // a subscription holds it for its life
	key, share := shapeOf(&params)
	rc := c.s.wsGroups.shared(key, share)
	if rc == nil {
		params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
		ctx := graphql.StartOperationTrace(op.ctx)
		var errs gqlerror.List
		if rc, errs = c.exec.CreateOperationContext(ctx, &params); errs != nil {
			resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
			if errcode.GetErrorKind(errs) == errcode.KindProtocol {
				op.mu.Lock()
				op.errs = resp.Errors
				op.mu.Unlock()
			} else {
				c.sendNext(op.id, resp)
			}
			op.finish()
			return
		}
		op.ctx = ctx
	}
	if rc.Operation != nil && rc.Operation.Operation == ast.Subscription {
		g := c.s.wsGroups.join(codecrafter.UserIDFromContext(op.ctx), key, share, rc)
		rc = g.id.shape.rc // another's, when one of the same shape joined first
		op.mu.Lock()
		ended := op.ended // the socket closed meanwhile
		if !ended {
			op.group = g
		}
		op.mu.Unlock()
		if ended {
			c.s.wsGroups.leave(g)
			return
		}
		op.ctx = push.With(graphql.WithOperationContext(op.ctx, rc), op)
	} else {
		op.ctx = graphql.WithOperationContext(op.ctx, rc)
	}
	op.run(rc)
}

// shapeOf keys an operation by what its OperationContext is made of;
// share is false when it has more than that (extensions).
func shapeOf(p *graphql.RawParams) (key shapeKey, share bool) {
	vars, err := json.Marshal(p.Variables) // maps marshal with sorted keys
	// The query text is interned: a key holds no copy of it.
	return shapeKey{p.OperationName, p.Query, string(vars)}, err == nil && len(p.Extensions) == 0 && p.Headers == nil
}

// sendNext sends one response of operation id.
func (c *wsConn) sendNext(id string, resp *graphql.Response) bool {
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(&graphql.Response{Errors: gqlerror.List{{Message: "internal error: unencodable response"}}})
	}
	return c.sendPayload(id, b)
}

func (c *wsConn) sendPayload(id string, payload []byte) bool {
	typ := "next"
	if c.legacy {
		typ = "data"
	}
	return c.send(frame(typ, id, payload))
}

func (c *wsConn) sendErrors(id string, errs gqlerror.List) {
	b, err := json.Marshal(errs)
	if err != nil {
		b = []byte(`[{"message":"internal error"}]`)
	}
	c.send(frame("error", id, b))
}

func (c *wsConn) sendComplete(id string) { c.send(frame("complete", id, nil)) }

// wsOp is one running operation. Subscriptions whose resolver adopts it
// as their push.Sink get their events by Deliver, on the event source's
// goroutine.
type wsOp struct {
	c      *wsConn
	id     string
	base   context.Context // the operation's own, ended by cancel
	ctx    context.Context // base, with what gqlgen adds
	cancel context.CancelCauseFunc
	group  *wsGroup // nil: not a subscription

	mu        sync.Mutex
	responses graphql.ResponseHandler // set once the resolver has returned
	pending   []pendingEvent          // delivered before that
	adopted   bool
	endAsked  bool
	ended     bool
	errs      gqlerror.List

	hooks []*endHook // run by finish
}

type pendingEvent struct {
	key   any
	queue func()
}

// Events a subscription may receive while its resolver is still setting
// up (a replay, say); beyond, it is ended as too slow.
const wsMaxPending = 4096

var _ push.Sink = (*wsOp)(nil)

func (op *wsOp) Adopt() {
	op.mu.Lock()
	op.adopted = true
	op.mu.Unlock()
}

func (op *wsOp) Fail(err *gqlerror.Error) {
	op.mu.Lock()
	op.errs = append(op.errs, err)
	op.mu.Unlock()
}

func (op *wsOp) Deliver(key any, queue func()) bool {
	op.mu.Lock()
	defer op.mu.Unlock()
	switch {
	case op.ended || op.endAsked:
		return false
	case op.responses == nil:
		if len(op.pending) >= wsMaxPending {
			return false
		}
		op.pending = append(op.pending, pendingEvent{key, queue})
		return true
	}
	return op.deliver(key, queue)
}

// deliver encodes one event (or takes its encoding from an identical
// subscription) and queues it; op.mu is held.
func (op *wsOp) deliver(key any, queue func()) bool {
	if op.ctx.Err() != nil {
		return false
	}
	if payload := op.group.cached(key); payload != nil {
		return op.c.sendPayload(op.id, payload)
	}
	queue()
	resp := op.responses(op.ctx)
	if resp == nil {
		return false
	}
	payload, err := json.Marshal(resp)
	if err != nil {
		return op.c.sendNext(op.id, &graphql.Response{Errors: gqlerror.List{{Message: "internal error: unencodable response"}}})
	}
	if len(resp.Errors) == 0 && len(resp.Extensions) == 0 {
		op.group.store(key, payload) // errors name the request: never shared
	}
	return op.c.sendPayload(op.id, payload)
}

func (op *wsOp) End() {
	op.mu.Lock()
	armed := op.responses != nil
	op.endAsked = true
	op.mu.Unlock()
	if armed {
		op.finish()
	} // else run finishes it once the resolver has returned
}

// run executes the operation.
func (op *wsOp) run(rc *graphql.OperationContext) {
	defer func() {
		if r := recover(); r != nil {
			err := rc.Recover(op.ctx, r)
			var gqlErr *gqlerror.Error
			if !errors.As(err, &gqlErr) {
				gqlErr = &gqlerror.Error{Message: fmt.Sprint(err)}
			}
			op.Fail(gqlErr)
			op.finish()
		}
	}()
	responses, ctx := op.c.exec.DispatchOperation(op.ctx, rc)
	if op.group == nil { // a query or mutation: one response
		if resp := responses(ctx); resp != nil {
			op.c.sendNext(op.id, resp)
		}
		op.finish()
		return
	}
	op.mu.Lock()
	op.responses = responses
	op.ctx = ctx
	ok := true
	for _, p := range op.pending {
		if ok = op.deliver(p.key, p.queue); !ok {
			break
		}
	}
	op.pending = nil
	adopted, endAsked := op.adopted, op.endAsked
	op.mu.Unlock()
	switch {
	case !ok || endAsked:
		op.finish()
	case !adopted: // a resolver of channels: read them here
		for {
			resp := responses(ctx)
			if resp == nil {
				break
			}
			op.c.sendNext(op.id, resp)
		}
		op.finish()
	}
}

// finish ends the operation once: errors recorded by Fail, else complete
// (unless the socket is closing), and its context.
func (op *wsOp) finish() {
	op.mu.Lock()
	if op.ended {
		op.mu.Unlock()
		return
	}
	op.ended = true
	errs := op.errs
	var hooks []func()
	for _, h := range op.hooks {
		if !h.stopped {
			h.ran = true
			hooks = append(hooks, h.f)
		}
	}
	group := op.group
	op.pending, op.hooks = nil, nil
	op.mu.Unlock()
	c := op.c
	c.mu.Lock()
	if i := slices.Index(c.ops, op); i >= 0 { // before the client hears of it: it may reuse the id at once
		c.ops = slices.Delete(c.ops, i, i+1)
	}
	c.mu.Unlock()
	if c.ctx.Err() == nil {
		if len(errs) > 0 {
			c.sendErrors(op.id, errs)
		} else {
			c.sendComplete(op.id)
		}
	}
	op.cancel(nil)
	for _, f := range hooks {
		f()
	}
	if group != nil {
		c.s.wsGroups.leave(group)
	}
}

var _ push.Ends = (*wsOp)(nil)

func (op *wsOp) Done() <-chan struct{} { return op.base.Done() }

func (op *wsOp) OnEnd(f func()) (func() bool, bool) {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.ended {
		return nil, false
	}
	h := &endHook{f: f}
	op.hooks = append(op.hooks, h)
	return func() bool {
		op.mu.Lock()
		defer op.mu.Unlock()
		if h.ran || h.stopped {
			return false
		}
		h.stopped = true
		return true
	}, true
}

// Cancel runs on the caller's goroutine, which may hold locks that finish
// (through the hooks) takes: finish runs on a goroutine of its own, as
// context.AfterFunc's funcs do.
func (op *wsOp) Cancel(cause error) {
	op.cancel(cause)
	go op.finish()
}

type endHook struct {
	f            func()
	ran, stopped bool // guarded by wsOp.mu
}

// interned keeps one copy of each query text that operations hold: the
// many subscriptions of a client send the same few. Bounded in bytes:
// beyond, texts are not kept.
type interned struct {
	mu    sync.Mutex
	texts map[string]string
	bytes int
}

const maxInternedBytes = 1 << 20

func (in *interned) intern(s string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if t, ok := in.texts[s]; ok {
		return t
	}
	if in.bytes+len(s) > maxInternedBytes {
		return s
	}
	if in.texts == nil {
		in.texts = map[string]string{}
	}
	in.texts[s] = s
	in.bytes += len(s)
	return s
}

// wsGroups holds what identical subscriptions share: those of one shape
// (document, operation and variables) their OperationContext, and those
// of one shape and user, so the same response, their encodings.
type wsGroups struct {
	mu     sync.Mutex
	shapes map[shapeKey]*wsShape
	groups map[groupKey]*wsGroup
}

type shapeKey struct{ operation, query, variables string }

type wsShape struct {
	key    shapeKey
	shared bool // in wsGroups.shapes
	rc     *graphql.OperationContext
	refs   int // guarded by wsGroups.mu
}

type groupKey struct {
	user  string
	shape *wsShape
}

type wsGroup struct {
	id   groupKey // its shape is id.shape
	refs int      // guarded by wsGroups.mu

	mu      sync.Mutex
	key     any // the last event encoded
	payload []byte
}

// shared returns the OperationContext of a running subscription of this
// shape, or nil.
func (gs *wsGroups) shared(k shapeKey, share bool) *graphql.OperationContext {
	if !share {
		return nil
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if s := gs.shapes[k]; s != nil {
		return s.rc
	}
	return nil
}

// join adds a subscription of shape k, whose OperationContext is rc
// unless one of the same shape is running already, to its user's group.
func (gs *wsGroups) join(user string, k shapeKey, share bool, rc *graphql.OperationContext) *wsGroup {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	var s *wsShape
	if share {
		if s = gs.shapes[k]; s == nil {
			s = &wsShape{key: k, shared: true, rc: rc}
			if gs.shapes == nil {
				gs.shapes = map[shapeKey]*wsShape{}
			}
			gs.shapes[k] = s
		}
	} else {
		s = &wsShape{key: k, rc: rc}
	}
	s.refs++
	id := groupKey{user, s}
	g := gs.groups[id]
	if g == nil {
		g = &wsGroup{id: id}
		if gs.groups == nil {
			gs.groups = map[groupKey]*wsGroup{}
		}
		gs.groups[id] = g
	}
	g.refs++
	return g
}

func (gs *wsGroups) leave(g *wsGroup) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if g.refs--; g.refs == 0 {
		delete(gs.groups, g.id)
	}
	s := g.id.shape
	if s.refs--; s.refs == 0 && s.shared {
		delete(gs.shapes, s.key)
	}
}

func (g *wsGroup) cached(key any) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.payload != nil && g.key == key {
		return g.payload
	}
	return nil
}

func (g *wsGroup) store(key any, payload []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.key, g.payload = key, bytes.Clone(payload)
}

// hijackWriter hands gorilla the hijacked connection as a batchConn, and
// a read buffer of ours (gorilla reads through it: Upgrader.ReadBufferSize
// 0 takes the hijacked one when it holds more than 256 bytes).
type hijackWriter struct {
	http.ResponseWriter
	conn *batchConn
	br   *bufio.Reader
}

// wsReadBuffer is a socket's read buffer: client messages are small (a
// longer one is read through it in pieces).
const wsReadBuffer = 320 // gorilla takes it when over 256

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("websocket: the response cannot be hijacked")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &batchConn{Conn: c}
	if brw.Reader.Buffered() > 0 { // gorilla refuses input before the handshake's end
		h.br = brw.Reader
		return h.conn, brw, nil
	}
	h.br = bufio.NewReaderSize(h.conn, wsReadBuffer)
	return h.conn, bufio.NewReadWriter(h.br, brw.Writer), nil
}

// batchConn lets the writer send the frames it has queued in one write
// (a syscall costs more than framing): between start and flush, what
// gorilla writes (data frames, and control frames from other goroutines,
// in the order gorilla serialises them) goes to a pooled buffer. Outside
// a batch writes go straight through, and an idle socket holds no buffer.
type batchConn struct {
	net.Conn
	mu  sync.Mutex
	buf *bufio.Writer
}

var batchBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf != nil {
		return b.buf.Write(p)
	}
	return b.Conn.Write(p)
}

func (b *batchConn) start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = batchBuffers.Get().(*bufio.Writer)
	b.buf.Reset(b.Conn)
}

func (b *batchConn) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.buf.Flush()
	b.buf.Reset(nil)
	batchBuffers.Put(b.buf)
	b.buf = nil
	return err
}
