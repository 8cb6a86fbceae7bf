package auth_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/auth"
	"github.com/codecrafter/codecrafter/inmem"
	"github.com/codecrafter/codecrafter/mongo"
	"github.com/codecrafter/codecrafter/mongo/mongotest"
)

var storeURI string

func TestMain(m *testing.M) { os.Exit(mongotest.Main(m, &storeURI)) }

// clock is a settable clock for the service.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type env struct {
	svc   *auth.Service
	db    *mongo.DB
	bus   *inmem.Bus
	clock *clock
	cfg   auth.Config
	lims  auth.Limiters
}

// setup returns a service on a fresh database with in-process limiters
// (5 failed logins per account, 30 per address, 3 registrations per
// address) and bus, cheap hashing and a settable clock; change changes
// the config and limiters first.
func setup(t *testing.T, change ...func(*auth.Config, *auth.Limiters)) *env {
	t.Helper()
	e := &env{db: mongotest.Open(t, storeURI), bus: inmem.NewBus(), clock: &clock{}}
	e.clock.ns.Store(time.Now().Truncate(time.Second).UnixNano())
	e.cfg = auth.DefaultConfig([]byte(codecrafter.RandomToken(32)))
	e.cfg.Argon2 = auth.Argon2Params{MemoryKiB: 1024, Iterations: 1, Parallelism: 1}
	e.cfg.Bus = e.bus
	e.lims = auth.Limiters{
		Account:  inmem.NewLimiter(5, time.Hour),
		Addr:     inmem.NewLimiter(30, time.Hour),
		Register: inmem.NewLimiter(3, time.Hour),
	}
	for _, c := range change {
		c(&e.cfg, &e.lims)
	}
	e.svc = e.newService(t)
	return e
}

// newService returns another service on the same store, bus and
// limiters, as another replica would be.
func (e *env) newService(t *testing.T) *auth.Service {
	t.Helper()
	svc, err := auth.New(e.cfg, e.db, e.db, e.lims, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	svc.SetClock(e.clock.Now)
	return svc
}

func from(addr string) context.Context {
	return codecrafter.WithClientAddr(context.Background(), addr)
}

const password = "correct horse battery"

var seq atomic.Int64

func (e *env) register(t *testing.T) (*auth.Payload, string) {
	t.Helper()
	email := fmt.Sprintf("user%d@example.com", seq.Add(1))
	p, err := e.svc.Register(from(codecrafter.NewID()), email, password, "U")
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return p, email
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if codecrafter.ErrorCode(err) != code {
		t.Fatalf("err = %v, want %s", err, code)
	}
}

func rateLimited(t *testing.T, err error) {
	t.Helper()
	wantCode(t, err, codecrafter.ERATELIMITED)
	if e := err.(*codecrafter.Error); e.RetryAfter <= 0 {
		t.Errorf("RATE_LIMITED without a retry-after: %v", err)
	}
}

// TestConcurrentWrongPasswords is the measurement: 40 wrong
// passwords at once for one account with a limit of 5 must check the
// password exactly 5 times; the rest are refused unchecked.
func TestConcurrentWrongPasswords(t *testing.T) {
	t.Parallel()
	e := setup(t)
	_, email := e.register(t)
	var hashes atomic.Int64
	auth.OnHash(e.svc, func(int) { hashes.Add(1) })

	const n = 40
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = e.svc.Login(from("10.0.0.1"), email, "wrong password!") })
	}
	wg.Wait()
	codes := map[string]int{}
	for _, err := range errs {
		codes[codecrafter.ErrorCode(err)]++
		if codecrafter.IsCode(err, codecrafter.ERATELIMITED) {
			rateLimited(t, err)
		}
	}
	if codes[codecrafter.EUNAUTHENTICATED] != 5 || codes[codecrafter.ERATELIMITED] != n-5 {
		t.Errorf("codes = %v, want 5 UNAUTHENTICATED and %d RATE_LIMITED", codes, n-5)
	}
	if h := hashes.Load(); h != 5 {
		t.Errorf("%d passwords checked, want 5 (the limit)", h)
	}
	// Blocked now, even with the right password.
	_, err := e.svc.Login(from("10.0.0.2"), email, password)
	rateLimited(t, err)
}

