package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/graph"
	"github.com/codecrafter/codecrafter/resolvers"
)

func TestPresentError(t *testing.T) {
	t.Parallel()
	path := ast.Path{ast.PathName("session"), ast.PathName("owner")}
	coded := func(code string) *gqlerror.Error {
		e := gqlerror.Errorf("gqlgen says no")
		errcode.Set(e, code)
		e.Extensions["leak"] = "internal detail"
		return e
	}
	cases := []struct {
		name     string
		err      error
		code     string
		message  string // "" means: the input's message is kept
		retry    any    // extensions.retryAfterMs, nil when absent
		logged   bool   // an "internal error" log line with the cause
		keepPath bool
	}{
		{"not found", codecrafter.Errorf(codecrafter.ENOTFOUND, "no such session"), "NOT_FOUND", "no such session", nil, false, false},
		{"unauthenticated", codecrafter.Errorf(codecrafter.EUNAUTHENTICATED, "token expired"), "UNAUTHENTICATED", "token expired", nil, false, false},
		{"forbidden", codecrafter.Errorf(codecrafter.EFORBIDDEN, "viewers cannot edit"), "FORBIDDEN", "viewers cannot edit", nil, false, false},
		{"conflict", codecrafter.Errorf(codecrafter.ECONFLICT, "email already registered"), "CONFLICT", "email already registered", nil, false, false},
		{"invalid", codecrafter.Errorf(codecrafter.EINVALID, "title: must not be empty"), "BAD_USER_INPUT", "title: must not be empty", nil, false, false},
		{"rate limited", &codecrafter.Error{Code: codecrafter.ERATELIMITED, Message: "too many attempts", RetryAfter: 1500 * time.Millisecond},
			"RATE_LIMITED", "too many attempts", int64(1500), false, false},
		{"rate limited rounds up", &codecrafter.Error{Code: codecrafter.ERATELIMITED, Message: "slow down", RetryAfter: 1500*time.Millisecond + time.Microsecond},
			"RATE_LIMITED", "slow down", int64(1501), false, false},
		{"rate limited without a delay", codecrafter.Errorf(codecrafter.ERATELIMITED, "slow down"), "RATE_LIMITED", "slow down", nil, false, false},
		{"unavailable hides its cause", codecrafter.Wrap(errors.New("dial tcp 10.1.2.3:27017: refused"), codecrafter.EUNAVAILABLE, "the store is unavailable"),
			"UNAVAILABLE", "the store is unavailable", nil, false, false},
		{"wrapped with %w", fmt.Errorf("loading session: %w", codecrafter.Errorf(codecrafter.EFORBIDDEN, "not a participant")), "FORBIDDEN", "not a participant", nil, false, false},
		{"on a field path, as gqlgen passes it", gqlerror.WrapPath(path, codecrafter.Errorf(codecrafter.ENOTFOUND, "no such user")), "NOT_FOUND", "no such user", nil, false, true},
		{"coded INTERNAL", codecrafter.Wrap(errors.New("secret cause"), codecrafter.EINTERNAL, "details"), "INTERNAL", "internal error", nil, true, false},
		{"plain error", gqlerror.WrapPath(path, errors.New("pq: password authentication failed for user admin")), "INTERNAL", "internal error", nil, true, true},
		{"unknown code", codecrafter.Errorf("TEAPOT", "short and stout"), "INTERNAL", "internal error", nil, true, false},
		{"execution error without cause", gqlerror.ErrorPathf(path, "must not be null"), "INTERNAL", "internal error", nil, true, true},
		{"recovered panic", codecrafter.Wrap(panicError{"boom"}, codecrafter.EINTERNAL, "internal error"), "INTERNAL", "internal error", nil, false, false},
		{"validation", coded(errcode.ValidationFailed), "BAD_USER_INPUT", "gqlgen says no", nil, false, false},
		{"parse", coded(errcode.ParseFailed), "BAD_USER_INPUT", "gqlgen says no", nil, false, false},
		{"complexity", coded("COMPLEXITY_LIMIT_EXCEEDED"), "BAD_USER_INPUT", "gqlgen says no", nil, false, false},
		{"undecodable body", gqlerror.Errorf("json request body could not be decoded: unexpected EOF body:{\"query\": \"secret"),
			"BAD_USER_INPUT", "the request body is not a valid GraphQL JSON request", nil, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, logs := newPresenterServer(t)
			ctx := codecrafter.WithRequestID(context.Background(), "req-7")
			got := s.presentError(ctx, c.err)

			if got.Extensions["code"] != c.code {
				t.Errorf("code %v, want %s", got.Extensions["code"], c.code)
			}
			if got.Message != c.message {
				t.Errorf("message %q, want %q", got.Message, c.message)
			}
			if got.Extensions["requestId"] != "req-7" {
				t.Errorf("requestId %v", got.Extensions["requestId"])
			}
			if got.Extensions["retryAfterMs"] != c.retry {
				t.Errorf("retryAfterMs %v (%T), want %v", got.Extensions["retryAfterMs"], got.Extensions["retryAfterMs"], c.retry)
			}
			for k := range got.Extensions {
				if k != "code" && k != "requestId" && k != "retryAfterMs" {
					t.Errorf("extra extension %q", k)
				}
			}
			if c.keepPath && got.Path.String() != path.String() {
				t.Errorf("path %q, want %q", got.Path.String(), path.String())
			}
			logged := strings.Contains(logs.String(), `"msg":"internal error"`)
			if logged != c.logged {
				t.Errorf("logged %v, want %v: %s", logged, c.logged, logs.String())
			}
			if logged && !strings.Contains(logs.String(), `"request_id":"req-7"`) {
				t.Errorf("log line without the request id: %s", logs.String())
			}
		})
	}
}

func TestPresentErrorTruncatesLongMessages(t *testing.T) {
	t.Parallel()
	s, _ := newPresenterServer(t)
	long := gqlerror.Errorf("%s", strings.Repeat("é", 400))
	errcode.Set(long, errcode.ValidationFailed)
	got := s.presentError(context.Background(), long)
	if len(got.Message) > maxMessageLen || !strings.HasPrefix(long.Message, got.Message) || !utf8Valid(got.Message) {
		t.Errorf("message of %d bytes: %q", len(got.Message), got.Message)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func newPresenterServer(t *testing.T) (*Server, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	s, err := New(Config{}, Deps{
		Schema: graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{}}),
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
