package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/codecrafter/codecrafter"
)

const (
	loginQ   = `mutation($in: LoginInput!) { login(input: $in) { accessToken refreshToken expiresAt user { id email } } }`
	refreshQ = `mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken user { id } } }`
	logoutQ  = `mutation($t: String!) { logout(refreshToken: $t) }`
	meQ      = `{ me { id name email createdAt } }`
)

func TestRegister(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	c := ta.client()
	vars := func(email, password, name string) map[string]any {
		return map[string]any{"in": map[string]any{"email": email, "password": password, "name": name}}
	}

	var out struct{ Register authPayload }
	c.Do(t, registerQ, vars("  Ada.Lovelace@Example.COM ", "analytical engine", " Ada "), &out)
	p := out.Register
	if p.User.Email == nil || *p.User.Email != "ada.lovelace@example.com" || p.User.Name != "Ada" {
		t.Errorf("user = %+v, want normalised email and trimmed name", p.User)
	}
	if ttl := time.Until(p.ExpiresAt); ttl <= 0 || ttl > 15*time.Minute {
		t.Errorf("access token expires in %v, want within 15m", ttl)
	}
	if p.AccessToken == "" || p.RefreshToken == "" {
		t.Fatal("missing tokens")
	}

	for _, tc := range []struct {
		name, email, password, userName, code, mention string
	}{
		{"duplicate email, other case", "ADA.lovelace@example.com", "another password", "Ada 2", codecrafter.ECONFLICT, "already registered"},
		{"invalid email", "not-an-email", "long enough pw", "X", codecrafter.EINVALID, "email"},
		{"email without domain dot", "a@localhost", "long enough pw", "X", codecrafter.EINVALID, "email"},
		{"short password", "short@example.com", "123456789", "X", codecrafter.EINVALID, "password"},
		{"long password", "long@example.com", strings.Repeat("p", 1025), "X", codecrafter.EINVALID, "password"},
		{"empty name", "noname@example.com", "long enough pw", "  ", codecrafter.EINVALID, "name"},
		{"control characters in name", "ctl@example.com", "long enough pw", "a\x00b", codecrafter.EINVALID, "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := c.Fail(t, tc.code, registerQ, vars(tc.email, tc.password, tc.userName))
			if !strings.Contains(e.Message, tc.mention) {
				t.Errorf("message %q does not mention %q", e.Message, tc.mention)
			}
		})
	}
	// 1024 characters (multi-byte ones count once) is the maximum.
	c.Do(t, registerQ, vars("max@example.com", strings.Repeat("é", 1024), "Max"), nil)
}

func TestLoginAndMe(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	u := ta.register(t, "grace")
	other := ta.register(t, "alan")
	c := ta.client()

	var out struct{ Login authPayload }
	c.Do(t, loginQ, map[string]any{"in": map[string]any{"email": strings.ToUpper(u.Email), "password": u.Password}}, &out)
	if out.Login.User.ID != u.ID {
		t.Fatalf("login returned user %s, want %s", out.Login.User.ID, u.ID)
	}

	wrongPw := c.Fail(t, codecrafter.EUNAUTHENTICATED, loginQ, map[string]any{"in": map[string]any{"email": u.Email, "password": "wrong password!"}})
	unknown := c.Fail(t, codecrafter.EUNAUTHENTICATED, loginQ, map[string]any{"in": map[string]any{"email": "nobody@example.com", "password": "wrong password!"}})
	if wrongPw.Message != unknown.Message {
		t.Errorf("wrong password says %q but unknown email says %q: must be the same", wrongPw.Message, unknown.Message)
	}

	var me struct {
		Me struct {
			ID, Name string
			Email    *string
		}
	}
	c.With(out.Login.AccessToken).Do(t, meQ, nil, &me)
	if me.Me.ID != u.ID || me.Me.Email == nil || *me.Me.Email != u.Email {
		t.Errorf("me = %+v", me.Me)
	}
	c.Fail(t, codecrafter.EUNAUTHENTICATED, meQ, nil)

	// Another user's email is hidden; unknown users are NOT_FOUND.
	var seen struct {
		User struct {
			Name  string
			Email *string
		}
	}
	u.Do(t, `query($id: ID!) { user(id: $id) { name email } }`, map[string]any{"id": other.ID}, &seen)
	if seen.User.Name != "alan" || seen.User.Email != nil {
		t.Errorf("user(other) = %+v, want name and no email", seen.User)
	}
	u.Fail(t, codecrafter.ENOTFOUND, `{ user(id: "000000000000000000000000") { id } }`, nil)
	c.Fail(t, codecrafter.EUNAUTHENTICATED, `query($id: ID!) { user(id: $id) { id } }`, map[string]any{"id": other.ID})
}

