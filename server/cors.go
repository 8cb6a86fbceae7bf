package server

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/codecrafter/codecrafter"
)

// CORS answers for cross-origin callers.
const (
	corsAllowMethods  = "GET, POST, OPTIONS"
	corsAllowHeaders  = "Authorization, Content-Type, X-Request-ID"
	corsExposeHeaders = "X-Request-ID"
	corsMaxAge        = "600"
)

// originPolicy is the allow-list of cross-origin callers, shared by CORS
// and the WebSocket Origin check.
type originPolicy map[string]bool

func newOriginPolicy(origins []string) (originPolicy, error) {
	p := originPolicy{}
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || strings.Contains(o, "*") {
			return nil, fmt.Errorf("server: allowed origin %q: want scheme://host[:port]", o)
		}
		p[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	return p, nil
}

// allowed reports whether r may be served: no Origin (not a browser, or
// a same-origin GET), the request's own host, or a listed origin.
func (p originPolicy) allowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	return origin == "" || sameOrigin(r, origin) || p[strings.ToLower(origin)]
}

func sameOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

// withCORS refuses browsers calling from origins that are not allowed
// (403, WebSocket upgrades included), answers preflights, and lets listed
// origins read responses with credentials. It never echoes an origin that
// is not on the list.
func (s *Server) withCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		if !s.origins.allowed(r) {
			s.logger(r.Context()).Info("origin refused", "origin", origin)
			writeError(w, r, http.StatusForbidden, codecrafter.EFORBIDDEN, "origin not allowed")
			return
		}
		if !sameOrigin(r, origin) {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
