#!/usr/bin/env bash
# The docker-compose stack (docker-compose.yml): two API replicas behind
# nginx, two workers behind the Docker API proxy, store, Redis, RabbitMQ,
# Prometheus. Used by the Makefile:
#
#   deploy/stack.sh up     .env with fresh secrets when there is none, build, start
#   deploy/stack.sh down   stop and remove it, volumes included
#   deploy/stack.sh test   a throwaway stack (project ccsmoke, ports 18080/19090):
#                          up, wait for health, the smoke journey through the
#                          balancer (deploy/smoke), then down -v, also on failure
#
# Needs the sandbox images and their Debian base on the engine
# (`make images`); no container registry is used. The images' apt-get
# steps need the Debian mirror, like the sandbox image build.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

# Static binaries for the images (bin/stack is their build context): they
# run on bookworm whatever the build host's glibc.
binaries() {
	mkdir -p bin/stack
	CGO_ENABLED=0 $GO build -trimpath -ldflags='-s -w' -o bin/stack/codecrafter ./cmd/codecrafter
	CGO_ENABLED=0 $GO build -trimpath -ldflags='-s -w' -o bin/stack/ccbox ./cmd/ccbox
	chmod 0755 bin/stack/codecrafter bin/stack/ccbox # the images run them as uid 10001
}

base_image() {
	local tag
	tag=$(docker images codecrafter/base --format '{{.Tag}}' | head -n1)
	if [[ -z $tag ]]; then
		echo "no codecrafter/base image: run make images first" >&2
		return 1
	fi
	echo "codecrafter/base:$tag"
}

# write_env FILE PROJECT [extra lines...]: fresh secrets, never committed.
write_env() (
	local file=$1 project=$2
	shift 2
	umask 077 # a subshell: the binaries built later stay 0755
	{
		echo "COMPOSE_PROJECT_NAME=$project"
		echo "CODECRAFTER_BASE_IMAGE=$(base_image)"
		echo "CODECRAFTER_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')"
		echo "RABBITMQ_PASSWORD=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
		echo "GRAFANA_ADMIN_PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
		for line in "$@"; do echo "$line"; done
	} >"$file"
)

elapsed() { echo "$(( $(date +%s) - start ))s"; }

case "${1:-}" in
up)
	if [[ ! -f .env ]]; then
		write_env .env codecrafter
		echo ".env written with fresh secrets (keep it; it is gitignored)"
	fi
	binaries
	docker-compose build
	docker-compose up -d
	docker-compose ps
	echo "API (through the balancer): http://127.0.0.1:$(sed -n 's/^CODECRAFTER_HTTP_PORT=//p' .env | grep . || echo 8080)/"
	;;
down)
	docker-compose down -v --remove-orphans
	;;
test)
	start=$(date +%s)
	project=${SMOKE_PROJECT:-ccsmoke}
	port=${SMOKE_HTTP_PORT:-18080}
	prom=${SMOKE_PROMETHEUS_PORT:-19090}
	envfile=$(mktemp)
	compose=(docker-compose --env-file "$envfile" -p "$project")
	cleanup() {
		local rc=$?
		if [[ $rc != 0 ]]; then
			echo "--- test-stack failed: the stack's state and recent logs"
			"${compose[@]}" ps || true
			"${compose[@]}" logs --no-color --tail 40 || true
		fi
		echo "--- down -v ($(elapsed))"
		"${compose[@]}" down -v --remove-orphans --timeout 10 || true
		# Sandboxes a killed worker left (stopped workers remove their own).
		docker ps -a --filter label=org.codecrafter.sandbox --format '{{.ID}} {{.Label "org.codecrafter.sandbox"}}' |
			awk -v p="$project-" 'index($2, p) == 1 {print $1}' | xargs -r docker rm -f >/dev/null || true
		rm -f "$envfile"
		echo "test-stack: $([[ $rc == 0 ]] && echo passed || echo FAILED) in $(elapsed)"
		exit $rc
	}
	trap cleanup EXIT
	write_env "$envfile" "$project" "CODECRAFTER_HTTP_PORT=$port" "PROMETHEUS_PORT=$prom" \
		"CODECRAFTER_SANDBOX_INSTANCE=$project"
	echo "--- binaries ($(elapsed))"
	binaries
	echo "--- build images ($(elapsed))"
	# (the legacy builder's deprecation notice, once per image, is dropped)
	"${compose[@]}" build -q 2>&1 | { grep -v -e 'DEPRECATED: The legacy builder' -e 'buildx' -e '^$' || true; }
	echo "--- up ($(elapsed))"
	"${compose[@]}" down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true # a stack a killed run left
	"${compose[@]}" up -d
	echo "--- smoke journey ($(elapsed))"
	SMOKE_URL="http://127.0.0.1:$port" SMOKE_PROMETHEUS="http://127.0.0.1:$prom" SMOKE_PROJECT="$project" \
		$GO test -tags stack -count=1 -v -timeout 15m ./deploy/smoke/
	;;
*)
	echo "usage: deploy/stack.sh up|down|test" >&2
	exit 2
	;;
esac
