#!/bin/sh
# The image's entrypoint: each variable NAME listed below may be given as NAME_FILE, the path of
# a file holding its value (a compose or Kubernetes secret), so no secret sits in the compose
# file, an env file or `docker inspect`. sigvault wipes the secret variables from its own
# environment once read. Then runs `sigvault "$@"`.
set -eu
for name in SIGVAULT_ROOT_TOKEN SIGVAULT_STORE__URL SIGVAULT_RATELIMIT__REDIS_URL \
  AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN; do
  eval "file=\${${name}_FILE:-}"
  if [ -n "$file" ]; then
    [ -r "$file" ] || { echo "sigvault-entrypoint: ${name}_FILE=$file is not readable" >&2; exit 1; }
    value=$(cat "$file")
    export "$name=$value"
    unset "${name}_FILE"
  fi
done
exec /usr/local/bin/sigvault "$@"
