package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/codecrafter/codecrafter"
)

// contractCodes are the codes the API contract allows in extensions.code.
var contractCodes = map[string]bool{
	codecrafter.EUNAUTHENTICATED: true,
	codecrafter.EFORBIDDEN:       true,
	codecrafter.ENOTFOUND:        true,
	codecrafter.EINVALID:         true,
	codecrafter.ECONFLICT:        true,
	codecrafter.ERATELIMITED:     true,
	codecrafter.EUNAVAILABLE:     true,
	codecrafter.EINTERNAL:        true,
}

// requestErrorCodes are gqlgen's codes for a request it refused before
// running it: the caller's fault.
var requestErrorCodes = map[string]bool{
	errcode.ValidationFailed:    true,
	errcode.ParseFailed:         true,
	"COMPLEXITY_LIMIT_EXCEEDED": true, // extension.ComplexityLimit
}

// maxMessageLen bounds messages gqlgen builds from the request (a JSON
// decoding error quotes the body).
const maxMessageLen = 300

// presentError is the one error presenter: every error leaves with a
// contract code in extensions.code and the request id; INTERNAL ones say
// nothing more and are logged with their cause.
func (s *Server) presentError(ctx context.Context, err error) *gqlerror.Error {
	var gqlErr *gqlerror.Error
	if !errors.As(err, &gqlErr) {
		gqlErr = &gqlerror.Error{Message: err.Error(), Err: err}
	}
	out := &gqlerror.Error{Path: gqlErr.Path, Locations: gqlErr.Locations, Err: err}

	var ce *codecrafter.Error
	var code string
	switch {
	case errors.As(err, &ce) && contractCodes[ce.Code]:
		code, out.Message = ce.Code, codecrafter.ErrorMessage(err)
	case gqlErr.Err == nil && isRequestError(gqlErr):
		code, out.Message = codecrafter.EINVALID, requestMessage(gqlErr.Message)
	default:
		code, out.Message = codecrafter.EINTERNAL, "internal error"
	}

	out.Extensions = map[string]any{"code": code, "requestId": codecrafter.RequestIDFromContext(ctx)}
	if code == codecrafter.ERATELIMITED && ce.RetryAfter > 0 {
		// Round up: retrying a little late is fine, early is not.
		out.Extensions["retryAfterMs"] = (ce.RetryAfter.Nanoseconds() + 999_999) / 1_000_000
	}
	if code == codecrafter.EINTERNAL && !errors.As(err, new(panicError)) {
		s.logger(ctx).Error("internal error", "err", err, "path", out.Path.String())
	}
	return out
}

// isRequestError tells gqlgen's refusals of the request (parse,
// validation, limits, undecodable body) from failures while executing it,
// which carry a field path.
func isRequestError(e *gqlerror.Error) bool {
	if code, ok := e.Extensions["code"].(string); ok {
		return requestErrorCodes[code]
	}
	return len(e.Path) == 0
}

func requestMessage(msg string) string {
	if strings.HasPrefix(msg, "json request body could not be decoded") {
		return "the request body is not a valid GraphQL JSON request"
	}
	return truncate(msg, maxMessageLen)
}

// truncate cuts s to at most n bytes without splitting a rune.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// panicError is a recovered panic; recoverPanic has logged it already.
type panicError struct{ value any }

func (p panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// recoverPanic turns a resolver panic into INTERNAL, logging the stack.
func (s *Server) recoverPanic(ctx context.Context, p any) error {
	s.logger(ctx).Error("panic serving GraphQL", "panic", p, "stack", string(debug.Stack()))
	return codecrafter.Wrap(panicError{p}, codecrafter.EINTERNAL, "internal error")
}

// writeError answers with a GraphQL-style JSON error body, for refusals
// made before gqlgen sees the request.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	type extensions struct {
		Code      string `json:"code"`
		RequestID string `json:"requestId"`
	}
	type gqlError struct {
		Message    string     `json:"message"`
		Extensions extensions `json:"extensions"`
	}
	body, _ := json.Marshal(struct {
		Errors []gqlError `json:"errors"`
	}{[]gqlError{{message, extensions{code, codecrafter.RequestIDFromContext(r.Context())}}}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
