// Package sandbox runs untrusted code in hardened, single-use Docker
// containers: the runtimes registry (LoadRuntimes), local image builds
// without a registry (BuildImages), and the runner with its warm pool
// (NewDocker), which implements codecrafter.Sandbox.
//
// Each run gets a fresh container: no network, read-only root, a
// size-capped tmpfs work dir (/box, the only place allowed to exec) and a
// noexec /tmp, uid 65534, no capabilities, no-new-privileges, Docker's
// default seccomp rules for the native ABI only (no int 0x80; seccomp.go),
// pids/memory(+swap)/CPU/file limits, tini as init, an
// empty environment and no log storage. Inside, ccbox (cmd/ccbox) takes
// the job on stdin, compiles and runs it and reports frames (package
// wire) on stdout; the runner enforces wall clock and output cap itself,
// detects memory kills (the box's memory cgroup OOM kill count, which
// ccbox reports with a clean exit under runc, else State.OOMKilled) and
// always force-removes the container, in the background once the result
// is known. Containers are labelled with their runner process, so a
// starting runner sweeps only what dead runners left (owner.go).
//
// Images: BuildImages debootstraps a Debian bookworm minbase, imports it,
// adds each language's packages (Dockerfile FROM base, apt-get over the
// default bridge network) and then ccbox as a last small layer. Every
// image is named or labelled with a hash of its recipe, so current images
// are skipped and changing ccbox rebuilds only the last layers.
//
// Runtime: crun when the engine has it registered (cheaper container
// start and removal than runc, same hardening: see Docker.Runtime), else
// the engine's default.
//
// gVisor: set Config.OCIRuntime to "runsc" after registering it with the
// engine (apt-get install runsc; /etc/docker/daemon.json:
// {"runtimes":{"runsc":{"path":"/usr/bin/runsc","runtimeArgs":["--network=none","--platform=ptrace"]}}}
// and a dockerd restart). The pids limit then defaults to 256, since
// gVisor's own threads count against it.
package sandbox
