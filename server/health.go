package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
)

// healthz is liveness: the process serves HTTP.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// readyzBody is /readyz's answer: "ok", "unavailable" or "shutting down",
// and each check's result: "ok", "failed" or "timeout". Causes go to the
// log, not to the (public) body.
type readyzBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// readyz runs every readiness check concurrently, each within
// ReadyTimeout: 200 when all pass, 503 otherwise or once shutting down.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	body := readyzBody{Status: "ok", Checks: make(map[string]string, len(s.deps.Ready))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range s.deps.Ready {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadyTimeout)
			defer cancel()
			err := runCheck(ctx, check)
			result := "ok"
			if err != nil {
				result = "failed"
				if errors.Is(err, context.DeadlineExceeded) {
					result = "timeout"
				}
				s.logger(r.Context()).Warn("readiness check failed", "check", name, "err", err)
			}
			mu.Lock()
			defer mu.Unlock()
			body.Checks[name] = result
			if err != nil {
				body.Status = "unavailable"
			}
		})
	}
	wg.Wait()
	status := http.StatusOK
	if s.shutdown.Err() != nil {
		body.Status = "shutting down"
	}
	if body.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// runCheck runs check, turning a panic into a failure. Checks must honour
// ctx: that is what bounds them.
func runCheck(ctx context.Context, check func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return check(ctx)
}

// slogPrinter lets promhttp log through slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error(fmt.Sprint(v...)) }
