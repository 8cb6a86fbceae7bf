// Package smoke is the journey `make test-stack` takes through a running
// docker-compose stack, through its load balancer only. Its test is
// behind the `stack` build tag (it needs the stack up):
//
//	SMOKE_URL=http://127.0.0.1:18080 SMOKE_PROJECT=ccsmoke go test -tags stack -count=1 -v ./deploy/smoke/
//
// See deploy/stack.sh, which brings the stack up, runs it and takes it down.
package smoke