// TestLoginSuccessCounts: a success resets the account's failures and
// does not count against the address.
func TestLoginSuccessCounts(t *testing.T) {
	t.Parallel()
	e := setup(t, func(_ *auth.Config, l *auth.Limiters) {
		l.Account, l.Addr = inmem.NewLimiter(3, time.Hour), inmem.NewLimiter(3, time.Hour)
	})
	_, email := e.register(t)
	ctx := from("10.0.0.1")
	for range 10 {
		if _, err := e.svc.Login(ctx, email, password); err != nil {
			t.Fatalf("successful logins from one address: %v", err)
		}
	}
	other := from("10.0.0.2")
	for range 2 {
		_, err := e.svc.Login(other, email, "wrong password!")
		wantCode(t, err, codecrafter.EUNAUTHENTICATED)
	}
	if _, err := e.svc.Login(from("10.0.0.3"), email, password); err != nil {
		t.Fatal(err)
	}
	// The account starts over: 3 more failures are checked (from a third
	// address, since the second has 2 already).
	third := from("10.0.0.4")
	for range 3 {
		_, err := e.svc.Login(third, email, "wrong password!")
		wantCode(t, err, codecrafter.EUNAUTHENTICATED)
	}
	_, err := e.svc.Login(third, email, password)
	rateLimited(t, err)
}

// TestHashesBounded: a burst of 50 logins runs at most MaxHashes
// password hashes at once; the others wait for a slot and then run.
func TestHashesBounded(t *testing.T) {
	t.Parallel()
	const n, slots = 50, 2
	e := setup(t, func(c *auth.Config, _ *auth.Limiters) { c.MaxHashes, c.MaxHashWaiters = slots, n })
	release := make(chan struct{})
	releaseAll := sync.OnceFunc(func() { close(release) })
	defer releaseAll() // also when failing, so no login is left blocked
	allWaiting := make(chan struct{})
	var maxRunning atomic.Int64
	auth.OnHash(e.svc, func(running int) {
		for m := maxRunning.Load(); int64(running) > m && !maxRunning.CompareAndSwap(m, int64(running)); m = maxRunning.Load() {
		}
		<-release
	})
	auth.OnHashWait(e.svc, func(waiting int) {
		if waiting == n-slots {
			close(allWaiting)
		}
	})

	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Unknown emails from distinct addresses: no limiter refuses.
			_, errs[i] = e.svc.Login(from(fmt.Sprint("10.1.0.", i)), fmt.Sprintf("nobody%d@example.com", i), "wrong password!")
		})
	}
	select {
	case <-allWaiting:
	case <-time.After(time.Minute):
		t.Fatalf("never %d requests waiting for a hash; %d hashes ran at once", n-slots, maxRunning.Load())
	}
	if m := maxRunning.Load(); m > slots {
		t.Errorf("%d hashes ran at once, want at most %d", m, slots)
	}
	releaseAll()
	wg.Wait()
	for _, err := range errs {
		wantCode(t, err, codecrafter.EUNAUTHENTICATED)
	}
}

// TestHashQueueFull: past the waiting room, or after waiting too long,
// a request is refused with RATE_LIMITED instead of queueing forever; a
// refused login does not count as a failure.
func TestHashQueueFull(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *auth.Config, l *auth.Limiters) {
		c.MaxHashes, c.MaxHashWaiters, c.MaxHashWait = 1, 1, time.Hour
		l.Account = inmem.NewLimiter(2, time.Hour)
	})
	_, email := e.register(t)
	started, release := make(chan struct{}), make(chan struct{})
	waiting := make(chan struct{})
	auth.OnHash(e.svc, func(running int) {
		select {
		case started <- struct{}{}:
			<-release
		default:
		}
	})
	auth.OnHashWait(e.svc, func(int) {
		select {
		case waiting <- struct{}{}:
		default:
		}
	})

	done := make(chan error, 2)
	go func() { _, err := e.svc.Login(from("a"), "x@example.com", "wrong password!"); done <- err }()
	<-started // the one slot is taken
	go func() { _, err := e.svc.Login(from("b"), "y@example.com", "wrong password!"); done <- err }()
	<-waiting // the one waiting place is taken
	_, err := e.svc.Login(from("c"), email, "wrong password!")
	rateLimited(t, err)
	_, err = e.svc.Register(from("c"), "new@example.com", password, "N")
	rateLimited(t, err)
	close(release)
	for range 2 {
		wantCode(t, <-done, codecrafter.EUNAUTHENTICATED)
	}
	// The refused attempt did not count: the account still has both its
	// failures to go.
	for range 2 {
		_, err := e.svc.Login(from("c"), email, "wrong password!")
		wantCode(t, err, codecrafter.EUNAUTHENTICATED)
	}
	_, err = e.svc.Login(from("c"), email, password)
	rateLimited(t, err)

	// A bounded wait: with the slot held, a waiter gives up.
	e2 := setup(t, func(c *auth.Config, _ *auth.Limiters) { c.MaxHashes, c.MaxHashWait = 1, 10*time.Millisecond })
	started2, release2 := make(chan struct{}), make(chan struct{})
	var once sync.Once
	auth.OnHash(e2.svc, func(int) { once.Do(func() { close(started2); <-release2 }) })
	go func() { _, err := e2.svc.Login(from("a"), "x@example.com", "wrong password!"); done <- err }()
	<-started2
	_, err = e2.svc.Login(from("b"), "y@example.com", "wrong password!")
	rateLimited(t, err)
	close(release2)
	wantCode(t, <-done, codecrafter.EUNAUTHENTICATED)
}

