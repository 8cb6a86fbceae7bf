package main

import (
	"context"
	"log/slog"

	"github.com/codecrafter/codecrafter"
)

// ctxHandler adds the request id and user id found in a record's context,
// so every *Context log call made while serving a request names it.
type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	has := map[string]bool{}
	r.Attrs(func(a slog.Attr) bool { has[a.Key] = true; return true })
	if id := codecrafter.RequestIDFromContext(ctx); id != "" && !has["request_id"] {
		r.AddAttrs(slog.String("request_id", id))
	}
	if uid := codecrafter.UserIDFromContext(ctx); uid != "" && !has["user_id"] {
		r.AddAttrs(slog.String("user_id", uid))
	}
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(as)}
}

func (h ctxHandler) WithGroup(name string) slog.Handler { return ctxHandler{h.Handler.WithGroup(name)} }