func TestLoginRateLimits(t *testing.T) {
	t.Parallel()
	ta := startApp(t, func(c *config) { c.LoginMaxPerAccount, c.LoginMaxPerAddr = 3, 6 })
	c := ta.client()
	victim := ta.register(t, "victim")
	login := func(email, pw string) map[string]any {
		return map[string]any{"in": map[string]any{"email": email, "password": pw}}
	}
	for range 3 {
		c.Fail(t, codecrafter.EUNAUTHENTICATED, loginQ, login(victim.Email, "not the password"))
	}
	// The account is now blocked, even with the right password.
	e := c.Fail(t, codecrafter.ERATELIMITED, loginQ, login(victim.Email, victim.Password))
	if ms, _ := e.Extensions["retryAfterMs"].(float64); ms <= 0 || ms > float64(15*time.Minute/time.Millisecond) {
		t.Errorf("retryAfterMs = %v, want within the 15m window", e.Extensions["retryAfterMs"])
	}
	// Per address: failures spread over other accounts also add up (3 so
	// far from this address; 3 more reach its limit of 6).
	for i := range 3 {
		c.Fail(t, codecrafter.EUNAUTHENTICATED, loginQ, login(strings.Repeat("x", i+1)+"@example.com", "not the password"))
	}
	fresh := ta.register(t, "fresh")
	c.Fail(t, codecrafter.ERATELIMITED, loginQ, login(fresh.Email, fresh.Password))
}

// TestLoginConcurrentWrongPasswords: 40 wrong passwords at once for one
// account (limit 5) are counted before any is checked: exactly 5 are
// checked, the rest are RATE_LIMITED.
func TestLoginConcurrentWrongPasswords(t *testing.T) {
	t.Parallel()
	ta := startApp(t, func(c *config) { c.LoginMaxPerAccount = 5 })
	victim := ta.register(t, "victim")
	const n = 40
	codes := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := ta.client().Raw(t, loginQ, map[string]any{"in": map[string]any{"email": victim.Email, "password": "not the password"}})
			codes[i] = r.Code()
		})
	}
	wg.Wait()
	count := map[string]int{}
	for _, c := range codes {
		count[c]++
	}
	if count[codecrafter.EUNAUTHENTICATED] != 5 || count[codecrafter.ERATELIMITED] != n-5 {
		t.Errorf("codes = %v, want 5 UNAUTHENTICATED (checked) and %d RATE_LIMITED", count, n-5)
	}
}

func TestRegisterRateLimit(t *testing.T) {
	t.Parallel()
	ta := startApp(t, func(c *config) { c.RegisterMaxPerAddr = 2 })
	ta.register(t, "one")
	ta.register(t, "two")
	e := ta.client().Fail(t, codecrafter.ERATELIMITED, registerQ, map[string]any{"in": map[string]any{"email": "three@example.com", "password": "long enough pw", "name": "Three"}})
	if ms, _ := e.Extensions["retryAfterMs"].(float64); ms <= 0 || ms > float64(time.Hour/time.Millisecond) {
		t.Errorf("retryAfterMs = %v, want within the 1h window", e.Extensions["retryAfterMs"])
	}
}

// accountsClock is the auth service's clock, moved by the test.
type accountsClock struct{ ns atomic.Int64 }

