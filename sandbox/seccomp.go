package sandbox

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/moby/profiles/seccomp"
)

// boxSeccomp is the system call filter of boxes, as a security option
// ("seccomp=<profile JSON>"): Docker's default profile, the same rules,
// for the engine's native architecture only. Docker's own also admits the
// compatibility ABIs (i386 and x32 beside x86_64, 32-bit ARM beside
// arm64), which no box needs: without them a program's int 0x80 gets
// the filter's bad-architecture action (the runtime's; libseccomp's is to
// kill) instead of a second system call table, and the runtime compiles
// a third of the filter for every container (Debian's crun cannot cache
// it, and compiling was 5 % of the machine's CPU in a back-to-back run;
// BENCHMARKS.md). It is "" (the engine's default profile) where the
// engine does not filter system calls: a profile would be refused there.
func boxSeccomp(engineSecurityOptions []string) string {
	if !slices.ContainsFunc(engineSecurityOptions, func(o string) bool { return strings.HasPrefix(o, "name=seccomp") }) {
		return ""
	}
	p := seccomp.DefaultProfile()
	for i := range p.ArchMap {
		p.ArchMap[i].SubArches = nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic("sandbox: seccomp profile: " + err.Error()) // a fixed value: cannot fail
	}
	return "seccomp=" + string(b)
}
