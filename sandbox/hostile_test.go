package sandbox_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/internal/promtest"
	"github.com/codecrafter/codecrafter/internal/testenv"
	"github.com/codecrafter/codecrafter/sandbox"
)

const hostileOutputLimit = 64 << 10

type hostileCase struct {
	name     string
	lang     string
	code     string
	timeMs   int
	memoryMB int
	want     codecrafter.ExecutionStatus
	check    func(t *testing.T, res *codecrafter.RunResult)
}

// TestHostile runs programs that attack the sandbox, one at a time (so
// each gets the machine), and checks both their status and that the host
// is unharmed: the container and all its processes are gone, host files,
// environment and disk are untouched, and the next run works.
//
// It runs under the default runtime: crun where the engine has it
// registered (scripts/services.sh does), else the engine's default.
func TestHostile(t *testing.T) {
	testHostile(t, sandbox.Config{}, nil)
}

// TestRunc runs the hostile programs under runc, the engine's default,
// which boxes use where crun is not registered or -sandbox-runtime runc
// asks for it.
func TestRunc(t *testing.T) {
	testHostile(t, sandbox.Config{OCIRuntime: "runc"}, nil)
}

// TestGVisor runs the hostile programs under gVisor (runsc registered in
// /etc/docker/daemon.json, which scripts/services.sh does before it starts
// dockerd).
func TestGVisor(t *testing.T) {
	testenv.Docker(t)
	if !registered(t, "runsc") {
		testenv.Missing(t, "gVisor: runsc is not registered with the engine")
	}
	// Where gVisor differs, the host is still unharmed: a fork bomb at the
	// pids limit crashes the whole gVisor sandbox, or its processes exhaust
	// the memory limit first, and an OOM kill takes the whole sandbox, not
	// just the child.
	testHostile(t, sandbox.Config{OCIRuntime: "runsc"}, map[string][]codecrafter.ExecutionStatus{
		"fork bomb":              {codecrafter.StatusFailed, codecrafter.StatusMemoryLimit},
		"memory bomb in a child": {codecrafter.StatusMemoryLimit},
	})
}

