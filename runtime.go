package codecrafter

import (
	"context"
	"strings"

	"time"
)

// Runtime is a language a deployment can run, as the API shows it.
type Runtime struct {
	Language string // the id used in sessions and runs, e.g. "python"
	Name     string // display name, e.g. "Python"
	Version  string
	Aliases  []string
}

// Runtimes is the registry of runnable languages.
type Runtimes interface {
	// Runtimes lists every language, in a stable order.
	Runtimes() []Runtime
	// Lookup finds a runtime by language id or alias, ignoring case.
	Lookup(language string) (Runtime, bool)
}

// RunRequest is one program to run in the sandbox.
type RunRequest struct {
	Language      string
	Code          string
	Stdin         string
	TimeLimit     time.Duration // wall clock for the run step
	MemoryLimitMB int
}

// RunResult is how a sandboxed program ended.
type RunResult struct {
	Status        ExecutionStatus // never QUEUED or RUNNING
	ExitCode      *int
	Stdout        string // capped
	Stderr        string // capped
	CompileOutput *string
	Duration      time.Duration // of the run step
}

// OutputFunc receives output as the program produces it, in order.
type OutputFunc func(stream OutputStream, data []byte)

// Sandbox runs untrusted code in isolation.
type Sandbox interface {
	// Run runs req, streaming output to out. Cancelling ctx kills the
	// program at once and returns ctx's error. An error means the
	// platform failed (status ERROR), not the program.
	Run(ctx context.Context, req RunRequest, out OutputFunc) (*RunResult, error)
}

// ResolveLanguage finds the runtime a user named (id or alias, any case,
// surrounding space ignored), or returns a BAD_USER_INPUT error that lists
// the languages there are.
func ResolveLanguage(rts Runtimes, name string) (Runtime, error) {
	if rt, ok := rts.Lookup(strings.TrimSpace(name)); ok {
		return rt, nil
	}
	var names []string
	for _, r := range rts.Runtimes() {
		names = append(names, r.Language)
	}
	return Runtime{}, Errorf(EINVALID, "language: %q is not available; choose one of %s", name, strings.Join(names, ", "))
}