func (c *accountsClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *accountsClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// setClock gives the app's auth service a clock the test moves, starting
// now; call it before any request.
func (ta *testApp) setClock() *accountsClock {
	c := &accountsClock{}
	c.ns.Store(time.Now().UnixNano())
	ta.app.auth.SetClock(c.now)
	return c
}

// TestRefreshConcurrentTabs: two tabs refreshing with the same token at
// the same moment both get a new pair (the reuse grace), and both pairs
// work; a replay after the grace revokes the login.
func TestRefreshConcurrentTabs(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	clock := ta.setClock()
	u := ta.register(t, "tabs")
	var pairs [2]struct{ RefreshToken authPayload }
	var errs [2][]gqlErrorCode
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			r := ta.client().Raw(t, refreshQ, map[string]any{"t": u.Refresh})
			for _, e := range r.Errors {
				errs[i] = append(errs[i], gqlErrorCode{e.Code(), e.Message})
			}
			if len(r.Errors) == 0 {
				r.Decode(t, &pairs[i])
			}
		})
	}
	wg.Wait()
	for i := range 2 {
		if len(errs[i]) > 0 {
			t.Fatalf("concurrent refresh %d: %v", i, errs[i])
		}
		ta.client().With(pairs[i].RefreshToken.AccessToken).Do(t, meQ, nil, nil)
	}
	// Each tab goes on refreshing its own token.
	ta.client().Do(t, refreshQ, map[string]any{"t": pairs[0].RefreshToken.RefreshToken}, nil)

	clock.advance(11 * time.Second)
	ta.client().Fail(t, codecrafter.EUNAUTHENTICATED, refreshQ, map[string]any{"t": u.Refresh})
	ta.client().Fail(t, codecrafter.EUNAUTHENTICATED, refreshQ, map[string]any{"t": pairs[1].RefreshToken.RefreshToken})
	ta.client().With(pairs[1].RefreshToken.AccessToken).Fail(t, codecrafter.EUNAUTHENTICATED, meQ, nil)
}

type gqlErrorCode struct{ Code, Message string }

func TestRefreshRotationAndReuse(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	clock := ta.setClock()
	u := ta.register(t, "rot")
	c := ta.client()

	var r1 struct{ RefreshToken authPayload }
	c.Do(t, refreshQ, map[string]any{"t": u.Refresh}, &r1)
	if r1.RefreshToken.RefreshToken == u.Refresh || r1.RefreshToken.User.ID != u.ID {
		t.Fatalf("refresh did not rotate: %+v", r1.RefreshToken)
	}
	c.With(r1.RefreshToken.AccessToken).Do(t, meQ, nil, nil)

	// Presenting the first token again after the reuse grace is a replay:
	// refused, and the family (including the newest token, and its access
	// token) is revoked.
	clock.advance(11 * time.Second)
	c.Fail(t, codecrafter.EUNAUTHENTICATED, refreshQ, map[string]any{"t": u.Refresh})
	c.Fail(t, codecrafter.EUNAUTHENTICATED, refreshQ, map[string]any{"t": r1.RefreshToken.RefreshToken})
	c.With(r1.RefreshToken.AccessToken).Fail(t, codecrafter.EUNAUTHENTICATED, meQ, nil)
	c.Fail(t, codecrafter.EUNAUTHENTICATED, refreshQ, map[string]any{"t": "garbage"})

	// Another login is another family, unaffected.
	var l struct{ Login authPayload }
	c.Do(t, loginQ, map[string]any{"in": map[string]any{"email": u.Email, "password": u.Password}}, &l)
	c.Do(t, refreshQ, map[string]any{"t": l.Login.RefreshToken}, nil)
}

