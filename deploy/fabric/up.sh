#!/usr/bin/env bash
# Start one harperbq sync container per Harper Fabric instance (docs/operations.md, "On Harper
# Fabric"). Each container talks to its own instance's Operations API URL, under an explicit
# node name. Usage:
#   HARPERBQ_HARPER_PASSWORD_FILE=./harper-password deploy/fabric/up.sh [instances-file]
# Environment:
#   CONTAINER_ENGINE           docker or podman (default: docker if installed, else podman)
#   HARPERBQ_IMAGE             image to run (default: harperbq:latest, built from deploy/container)
#   HARPERBQ_CONFIG_FILE       config.yaml mounted read-only (default: ./config.yaml)
#   HARPERBQ_HARPER_USERNAME   the sync's Harper user (else harper.username of the config)
#   HARPERBQ_HARPER_PASSWORD or HARPERBQ_HARPER_PASSWORD_FILE        (required)
#   HARPERBQ_CONTROL_TOKEN   or HARPERBQ_CONTROL_TOKEN_FILE          (optional)
#   HARPERBQ_BIGQUERY_CREDENTIALS_FILE  service-account key mounted read-only (optional)
# Secrets reach the containers by variable NAME only (`--env NAME`): never on a command line,
# never printed.
set -euo pipefail

die() { echo "up.sh: $*" >&2; exit 2; }

instances=${1:-deploy/fabric/instances}
[ -f "$instances" ] || die "no instances file $instances (copy deploy/fabric/instances.example)"

engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1; then engine=docker
  elif command -v podman >/dev/null 2>&1; then engine=podman
  else die "no container engine: install docker or podman, or set CONTAINER_ENGINE"; fi
fi
command -v "$engine" >/dev/null 2>&1 || die "CONTAINER_ENGINE=$engine is not on PATH"

image=${HARPERBQ_IMAGE:-harperbq:latest}
config=${HARPERBQ_CONFIG_FILE:-./config.yaml}
[ -f "$config" ] || die "no config file $config (set HARPERBQ_CONFIG_FILE)"
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")

# secret NAME: take $NAME, else the file named by $NAME_FILE; export it for `--env NAME`.
secret() {
  local name=$1 file_var="$1_FILE"
  local file=${!file_var:-}
  if [ -z "${!name:-}" ] && [ -n "$file" ]; then
    [ -r "$file" ] || die "$file_var names an unreadable file: $file"
    export "$name=$(tr -d '\r\n' <"$file")"
  fi
  [ -n "${!name:-}" ]
}
secret HARPERBQ_HARPER_PASSWORD \
  || die "set HARPERBQ_HARPER_PASSWORD or HARPERBQ_HARPER_PASSWORD_FILE (the sync's Harper password)"
env_args=(--env HARPERBQ_HARPER_PASSWORD)
if secret HARPERBQ_CONTROL_TOKEN; then env_args+=(--env HARPERBQ_CONTROL_TOKEN); fi
if [ -n "${HARPERBQ_HARPER_USERNAME:-}" ]; then env_args+=(--env HARPERBQ_HARPER_USERNAME); fi
mounts=(--volume "$config:/etc/harperbq/config.yaml:ro")
if [ -n "${HARPERBQ_BIGQUERY_CREDENTIALS_FILE:-}" ]; then
  [ -r "$HARPERBQ_BIGQUERY_CREDENTIALS_FILE" ] \
    || die "HARPERBQ_BIGQUERY_CREDENTIALS_FILE is unreadable: $HARPERBQ_BIGQUERY_CREDENTIALS_FILE"
  mounts+=(--volume "$HARPERBQ_BIGQUERY_CREDENTIALS_FILE:/etc/harperbq/bigquery.json:ro")
  env_args+=(--env HARPERBQ_BIGQUERY_CREDENTIALS=/etc/harperbq/bigquery.json)
fi

# Read and check every line before starting anything: a typo must not leave half a cluster.
names=() urls=()
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
  lineno=$((lineno + 1))
  line=${line%%#*}
  read -r name url extra <<<"$line" || true
  [ -z "${name:-}" ] && continue
  where="$instances:$lineno"
  [ -n "${url:-}" ] && [ -z "${extra:-}" ] || die "$where: write 'name https://host:port'"
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "$where: node name '$name': use letters, digits, . _ -"
  case $url in
    https://*) ;;
    http://*) die "$where: $url is http://: Harper Fabric instances are reached over TLS, write https://" ;;
    *) die "$where: '$url' is not an https:// Operations API URL" ;;
  esac
  [[ $url =~ ^https://[^/@[:space:]]+/?$ ]] || die "$where: '$url': only https://host:port (no user, no path)"
  for seen in "${names[@]}"; do [ "$seen" != "$name" ] || die "$where: node name '$name' twice"; done
  names+=("$name") urls+=("${url%/}")
done <"$instances"
[ "${#names[@]}" -gt 0 ] || die "$instances lists no instance"

for i in "${!names[@]}"; do
  name=${names[$i]} url=${urls[$i]}
  "$engine" rm --force "harperbq-$name" >/dev/null 2>&1 || true
  "$engine" run --detach --name "harperbq-$name" --restart unless-stopped \
    --env "HARPERBQ_NODE_NAME=$name" --env "HARPERBQ_HARPER_URL=$url" \
    "${env_args[@]}" "${mounts[@]}" "$image" >/dev/null
  echo "started harperbq-$name -> $url"
done
