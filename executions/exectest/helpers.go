package exectest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
)

// Timeout bounds every wait of these helpers.
const Timeout = 5 * time.Second

// Receive returns the next value from ch, failing t when ch closes or
// nothing comes within Timeout.
func Receive[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return v
	case <-time.After(Timeout):
		t.Fatal("timed out waiting for a value")
	}
	panic("unreachable")
}

// Collect reads ch until it closes, failing t after Timeout.
func Collect[T any](t testing.TB, ch <-chan T) []T {
	t.Helper()
	var got []T
	timeout := time.After(Timeout)
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, v)
		case <-timeout:
			t.Fatalf("channel still open after %v; got %v", Timeout, got)
		}
	}
}

// WantChunks checks chunks are numbered upwards from 1 (a replay skips
// the Seqs of output a retry superseded) and that their status changes
// are statuses, in order.
func WantChunks(t testing.TB, chunks []codecrafter.OutputChunk, statuses ...codecrafter.ExecutionStatus) {
	t.Helper()
	var got []codecrafter.ExecutionStatus
	for i, c := range chunks {
		if (i == 0 && c.Seq != 1) || (i > 0 && c.Seq <= chunks[i-1].Seq) {
			t.Fatalf("chunk %d has seq %d: %+v", i, c.Seq, chunks)
		}
		if c.Stream == "" {
			got = append(got, c.Status)
		}
	}
	if !slices.Equal(got, statuses) {
		t.Fatalf("status changes %v, want %v", got, statuses)
	}
}

// Text joins the data of the chunks of stream ("" for every stream).
func Text(chunks []codecrafter.OutputChunk, stream codecrafter.OutputStream) string {
	var b strings.Builder
	for _, c := range chunks {
		if stream == "" || c.Stream == stream {
			b.WriteString(c.Data)
		}
	}
	return b.String()
}

// AttemptText is what a client shows of a stream: the data after the last
// RUNNING status change, which starts the current attempt.
func AttemptText(chunks []codecrafter.OutputChunk, stream codecrafter.OutputStream) string {
	from := 0
	for i, c := range chunks {
		if c.Stream == "" && c.Status == codecrafter.StatusRunning {
			from = i
		}
	}
	return Text(chunks[from:], stream)
}

// Eventually polls cond until it holds, failing t after Timeout. For
// states no event announces (queue depth, store rows).
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
}

// AddSession stores a session with these participants (user id -> role).
func AddSession(t testing.TB, sessions codecrafter.SessionStore, id string, roles map[string]codecrafter.Role) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	sess := &codecrafter.Session{
		ID: id, Title: id, Language: "python", InviteCode: codecrafter.RandomToken(9),
		CreatedAt: now, UpdatedAt: now,
	}
	for user, role := range roles {
		sess.Participants = append(sess.Participants, codecrafter.Participant{UserID: user, Role: role, JoinedAt: now})
		if role == codecrafter.RoleOwner {
			sess.OwnerID = user
		}
	}
	if err := sessions.CreateSession(context.Background(), sess); err != nil {
		t.Fatalf("create session %s: %v", id, err)
	}
}
