#!/usr/bin/env bash
# The web runtime's tests (tests/web): Node.js + npm (Debian's, unless a newer node is
# already installed), Debian's chromium (driven headless by playwright-core; never
# `npx playwright install`), and runtime/web's npm packages from its lock file.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# npm ci: exactly the versions in package-lock.json (@litertjs/core 2.5.3; playwright-core 1.61.1,
# the newest that runs on Debian bookworm's Node 18);
# the tarballs are cached in ~/.npm.
(cd runtime/web && npm ci --no-audit --no-fund --loglevel=error)
