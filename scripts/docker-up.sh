#!/usr/bin/env bash
# Makes goalflow's Docker sandbox usable on this machine, and does nothing that is done
# already: installs the engine (Debian's docker.io) and debootstrap where missing,
# starts dockerd when no engine answers, and builds the sandbox image only when the
# engine does not have it; then builds the goal runner image of this checkout, which
# the goal-docker deployment runs in, when the engine lacks it or has it from other
# sources (`goalflow image build`: 15-25 s when only goalflow changed, 75-105 s from
# scratch). Run as root (or with sudo available), e.g. `make docker`.
#   GOALFLOW      the goalflow command (default: .venv/bin/goalflow)
#   IMAGE         the image to make sure of (default: goalflow-sandbox:bookworm)
#   RUNNER_IMAGE  the runner image to build (default: goalflow-runner:latest; empty: none)
set -euo pipefail
GOALFLOW=${GOALFLOW:-.venv/bin/goalflow}
IMAGE=${IMAGE:-goalflow-sandbox:bookworm}
RUNNER_IMAGE=${RUNNER_IMAGE-goalflow-runner:latest}
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    echo "docker-up: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    echo "docker-up: starting dockerd (log: /var/log/dockerd.log)"
    $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || {
        echo "docker-up: dockerd did not start; see /var/log/dockerd.log" >&2
        tail -n 20 /var/log/dockerd.log >&2 || true
        exit 1
    }
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "docker-up: engine running, image $IMAGE present"
else
    echo "docker-up: building $IMAGE (about a minute)"
    $SUDO "$GOALFLOW" sandbox build --image "$IMAGE"
fi

if [ -n "$RUNNER_IMAGE" ]; then
    # `image check` also fails for an image built from other sources than this checkout:
    # a runner image from an older checkout would run old code.
    if "$GOALFLOW" image check --tag "$RUNNER_IMAGE"; then
        echo "docker-up: runner image $RUNNER_IMAGE is current"
    else
        echo "docker-up: building the goal runner image $RUNNER_IMAGE on $IMAGE"
        "$GOALFLOW" image build --base "$IMAGE" --tag "$RUNNER_IMAGE" --project "$(pwd)"
    fi
fi