// TestRegisterLimit: registrations are limited per client address;
// refused input does not count.
func TestRegisterLimit(t *testing.T) {
	t.Parallel()
	e := setup(t)
	a := from("10.2.0.1")
	_, err := e.svc.Register(a, "short@example.com", "short", "S")
	wantCode(t, err, codecrafter.EINVALID)
	for i := range 3 {
		if _, err := e.svc.Register(a, fmt.Sprintf("reg%d@example.com", i), password, "R"); err != nil {
			t.Fatalf("registration %d: %v", i+1, err)
		}
	}
	_, err = e.svc.Register(a, "reg3@example.com", password, "R")
	rateLimited(t, err)
	if _, err := e.svc.Register(from("10.2.0.2"), "reg3@example.com", password, "R"); err != nil {
		t.Errorf("another address: %v", err)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	e := setup(t)
	p, email := e.register(t)
	c, err := e.svc.Verify(p.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != p.User.ID || c.FamilyID == "" || !c.ExpiresAt.Equal(e.clock.Now().Add(e.cfg.AccessTTL)) || !c.ExpiresAt.Equal(p.ExpiresAt) {
		t.Errorf("claims = %+v, want user %s, a family, expiry %v", c, p.User.ID, p.ExpiresAt)
	}
	if id, err := e.svc.Authenticate(p.AccessToken); err != nil || id != p.User.ID {
		t.Errorf("Authenticate = %q, %v", id, err)
	}

	r, err := e.svc.Refresh(context.Background(), p.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if rc, _ := e.svc.Verify(r.AccessToken); rc.FamilyID != c.FamilyID {
		t.Errorf("refreshed token's family %q, want the login's %q", rc.FamilyID, c.FamilyID)
	}
	l, err := e.svc.Login(from("x"), email, password)
	if err != nil {
		t.Fatal(err)
	}
	if lc, _ := e.svc.Verify(l.AccessToken); lc.FamilyID == "" || lc.FamilyID == c.FamilyID {
		t.Errorf("another login's family %q, want a new one (not %q)", lc.FamilyID, c.FamilyID)
	}
	_, err = e.svc.Verify("garbage")
	wantCode(t, err, codecrafter.EUNAUTHENTICATED)
}

// subscribe returns the FamilyIDs revoked from now on.
func (e *env) subscribe(t *testing.T) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	events, err := e.bus.Subscribe(ctx, codecrafter.AccessTopic)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 16)
	go func() {
		for b := range events {
			c, err := codecrafter.DecodeAccessChange(b)
			if err != nil {
				t.Errorf("bad event %q: %v", b, err)
			}
			out <- c.FamilyID
		}
	}()
	return out
}

func wantRevoked(t *testing.T, events <-chan string, family string) {
	t.Helper()
	select {
	case got := <-events:
		if got != family {
			t.Fatalf("revoked family %q, want %q", got, family)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no AccessChange for family %q", family)
	}
}

// TestLogoutRevokesTheLogin: logout publishes the family's revocation,
// and its access tokens stop working at once; other logins keep going.
func TestLogoutRevokesTheLogin(t *testing.T) {
	t.Parallel()
	e := setup(t)
	events := e.subscribe(t)
	p, email := e.register(t)
	other, err := e.svc.Login(from("x"), email, password)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := e.svc.Verify(p.AccessToken)
	if err := e.svc.Logout(context.Background(), p.RefreshToken); err != nil {
		t.Fatal(err)
	}
	wantRevoked(t, events, c.FamilyID)
	_, err = e.svc.Verify(p.AccessToken)
	wantCode(t, err, codecrafter.EUNAUTHENTICATED)
	_, err = e.svc.Refresh(context.Background(), p.RefreshToken)
	wantCode(t, err, codecrafter.EUNAUTHENTICATED)
	if _, err := e.svc.Verify(other.AccessToken); err != nil {
		t.Errorf("another login's token after logout: %v", err)
	}
	// Logging out again: nothing more to revoke, no event.
	if err := e.svc.Logout(context.Background(), p.RefreshToken); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-events:
		t.Errorf("second logout published %q", f)
	default:
	}
}

// TestRevocationsReachOtherReplicas: a replica watching the bus refuses
// the access tokens of a login another replica revoked.
func TestRevocationsReachOtherReplicas(t *testing.T) {
	t.Parallel()
	e := setup(t)
	replica := e.newService(t)
	seen := make(chan string, 1)
	auth.OnRevoked(replica, func(f string) { seen <- f })
	stop, err := replica.WatchRevocations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	p, _ := e.register(t)
	if _, err := replica.Verify(p.AccessToken); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Logout(context.Background(), p.RefreshToken); err != nil {
		t.Fatal(err)
	}
	select {
	case <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("the replica never heard of the logout")
	}
	_, err = replica.Verify(p.AccessToken)
	wantCode(t, err, codecrafter.EUNAUTHENTICATED)
}

// TestRevocationsSurviveRestart: a process started after a logout
// (which missed its event) still refuses that login's access tokens.
func TestRevocationsSurviveRestart(t *testing.T) {
	t.Parallel()
	e := setup(t)
	p, _ := e.register(t)
	if err := e.svc.Logout(context.Background(), p.RefreshToken); err != nil {
		t.Fatal(err)
	}
	restarted := e.newService(t)
	if _, err := restarted.Verify(p.AccessToken); err != nil {
		t.Fatalf("before loading the revocations: %v", err) // the gap WatchRevocations closes
	}
	stop, err := restarted.WatchRevocations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	_, err = restarted.Verify(p.AccessToken)
	wantCode(t, err, codecrafter.EUNAUTHENTICATED)
}

// TestRefreshReuseGrace: two tabs refreshing with one token at the same
// moment both get a pair of the same login; a replay after the grace
// revokes the login.
func TestRefreshReuseGrace(t *testing.T) {
	t.Parallel()
	e := setup(t)
	events := e.subscribe(t)
	p, _ := e.register(t)
	family := func(access string) string {
		t.Helper()
		c, err := e.svc.Verify(access)
		if err != nil {
			t.Fatal(err)
		}
		return c.FamilyID
	}
	f := family(p.AccessToken)

	// At the same moment.
	pairs := make([]*auth.Payload, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { pairs[i], errs[i] = e.svc.Refresh(context.Background(), p.RefreshToken) })
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("concurrent refresh %d: %v", i, errs[i])
		}
		if family(pairs[i].AccessToken) != f {
			t.Errorf("concurrent refresh %d: another family", i)
		}
	}
	if pairs[0].RefreshToken == pairs[1].RefreshToken {
		t.Error("both got the same refresh token")
	}

	// Within the grace of the first use, still forgiven.
	e.clock.Advance(e.cfg.ReuseGrace)
	if _, err := e.svc.Refresh(context.Background(), p.RefreshToken); err != nil {
		t.Fatalf("reuse at the end of the grace: %v", err)
	}
	// After it, a replay: the whole login is revoked.
	e.clock.Advance(time.Second)
	_, err := e.svc.Refresh(context.Background(), p.RefreshToken)
	wantCode(t, err, codecrafter.EUNAUTHENTICATED)
	wantRevoked(t, events, f)
	for i := range 2 {
		_, err := e.svc.Refresh(context.Background(), pairs[i].RefreshToken)
		wantCode(t, err, codecrafter.EUNAUTHENTICATED)
		_, err = e.svc.Verify(pairs[i].AccessToken)
		wantCode(t, err, codecrafter.EUNAUTHENTICATED)
	}

	// With no grace, the first reuse revokes.
	e0 := setup(t, func(c *auth.Config, _ *auth.Limiters) { c.ReuseGrace = 0 })
	p0, _ := e0.register(t)
	if _, err := e0.svc.Refresh(context.Background(), p0.RefreshToken); err != nil {
		t.Fatal(err)
	}
	_, err = e0.svc.Refresh(context.Background(), p0.RefreshToken)
	wantCode(t, err, codecrafter.EUNAUTHENTICATED)
}
