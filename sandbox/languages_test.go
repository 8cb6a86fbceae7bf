package sandbox_test

import (
	"strings"
	"testing"

	"github.com/codecrafter/codecrafter"
	"github.com/codecrafter/codecrafter/sandbox"
)

// program is one language's test programs: hello prints "hello <stdin>"
// and exits 3; broken does not compile (or, interpreted, fails to parse).
type program struct {
	hello, broken string
}

var programs = map[string]program{
	"python": {
		hello:  "import sys\nprint('hello', sys.stdin.read().strip())\nsys.exit(3)\n",
		broken: "def f(:\n",
	},
	"javascript": {
		hello:  "const s = require('fs').readFileSync(0, 'utf8').trim();\nconsole.log('hello ' + s);\nprocess.exit(3);\n",
		broken: "function f( {\n",
	},
	"typescript": {
		hello:  "const s: string = require('fs').readFileSync(0, 'utf8').trim();\nconsole.log('hello ' + s);\nprocess.exit(3);\n",
		broken: "const n: number = 'not a number';\n",
	},
	"go": {
		hello:  "package main\n\nimport (\n\t\"fmt\"\n\t\"io\"\n\t\"os\"\n\t\"strings\"\n)\n\nfunc main() {\n\tb, _ := io.ReadAll(os.Stdin)\n\tfmt.Println(\"hello\", strings.TrimSpace(string(b)))\n\tos.Exit(3)\n}\n",
		broken: "package main\n\nfunc main() { undefined() }\n",
	},
	"c": {
		hello:  "#include <stdio.h>\nint main(void) {\n  char s[64] = {0};\n  scanf(\"%63s\", s);\n  printf(\"hello %s\\n\", s);\n  return 3;\n}\n",
		broken: "int main(void) { return undefined_thing; }\n",
	},
	"cpp": {
		hello:  "#include <iostream>\n#include <string>\nint main() {\n  std::string s;\n  std::cin >> s;\n  std::cout << \"hello \" << s << std::endl;\n  return 3;\n}\n",
		broken: "int main() { std::cout << 1; }\n",
	},
	"java": {
		hello:  "import java.util.Scanner;\n\npublic class Main {\n  public static void main(String[] args) {\n    String s = new Scanner(System.in).next();\n    System.out.println(\"hello \" + s);\n    System.exit(3);\n  }\n}\n",
		broken: "public class Main { void f() { int x = \"s\"; } }\n",
	},
	"ruby": {
		hello:  "puts \"hello #{STDIN.read.strip}\"\nexit 3\n",
		broken: "def f(\n",
	},
	"rust": {
		hello:  "use std::io::Read;\n\nfn main() {\n    let mut s = String::new();\n    std::io::stdin().read_to_string(&mut s).unwrap();\n    println!(\"hello {}\", s.trim());\n    std::process::exit(3);\n}\n",
		broken: "fn main() { let x: i32 = \"s\"; }\n",
	},
	"bash": {
		hello:  "read s\necho \"hello $s\"\nexit 3\n",
		broken: "if then fi (\n",
	},
}

// TestLanguages runs hello world with stdin and an exit code, and a
// broken program, in every built-in language.
func TestLanguages(t *testing.T) {
	t.Parallel()
	d, _ := newRunner(t, sandbox.Config{})
	for _, l := range sandbox.DefaultRuntimes().Languages() {
		p, ok := programs[l.ID]
		if !ok {
			t.Errorf("no test program for %s", l.ID)
			continue
		}
		t.Run(l.ID, func(t *testing.T) {
			t.Parallel()
			res := run(t, d, codecrafter.RunRequest{Language: l.ID, Code: p.hello, Stdin: "world\n"})
			if res.Status != codecrafter.StatusFailed || res.ExitCode == nil || *res.ExitCode != 3 ||
				strings.TrimSpace(res.Stdout) != "hello world" {
				t.Errorf("hello: want FAILED, exit 3, stdout \"hello world\"; got %s", describe(res))
			}
			if res.Duration <= 0 {
				t.Errorf("hello: duration %v", res.Duration)
			}
			if (l.Compile != nil) != (res.CompileOutput != nil) {
				t.Errorf("hello: compile output %v for a language with compile step %v", res.CompileOutput, l.Compile)
			}

			res = run(t, d, codecrafter.RunRequest{Language: l.ID, Code: p.broken})
			if l.Compile == nil {
				if res.Status != codecrafter.StatusFailed || res.Stderr == "" {
					t.Errorf("broken: want FAILED with stderr; got %s", describe(res))
				}
				return
			}
			if res.Status != codecrafter.StatusCompileError || res.CompileOutput == nil || *res.CompileOutput == "" ||
				res.ExitCode != nil || res.Stdout != "" {
				t.Errorf("broken: want COMPILE_ERROR with compiler output; got %s", describe(res))
			}
		})
	}
}

func TestSucceeds(t *testing.T) {
	t.Parallel()
	d, _ := newRunner(t, sandbox.Config{})
	res := run(t, d, codecrafter.RunRequest{Language: "PY", Code: "print('ok')"}) // aliases, any case
	if res.Status != codecrafter.StatusSucceeded || res.ExitCode == nil || *res.ExitCode != 0 || res.Stdout != "ok\n" {
		t.Errorf("got %s", describe(res))
	}
	if _, err := d.Run(t.Context(), codecrafter.RunRequest{Language: "cobol", Code: "x"}, nil); !codecrafter.IsCode(err, codecrafter.EINVALID) {
		t.Errorf("unknown language: got %v, want BAD_USER_INPUT", err)
	}
}
