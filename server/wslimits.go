package server

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/push"
)

// WebSocketLimits bound what WebSockets may cost. Zero fields take the
// defaults below; a negative one disables that limit.
type WebSocketLimits struct {
	// PerUser caps the open sockets of one user, on this replica.
	PerUser int
	// Unauthenticated caps the sockets without a verified user (before
	// connection_init, or anonymous), in all and per client address.
	Unauthenticated        int
	UnauthenticatedPerAddr int
	// Operations caps the operations (subscriptions included) running at
	// once on one socket.
	Operations int
	// OperationTimeout bounds a query or mutation sent over a socket, like
	// Config.RequestTimeout for HTTP. Subscriptions run until the client
	// stops them or the socket's access token expires.
	OperationTimeout time.Duration
	// ConnectsPerMinute caps new sockets per client address per minute.
	ConnectsPerMinute int
	// MessagesPerSecond caps what a client sends on one socket, with
	// bursts of twice as many (or of its Operations and a few more, when
	// larger: a client may start all it is allowed at once); beyond, the
	// socket is closed (1008).
	MessagesPerSecond int
}

// Defaults of WebSocketLimits.
const (
	DefaultWebSocketsPerUser            = 32
	DefaultUnauthenticatedWebSockets    = 2000
	DefaultUnauthenticatedWebSocketsIP  = 64
	DefaultWebSocketOperations          = 100
	DefaultWebSocketOperationTimeout    = 30 * time.Second
	DefaultWebSocketConnectsPerMinute   = 600
	DefaultWebSocketMessagesPerSecond   = 50
	closeTooMany                        = 4429 // graphql-ws: the client gives up (no retry loop against a cap)
	closeAccessEnded                    = closeForbidden
	websocketConnectWindow              = time.Minute
	websocketConnectWindowSweepAtLength = 10000
)

func (l *WebSocketLimits) setDefaults() {
	setDefault(&l.PerUser, DefaultWebSocketsPerUser)
	setDefault(&l.Unauthenticated, DefaultUnauthenticatedWebSockets)
	setDefault(&l.UnauthenticatedPerAddr, DefaultUnauthenticatedWebSocketsIP)
	setDefault(&l.Operations, DefaultWebSocketOperations)
	setDefault(&l.OperationTimeout, DefaultWebSocketOperationTimeout)
	setDefault(&l.ConnectsPerMinute, DefaultWebSocketConnectsPerMinute)
	setDefault(&l.MessagesPerSecond, DefaultWebSocketMessagesPerSecond)
}

// messageBudget is a token bucket of a socket's incoming messages.
type messageBudget struct {
	perSecond float64
	burst     float64
	tokens    float64
	last      time.Time
}

func newMessageBudget(lim WebSocketLimits, now time.Time) messageBudget {
	burst := float64(max(2*lim.MessagesPerSecond, lim.Operations+16))
	return messageBudget{perSecond: float64(lim.MessagesPerSecond), burst: burst, tokens: burst, last: now}
}

// take spends one message; false when the client sends faster than the
// budget allows (a non-positive rate never refuses).
func (b *messageBudget) take(now time.Time) bool {
	if b.perSecond <= 0 {
		return true
	}
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.perSecond)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sockets counts this replica's sockets against WebSocketLimits.
type sockets struct {
	lim WebSocketLimits

	mu           sync.Mutex
	tracked      map[*wsState]struct{} // every socket, for Shutdown
	perUser      map[string]int
	unauth       int
	unauthByAddr map[string]int
	connects     map[string]*connectWindow
}

type connectWindow struct {
	start time.Time
	n     int
}

func newSockets(lim WebSocketLimits) *sockets {
	return &sockets{lim: lim, perUser: map[string]int{}, unauthByAddr: map[string]int{}, connects: map[string]*connectWindow{}}
}

