package sandbox

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/moby/profiles/seccomp"
)

func TestBoxSeccomp(t *testing.T) {
	if got := boxSeccomp([]string{"name=apparmor"}); got != "" {
		t.Errorf("an engine without seccomp gets a profile: %.40q", got)
	}
	opt := boxSeccomp([]string{"name=apparmor", "name=seccomp,profile=default"})
	body, ok := strings.CutPrefix(opt, "seccomp=")
	if !ok {
		t.Fatalf("security option %.40q", opt)
	}
	var p seccomp.Seccomp
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	def := seccomp.DefaultProfile()
	if len(p.ArchMap) != len(def.ArchMap) || len(p.Syscalls) != len(def.Syscalls) || p.DefaultAction != def.DefaultAction {
		t.Errorf("profile: %d architectures, %d rules, default %s; want Docker's %d, %d, %s",
			len(p.ArchMap), len(p.Syscalls), p.DefaultAction, len(def.ArchMap), len(def.Syscalls), def.DefaultAction)
	}
	for _, a := range p.ArchMap {
		if len(a.SubArches) != 0 {
			t.Errorf("%s admits %v", a.Arch, a.SubArches)
		}
	}
}