// testHostile runs the hostile cases; relaxed names cases that may end
// with other statuses, whose output is then not checked.
func testHostile(t *testing.T, cfg sandbox.Config, relaxed map[string][]codecrafter.ExecutionStatus) {
	cfg.OutputLimit, cfg.DefaultTimeLimit = hostileOutputLimit, 3*time.Second
	d, reg := newRunner(t, cfg)
	want := cfg.OCIRuntime
	if want == "" {
		want = "runc"
		if registered(t, "crun") {
			want = "crun"
		}
	}
	if d.Runtime() != want {
		t.Errorf("the runner's runtime is %q, want %q", d.Runtime(), want)
	}
	var containers []string
	d.OnAcquire(func(id string) {
		containers = append(containers, id)
		// The box itself, as the engine started it.
		if rt, err := execOutput("docker", "inspect", "--format", "{{.HostConfig.Runtime}}", id); err != nil || strings.TrimSpace(rt) != want {
			t.Errorf("box %s runs under %q (%v), want %q", id, strings.TrimSpace(rt), err, want)
		}
	})

	secret := "s3cr3t-" + codecrafter.NewID()
	t.Setenv("CODECRAFTER_TEST_SECRET", secret)
	hostDir := t.TempDir()
	hostFile := filepath.Join(hostDir, "secret.txt")
	if err := os.WriteFile(hostFile, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	diskBefore := freeBytes(t, "/var/lib/docker")

	noSecret := func(t *testing.T, res *codecrafter.RunResult) {
		t.Helper()
		all := res.Stdout + res.Stderr
		if res.CompileOutput != nil {
			all += *res.CompileOutput
		}
		if strings.Contains(all, secret) {
			t.Errorf("the host secret leaked into the output:\n%s", describe(res))
		}
	}
	lacks := func(bad ...string) func(t *testing.T, res *codecrafter.RunResult) {
		return func(t *testing.T, res *codecrafter.RunResult) {
			t.Helper()
			for _, b := range bad {
				if strings.Contains(res.Stdout+res.Stderr, b) {
					t.Errorf("output has %q:\n%s", b, describe(res))
				}
			}
		}
	}
	has := func(good ...string) func(t *testing.T, res *codecrafter.RunResult) {
		return func(t *testing.T, res *codecrafter.RunResult) {
			t.Helper()
			for _, g := range good {
				if !strings.Contains(res.Stdout+res.Stderr+deref(res.CompileOutput), g) {
					t.Errorf("output lacks %q:\n%s", g, describe(res))
				}
			}
		}
	}

	cases := []hostileCase{
		{name: "fork bomb", lang: "python", timeMs: 2000, want: codecrafter.StatusTimedOut,
			code: "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"},
		{name: "memory bomb", lang: "python", memoryMB: 64, want: codecrafter.StatusMemoryLimit,
			code: "a = []\nwhile True:\n    a.append(bytearray(10**7))\n"},
		{name: "memory bomb in a child", lang: "python", memoryMB: 64, want: codecrafter.StatusMemoryLimit,
			code:  "import subprocess, sys\nr = subprocess.run([sys.executable, '-c', 'a = []\\nwhile True: a.append(bytearray(10**7))'])\nprint('child ended', r.returncode)\n",
			check: has("child ended -9")},
		{name: "infinite loop", lang: "python", timeMs: 1000, want: codecrafter.StatusTimedOut,
			code: "while True:\n    pass\n",
			// TIMED_OUT and the container gone (below) are the outcome; the
			// clock is only checked against a bound no load can break: the
			// limit did not stop it early.
			check: func(t *testing.T, res *codecrafter.RunResult) {
				if res.Duration < 800*time.Millisecond {
					t.Errorf("stopped after %v, before the 1 s limit", res.Duration)
				}
			}},
		{name: "sleep past the limit", lang: "python", timeMs: 1000, want: codecrafter.StatusTimedOut,
			code: "import time\nprint('started', flush=True)\ntime.sleep(60)\n", check: has("started")},
		{name: "stdout flood", lang: "python", want: codecrafter.StatusOutputLimit,
			code: "import sys\nwhile True:\n    sys.stdout.write('x' * 4096)\n",
			check: func(t *testing.T, res *codecrafter.RunResult) {
				if n := len(res.Stdout) + len(res.Stderr); n != hostileOutputLimit {
					t.Errorf("kept %d bytes of output, want exactly the %d limit", n, hostileOutputLimit)
				}
			}},
		{name: "stderr flood", lang: "bash", want: codecrafter.StatusOutputLimit, code: "yes >&2\n"},
		// Time enough for a loaded machine (gVisor writes slowly): the
		// outcome is that no fill succeeds.
		{name: "fill tmpfs and shm", lang: "bash", timeMs: 20000, want: codecrafter.StatusSucceeded,
			code: "for f in /tmp/fill /box/fill /dev/shm/fill /var/tmp/fill; do\n" +
				"  head -c 400M /dev/zero > $f 2>/dev/null && echo \"FILLED $f\" || echo \"stopped $f\"\n  rm -f $f\ndone\n",
			check: lacks("FILLED")},
		{name: "network egress", lang: "python", timeMs: 20000, want: codecrafter.StatusSucceeded,
			code: "import socket\n" +
				"targets = [('169.254.169.254', 80), ('172.17.0.1', 6379), ('172.17.0.1', 5672), ('172.17.0.1', 27017),\n" +
				"           ('192.0.2.2', 6379), ('127.0.0.1', 6379), ('deb.debian.org', 80)]\n" +
				"for host, port in targets:\n" +
				"    try:\n" +
				"        socket.create_connection((host, port), timeout=3).close()\n" +
				"        print('OPEN', host, port)\n" +
				"    except OSError as e:\n" +
				"        print('blocked', host, port, e)\n" +
				"print('interfaces', sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))\n",
			check: func(t *testing.T, res *codecrafter.RunResult) {
				lacks("OPEN")(t, res)
				has("interfaces ['lo']")(t, res)
			}},
		{name: "host files and environment", lang: "python", want: codecrafter.StatusSucceeded,
			code: "import os\nprint(dict(os.environ))\n" +
				"for p in ['" + hostFile + "', '/proc/1/environ', '/proc/self/environ', '/etc/shadow', '/proc/1/root" + hostFile + "']:\n" +
				"    try:\n        print(p, open(p, 'rb').read())\n    except OSError as e:\n        print(p, 'denied', e)\n",
			check: func(t *testing.T, res *codecrafter.RunResult) {
				noSecret(t, res)
				has("No such file", "Permission denied")(t, res)
			}},
		{name: "write the root fs", lang: "bash", want: codecrafter.StatusSucceeded,
			code: "for f in /x /etc/passwd /usr/bin/python3 /usr/local/bin/ccbox /var/tmp/x /proc/sys/kernel/hostname; do\n" +
				"  (echo pwned > $f) 2>/dev/null && echo \"WROTE $f\" || echo \"denied $f\"\ndone\n" +
				"mount -t tmpfs none /x 2>/dev/null && echo MOUNTED || echo 'no mount'\n",
			check: lacks("WROTE", "MOUNTED")},
		{name: "symlinks in the work dir", lang: "bash", want: codecrafter.StatusSucceeded,
			code: "ln -s / /box/root; ln -s " + hostDir + " /box/host; ln -s /proc/1/root /box/init\n" +
				"for f in /box/host/pwned /box/root/pwned /box/init" + hostDir + "/pwned; do\n" +
				"  (echo pwned > $f) 2>/dev/null && echo \"WROTE $f\" || echo \"denied $f\"\ndone\n" +
				"cat /box/host/secret.txt /box/init" + hostFile + " 2>&1\ntrue\n",
			check: func(t *testing.T, res *codecrafter.RunResult) {
				lacks("WROTE")(t, res)
				noSecret(t, res)
			}},
		{name: "background daemons", lang: "bash", want: codecrafter.StatusSucceeded,
			code: "setsid sleep 300 &\nnohup sleep 301 >/dev/null 2>&1 &\n" +
				"setsid bash -c 'trap \"\" TERM HUP INT; exec sleep 302' </dev/null >/dev/null 2>&1 &\n" +
				"(sleep 303 &)\necho bye\n",
			// Waiting for the daemons would end at the 3 s limit as
			// TIMED_OUT; assertGone (below) checks they were killed.
			check: has("bye")},
		// Boxes' seccomp profile admits the native ABI only: i386's getpid
		// through int 0x80 must not return a pid (it kills the program, or
		// fails, depending on the runtime).
		{name: "32-bit system call", lang: "c", want: codecrafter.StatusFailed,
			code: "#include <stdio.h>\nint main(void) {\n\tlong r = 20; /* i386 getpid */\n\tprintf(\"before\\n\");\n\tfflush(stdout);\n" +
				"\t__asm__ volatile(\"int $0x80\" : \"+a\"(r) : : \"memory\");\n\tprintf(\"int 0x80: %ld\\n\", r);\n\treturn r > 0 ? 0 : 1;\n}\n",
			check: func(t *testing.T, res *codecrafter.RunResult) {
				has("before")(t, res)
			}},
		{name: "C includes /etc/shadow", lang: "c", want: codecrafter.StatusCompileError,
			code: "#include \"/etc/shadow\"\nint main(void) { return 0; }\n", check: has("Permission denied")},
		{name: "C includes a host file", lang: "c", want: codecrafter.StatusCompileError,
			code: "#include \"" + hostFile + "\"\nint main(void) { return 0; }\n", check: has("No such file")},
		{name: "Rust include_str of host files", lang: "rust", want: codecrafter.StatusCompileError,
			code: "const A: &str = include_str!(\"" + hostFile + "\");\nconst B: &str = include_str!(\"/proc/self/environ\");\n" +
				"fn main() { let x: u8 = A; println!(\"{}\", B); }\n",
			check: func(t *testing.T, res *codecrafter.RunResult) {
				noSecret(t, res)
				has("No such file")(t, res)
			}},
		{name: "Rust embeds the compiler's environment", lang: "rust", want: codecrafter.StatusSucceeded,
			code: "const ENV: &str = include_str!(\"/proc/self/environ\");\nfn main() { print!(\"{}\", ENV.replace('\\0', \"\\n\")); }\n",
			check: func(t *testing.T, res *codecrafter.RunResult) {
				noSecret(t, res)
				has("PATH=")(t, res) // rustc did read its (the box's) environment
			}},
		{name: "Go embeds a file from outside the box", lang: "go", want: codecrafter.StatusCompileError,
			code: "package main\n\nimport _ \"embed\"\n\n//go:embed " + hostFile + "\nvar s string\n\nfunc main() { println(s) }\n",
			check: func(t *testing.T, res *codecrafter.RunResult) {
				noSecret(t, res)
				has("invalid pattern")(t, res)
			}},
		{name: "Go reads host state at run time", lang: "go", want: codecrafter.StatusSucceeded,
			code: "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() {\n\tfmt.Println(os.Environ())\n" +
				"\tfor _, p := range []string{\"" + hostFile + "\", \"/proc/1/environ\"} {\n\t\tb, err := os.ReadFile(p)\n\t\tfmt.Println(p, string(b), err)\n\t}\n}\n",
			check: func(t *testing.T, res *codecrafter.RunResult) {
				noSecret(t, res)
				has("no such file")(t, res)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			containers = nil
			res := run(t, d, codecrafter.RunRequest{Language: tc.lang, Code: tc.code,
				TimeLimit: time.Duration(tc.timeMs) * time.Millisecond, MemoryLimitMB: tc.memoryMB})
			t.Logf("%s (%v)", describe(res), res.Duration)
			alt, isRelaxed := relaxed[tc.name]
			if res.Status != tc.want && !slices.Contains(alt, res.Status) {
				t.Errorf("status %s, want %s:\n%s", res.Status, tc.want, describe(res))
			}
			if tc.check != nil && !isRelaxed {
				tc.check(t, res)
			}
			if len(containers) != 1 {
				t.Fatalf("runs used containers %v, want one", containers)
			}
			assertGone(t, d, containers[0])
			if entries, _ := os.ReadDir(hostDir); len(entries) != 1 {
				t.Errorf("host dir changed: %d entries", len(entries))
			}
		})
	}

	for _, rt := range []string{"runc", "crun", "runsc"} {
		if n := promtest.Value(t, reg, "codecrafter_sandbox_containers_started_total", map[string]string{"runtime": rt}); (n > 0) != (rt == want) {
			t.Errorf("%v containers started under %s; all should be under %s", n, rt, want)
		}
	}

	// The host is still fine: the next run works and the disk is as it was.
	res := run(t, d, codecrafter.RunRequest{Language: "python", Code: "print('still here')"})
	if res.Status != codecrafter.StatusSucceeded || res.Stdout != "still here\n" {
		t.Errorf("run after the hostile programs: %s", describe(res))
	}
	if lost := diskBefore - freeBytes(t, "/var/lib/docker"); lost > 200<<20 {
		t.Errorf("the runs used %d MB of the host's disk", lost>>20)
	}
}

// TestCancel cancels a run mid-way: Run returns with the context's error,
// well before the run's own limit would have ended it, and the container
// is gone.
func TestCancel(t *testing.T) {
	t.Parallel()
	d, _ := newRunner(t, sandbox.Config{})
	var id string
	d.OnAcquire(func(c string) { id = c })
	ctx, cancel := context.WithCancel(testenv.Context(t, time.Minute))
	defer cancel()
	started := make(chan struct{})
	var cancelledAt time.Time
	out := func(_ codecrafter.OutputStream, p []byte) {
		if strings.Contains(string(p), "running") {
			cancelledAt = time.Now()
			cancel()
			close(started)
		}
	}
	const limit = 30 * time.Second
	res, err := d.Run(ctx, codecrafter.RunRequest{Language: "python", Code: "import time\nprint('running', flush=True)\ntime.sleep(120)\n", TimeLimit: limit}, out)
	select {
	case <-started:
	default:
		t.Fatalf("the program never started: %v %v", res, err)
	}
	if err != context.Canceled || res != nil {
		t.Fatalf("Run = %v, %v; want nil, context.Canceled", res, err)
	}
	// An ignored cancel ends at the limit with the same error; two thirds
	// of it is a bound no load reaches.
	if took := time.Since(cancelledAt); took > limit*2/3 {
		t.Errorf("Run returned %v after the cancel: it ran to its limit", took)
	}
	assertGone(t, d, id)
}

// TestMemoryKill checks both ways a memory kill is found: ccbox's report
// of the box's OOM kill count with a clean exit (under runc and crun),
// also when only a child was killed and the program itself exits 0, and
// the fallback (gVisor's way: the container's final state and the
// engine's OOM log, asked when something was SIGKILLed). The fallback is
// not asked about a killed child whose parent exits 0: only the engine's
// state could tell, and it misses the OOM when the engine hears of the
// exit first (seen in CI, with the engine at a low CPU weight). Under
// gVisor that case does not arise: an OOM kill takes the whole sandbox.
func TestMemoryKill(t *testing.T) {
	t.Parallel()
	childBomb := "import subprocess, sys\nr = subprocess.run([sys.executable, '-c', 'a = []\\nwhile True: a.append(bytearray(10**7))'])\nprint('child ended', r.returncode)\n"
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			t.Parallel()
			d, _ := newRunner(t, sandbox.Config{})
			if fallback {
				d.UseOOMReport(false)
			}
			for _, tc := range []struct {
				code       string
				want       codecrafter.ExecutionStatus
				reportOnly bool // known from ccbox's report alone
			}{
				{childBomb, codecrafter.StatusMemoryLimit, true},
				{"a = []\nwhile True:\n    a.append(bytearray(10**7))\n", codecrafter.StatusMemoryLimit, false},
				{"print('fine')", codecrafter.StatusSucceeded, false},
			} {
				if fallback && tc.reportOnly {
					continue
				}
				res := run(t, d, codecrafter.RunRequest{Language: "python", Code: tc.code, MemoryLimitMB: 64})
				if res.Status != tc.want {
					t.Errorf("status %s, want %s:\n%s", res.Status, tc.want, describe(res))
				}
			}
		})
	}
}