// open admits a new, not yet authenticated socket from addr, or says why not.
func (ss *sockets) open(addr string, now time.Time) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if lim := ss.lim.ConnectsPerMinute; lim > 0 {
		if len(ss.connects) > websocketConnectWindowSweepAtLength {
			for a, w := range ss.connects {
				if now.Sub(w.start) >= websocketConnectWindow {
					delete(ss.connects, a)
				}
			}
		}
		w := ss.connects[addr]
		if w == nil || now.Sub(w.start) >= websocketConnectWindow {
			w = &connectWindow{start: now}
			ss.connects[addr] = w
		}
		if w.n >= lim {
			e := codecrafter.Errorf(codecrafter.ERATELIMITED, "too many WebSocket connections from your address; retry later")
			e.RetryAfter = websocketConnectWindow - now.Sub(w.start)
			return e
		}
		w.n++
	}
	if (ss.lim.Unauthenticated > 0 && ss.unauth >= ss.lim.Unauthenticated) ||
		(ss.lim.UnauthenticatedPerAddr > 0 && ss.unauthByAddr[addr] >= ss.lim.UnauthenticatedPerAddr) {
		e := codecrafter.Errorf(codecrafter.ERATELIMITED, "too many WebSockets waiting for connection_init; retry later")
		e.RetryAfter = time.Second
		return e
	}
	ss.unauth++
	ss.unauthByAddr[addr]++
	return nil
}

// authenticated moves a socket of addr from the unauthenticated count to
// userID's, if userID has room.
func (ss *sockets) authenticated(addr, userID string) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.lim.PerUser > 0 && ss.perUser[userID] >= ss.lim.PerUser {
		return codecrafter.Errorf(codecrafter.ERATELIMITED, "too many open connections for this user (at most %d); close some tabs", ss.lim.PerUser)
	}
	ss.perUser[userID]++
	ss.dropUnauth(addr)
	return nil
}

// track notes a socket until untrack, for live. A set here rather than
// a registration on the server's context: that costs far more a socket.
func (ss *sockets) track(st *wsState) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.tracked == nil {
		ss.tracked = map[*wsState]struct{}{}
	}
	ss.tracked[st] = struct{}{}
}

func (ss *sockets) untrack(st *wsState) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.tracked, st)
}

// live returns the sockets tracked now.
func (ss *sockets) live() []*wsState {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make([]*wsState, 0, len(ss.tracked))
	for st := range ss.tracked {
		out = append(out, st)
	}
	return out
}

// closed forgets a socket: userID's when it authenticated, else addr's.
func (ss *sockets) closed(addr, userID string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if userID == "" {
		ss.dropUnauth(addr)
		return
	}
	if ss.perUser[userID]--; ss.perUser[userID] <= 0 {
		delete(ss.perUser, userID)
	}
}

func (ss *sockets) dropUnauth(addr string) {
	ss.unauth--
	if ss.unauthByAddr[addr]--; ss.unauthByAddr[addr] <= 0 {
		delete(ss.unauthByAddr, addr)
	}
}

// refuseWebsocket answers an upgrade the limits refuse, before upgrading.
func refuseWebsocket(w http.ResponseWriter, r *http.Request, err error) {
	if e, ok := err.(*codecrafter.Error); ok && e.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(e.RetryAfter.Seconds())+1))
	}
	writeError(w, r, http.StatusTooManyRequests, codecrafter.ErrorCode(err), codecrafter.ErrorMessage(err))
}

// websocketOperations caps the operations running at once on a socket and
// bounds queries and mutations sent over it in time.
type websocketOperations struct{ s *Server }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = websocketOperations{}

func (websocketOperations) ExtensionName() string                   { return "WebSocketOperations" }
func (websocketOperations) Validate(graphql.ExecutableSchema) error { return nil }
func (o websocketOperations) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	st := wsStateFrom(ctx)
	if st == nil {
		return next(ctx)
	}
	lim := o.s.cfg.WebSocket
	if !st.startOperation(lim.Operations) {
		err := o.s.presentError(ctx, codecrafter.Errorf(codecrafter.ERATELIMITED,
			"too many operations on this connection (at most %d at once); stop some first", lim.Operations))
		return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{err}})
	}
	push.OnEnd(ctx, st.endOperation)
	if op := graphql.GetOperationContext(ctx).Operation; lim.OperationTimeout > 0 && op != nil && op.Operation != ast.Subscription {
		tctx, cancel := context.WithTimeout(ctx, lim.OperationTimeout)
		context.AfterFunc(ctx, cancel)
		responses := next(tctx)
		return func(context.Context) *graphql.Response { return responses(tctx) }
	}
	return next(ctx)
}
