package main

import (
	"testing"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/testenv"
)

// TestDataSurvivesRestart stops and restarts serve on the same data dir:
// accounts, sessions and the development JWT secret (so access tokens)
// persist in the embedded store.
func TestDataSurvivesRestart(t *testing.T) {
	t.Parallel()
	ta := startApp(t, func(c *config) { c.JWTSecret = "" }) // generated and kept in the data dir
	u := ta.register(t, "persist")
	s := createSession(t, u, "kept")
	ta.stop()

	again := &testApp{cfg: ta.cfg}
	again.start(t)
	if again.URL == ta.URL {
		t.Log("restarted on the same port")
	}
	// The old access token still works (same secret), and so does the
	// refresh token (same store).
	var got struct{ Session sessionOut }
	again.client().With(u.Access).Do(t, sessQ, map[string]any{"id": s.ID}, &got)
	if got.Session.Title != "kept" || got.Session.role(u.ID) != "OWNER" {
		t.Errorf("after restart: %+v", got.Session)
	}
	again.client().Do(t, refreshQ, map[string]any{"t": u.Refresh}, nil)
	again.client().Do(t, loginQ, map[string]any{"in": map[string]any{"email": u.Email, "password": u.Password}}, nil)
}

// TestQueuedRunSurvivesRestart queues a run on a server whose worker is
// off, stops it, and starts it again with its worker: the in-process queue
// lost the job, but the run is requeued from the store and completes.
func TestQueuedRunSurvivesRestart(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	ta := startApp(t)
	u := ta.register(t, "patient")
	run := execute(t, u.Client, map[string]any{"language": "python", "code": "print('still here')"})
	ta.stop()

	again := &testApp{cfg: ta.cfg}
	again.cfg.Worker = "on"
	again.cfg.SandboxInstance = "cmdtest-" + codecrafter.RandomToken(6)
	again.start(t)
	c := again.client().With(u.Access)
	if got := checkRun(t, collectOutput(t, c, run.ID), "SUCCEEDED"); got != "still here\n" {
		t.Errorf("stdout %q", got)
	}
}