// TestOOMLogged checks the engine's OOM event log, which finds a memory
// kill that the container's state misses, and only a memory kill.
func TestOOMLogged(t *testing.T) {
	t.Parallel()
	d, _ := newRunner(t, sandbox.Config{})
	started := func(args ...string) (id, since string) {
		t.Helper()
		out, err := execOutput("docker", append([]string{"run", "-d", "--network", "none", "--memory", "32m", "--memory-swap", "32m",
			"--entrypoint", "python3", "codecrafter/python", "-c"}, args...)...)
		id = strings.TrimSpace(out)
		if err != nil || id == "" {
			t.Fatalf("docker run: %v %s", err, out)
		}
		t.Cleanup(func() { _, _ = execOutput("docker", "rm", "-f", id) })
		since, err = execOutput("docker", "inspect", "-f", "{{.State.StartedAt}}", id)
		if err != nil {
			t.Fatal(err)
		}
		return id, strings.TrimSpace(since)
	}
	ctx := testenv.Context(t, time.Minute)
	// The bomb allocates only when told, after `docker run -d` returned:
	// the engine's shim watches a container's memory cgroup for OOMs only
	// once its start is done, and a bomb that is its box's first program
	// can fill 32 MB before then on a loaded machine (no OOM event, seen
	// in CI). Boxes run programs only after their start, so only this
	// test has that race.
	bomb, since := started("import signal\nsignal.signal(signal.SIGUSR1, lambda *_: None)\nprint('ready', flush=True)\nsignal.pause()\n" +
		"a = []\nwhile True: a.append(bytearray(10**7))")
	awaitLine(ctx, t, bomb, "ready")
	if out, err := execOutput("docker", "kill", "-s", "USR1", bomb); err != nil {
		t.Fatalf("docker kill -s USR1: %v %s", err, out)
	}
	if out, err := execOutput("docker", "wait", bomb); err != nil || strings.TrimSpace(out) != "137" {
		t.Fatalf("memory bomb: exit %q, %v", out, err)
	}
	if !d.OOMLogged(ctx, bomb, since) {
		t.Error("the memory bomb's OOM event was not found")
	}
	sleeper, since := started("import time; time.sleep(600)")
	if out, err := execOutput("docker", "kill", sleeper); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	if out, err := execOutput("docker", "wait", sleeper); err != nil || strings.TrimSpace(out) != "137" {
		t.Fatalf("killed sleeper: exit %q, %v", out, err)
	}
	if d.OOMLogged(ctx, sleeper, since) {
		t.Error("a plain SIGKILL was taken for a memory kill")
	}
}

// awaitLine waits for a line of a container's output.
func awaitLine(ctx context.Context, t *testing.T, id, line string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "docker", "logs", "-f", id)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if sc.Text() == line {
			return
		}
	}
	t.Fatalf("container %s ended without printing %q (%v)", id, line, ctx.Err())
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// assertGone checks the container is removed, once d's background
// removals are done, and none of its processes is left on the host
// (cgroup paths name the container).
func assertGone(t *testing.T, d *sandbox.Docker, id string) {
	t.Helper()
	if id == "" {
		t.Fatal("no container id")
	}
	d.WaitRemovals()
	if out, err := execOutput("docker", "ps", "-aq", "--no-trunc", "--filter", "id="+id); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("container %s still exists (%q, %v)", id[:12], out, err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), id) {
			t.Errorf("process %s of container %s survived", filepath.Base(filepath.Dir(p)), id[:12])
		}
	}
}

func freeBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// registered reports whether the engine has an OCI runtime registered.
func registered(t *testing.T, runtime string) bool {
	t.Helper()
	out, err := execOutput("docker", "info", "--format", "{{range $name, $_ := .Runtimes}}{{$name}} {{end}}")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(" "+out, " "+runtime+" ")
}