func TestLogout(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	u := ta.register(t, "bye")
	c := ta.client()
	var r1 struct{ RefreshToken authPayload }
	c.Do(t, refreshQ, map[string]any{"t": u.Refresh}, &r1)

	var out struct{ Logout bool }
	c.Do(t, logoutQ, map[string]any{"t": r1.RefreshToken.RefreshToken}, &out)
	if !out.Logout {
		t.Error("logout = false")
	}
	c.Fail(t, codecrafter.EUNAUTHENTICATED, refreshQ, map[string]any{"t": r1.RefreshToken.RefreshToken})
	// The login's access tokens end with it; another login's do not.
	c.With(r1.RefreshToken.AccessToken).Fail(t, codecrafter.EUNAUTHENTICATED, meQ, nil)
	c.With(u.Access).Fail(t, codecrafter.EUNAUTHENTICATED, meQ, nil)
	var l struct{ Login authPayload }
	c.Do(t, loginQ, map[string]any{"in": map[string]any{"email": u.Email, "password": u.Password}}, &l)
	c.With(l.Login.AccessToken).Do(t, meQ, nil, nil)
	// Logging out twice, or with an unknown token, is not an error.
	c.Do(t, logoutQ, map[string]any{"t": r1.RefreshToken.RefreshToken}, &out)
	c.Do(t, logoutQ, map[string]any{"t": "never-issued"}, &out)
}

func TestAccessTokenEdgeCases(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("s", 40)
	ta := startApp(t, func(c *config) { c.JWTSecret = secret })
	u := ta.register(t, "tok")
	now := time.Now()
	claims := func(mut func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := jwt.RegisteredClaims{
			Issuer: "codecrafter", Subject: u.ID, Audience: jwt.ClaimStrings{"codecrafter-api"},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute)),
		}
		if mut != nil {
			mut(&c)
		}
		return c
	}
	sign := func(method jwt.SigningMethod, key any, c jwt.RegisteredClaims) string {
		s, err := jwt.NewWithClaims(method, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := sign(jwt.SigningMethodHS256, []byte(secret), claims(nil))
	ta.client().With(good).Do(t, meQ, nil, nil) // the forged-but-correct token works: the test's tokens are realistic

	parts := strings.Split(u.Access, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]
	for name, tok := range map[string]string{
		"alg none":     sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)),
		"HS512":        sign(jwt.SigningMethodHS512, []byte(secret), claims(nil)),
		"wrong key":    sign(jwt.SigningMethodHS256, []byte(strings.Repeat("k", 40)), claims(nil)),
		"expired":      sign(jwt.SigningMethodHS256, []byte(secret), claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute)) })),
		"no expiry":    sign(jwt.SigningMethodHS256, []byte(secret), claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })),
		"issued later": sign(jwt.SigningMethodHS256, []byte(secret), claims(func(c *jwt.RegisteredClaims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) })),
		"wrong issuer": sign(jwt.SigningMethodHS256, []byte(secret), claims(func(c *jwt.RegisteredClaims) { c.Issuer = "evil" })),
		"wrong aud":    sign(jwt.SigningMethodHS256, []byte(secret), claims(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"other"} })),
		"no subject":   sign(jwt.SigningMethodHS256, []byte(secret), claims(func(c *jwt.RegisteredClaims) { c.Subject = "" })),
		"tampered":     tampered,
		"garbage":      "not.a.jwt",
	} {
		t.Run(name, func(t *testing.T) {
			e := ta.client().With(tok).Fail(t, codecrafter.EUNAUTHENTICATED, meQ, nil)
			if name == "expired" && !strings.Contains(e.Message, "expired") {
				t.Errorf("expired token message %q does not say so", e.Message)
			}
		})
	}
	// A refused token does not stop anonymous operations.
	ta.client().With("garbage").Do(t, `{ languages { language } }`, nil, nil)
}

// TestStoreDownIsUnavailable: with the store gone, operations answer
// UNAVAILABLE (safe to retry), and /readyz says not ready.
func TestStoreDownIsUnavailable(t *testing.T) {
	t.Parallel()
	ta := startApp(t)
	u := ta.register(t, "down")
	if err := ta.app.db.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := u.Fail(t, codecrafter.EUNAVAILABLE, meQ, nil)
	if strings.Contains(e.Message, "mongo") || strings.Contains(e.Message, "127.0.0.1") {
		t.Errorf("message leaks internals: %q", e.Message)
	}
	resp, err := http.Get(strings.TrimSuffix(ta.URL, "/graphql") + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d with the store down, want 503", resp.StatusCode)
	}
}
