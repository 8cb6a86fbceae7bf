package main

import "testing"

func TestParseOOMKills(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     int64
		ok       bool
	}{
		{"cgroup v1", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", 3, true},
		{"cgroup v2", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n", 1, true},
		{"none yet", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", 0, true},
		{"old kernel without the counter", "oom_kill_disable 0\nunder_oom 0\n", 0, false},
		{"garbage", "oom_kill x\n", 0, false},
		{"empty", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got, ok := parseOOMKills(tc.in); got != tc.want || ok != tc.ok {
				t.Errorf("parseOOMKills(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}
