#!/usr/bin/env bash
# Makes the bundle that travels to the GPU machine with the tracked files (see README, "On a GPU").
# The GPU machine has no Node, no network and no npm; scripts/gpu/run.sh there needs:
#   node.xz          this machine's Node binary, xz-compressed
#   modules.tar.xz   node_modules/ folders the GPU stages import (scripts/gpu/closure.mjs: the runtime
#                    dependencies without the build tools, ava and tsx for the CUDA tests, and the
#                    Node-API headers that node-api-headers and node-addon-api hold)
#   dist.tar.xz      the compiled TypeScript (dist/), which bin/vilref.js runs
#   manifest.json    what is in it: Node version, packages, sizes, compression level, commit
# Prints the sizes and fails when the tracked files plus the bundle exceed the carry limit.
#
# Usage: scripts/gpu/bundle.sh [--out DIR] [--fast] [--limit MIB] [--check]
#   --out DIR    where to write (default .carry, git-ignored)
#   --fast       xz level 0 instead of 6 (seconds instead of minutes; larger; the CI dry run uses it)
#   --limit MIB  the carry limit to check against (default 60; the device takes 64 MiB in all)
#   --check      only measure the bundle already in DIR against the limit
# Needs: node, xz, tar, a set-up checkout (npm run setup: node_modules/ and dist/).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT_DIR="$ROOT/.carry"
LEVEL=6
LIMIT_MIB=60
CHECK_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT_DIR=$2; shift 2 ;;
    --fast) LEVEL=0; shift ;;
    --limit) LIMIT_MIB=$2; shift 2 ;;
    --check) CHECK_ONLY=1; shift ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bundle: unknown argument $1" >&2; exit 2 ;;
  esac
done

say() { echo "bundle: $*" >&2; }
for tool in node xz tar; do
  command -v "$tool" >/dev/null || { say "needs $tool on PATH"; exit 1; }
done
[ -f "$ROOT/dist/index.js" ] || { say "dist/ is missing: run npm run setup first"; exit 1; }
[ -d "$ROOT/node_modules" ] || { say "node_modules/ is missing: run npm install first"; exit 1; }

mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
started=$(date +%s)
XZ=(xz -T0 "-$LEVEL" -c)

if [ "$CHECK_ONLY" = 1 ]; then
  for f in node.xz modules.tar.xz dist.tar.xz; do
    [ -f "$OUT_DIR/$f" ] || { say "--check: $OUT_DIR/$f is missing"; exit 1; }
  done
  mapfile -t PACKAGES < <(node -e '
    for (const p of require(process.argv[1]).packages) console.log("node_modules/" + p)' "$OUT_DIR/manifest.json")
else
# 1. Node (reused when the same binary was compressed at the same level before)
NODE_BIN=$(readlink -f "$(command -v node)")
node_key="$(node --version) $(stat -c '%s %Y' "$NODE_BIN") level $LEVEL"
if [ -f "$OUT_DIR/node.xz" ] && [ "$(cat "$OUT_DIR/node.key" 2>/dev/null)" = "$node_key" ]; then
  say "node.xz is current ($node_key)"
else
  say "compressing $NODE_BIN ($(node --version)) at xz -$LEVEL"
  "${XZ[@]}" "$NODE_BIN" >"$OUT_DIR/node.xz.tmp"
  mv "$OUT_DIR/node.xz.tmp" "$OUT_DIR/node.xz"
  echo "$node_key" >"$OUT_DIR/node.key"
fi

# 2. node_modules: the closure of what the GPU stages import
mapfile -t PACKAGES < <(node "$ROOT/scripts/gpu/closure.mjs" "$ROOT")
say "packing ${#PACKAGES[@]} node_modules folders"
(cd "$ROOT" && tar --owner=0 --group=0 -cf - "${PACKAGES[@]}") | "${XZ[@]}" >"$OUT_DIR/modules.tar.xz.tmp"
mv "$OUT_DIR/modules.tar.xz.tmp" "$OUT_DIR/modules.tar.xz"

# 3. dist/
(cd "$ROOT" && tar --owner=0 --group=0 -cf - dist) | "${XZ[@]}" >"$OUT_DIR/dist.tar.xz.tmp"
mv "$OUT_DIR/dist.tar.xz.tmp" "$OUT_DIR/dist.tar.xz"
fi

# 4. what travels besides the bundle: tracked and untracked-but-not-ignored files
tracked_bytes=0
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  tracked_bytes=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}')
  commit=$(git -C "$ROOT" rev-parse HEAD)
  dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no | wc -l)
else
  commit=unknown
  dirty=0
fi

size() { stat -c %s "$OUT_DIR/$1"; }
bundle_bytes=$(($(size node.xz) + $(size modules.tar.xz) + $(size dist.tar.xz)))
total=$((tracked_bytes + bundle_bytes))
limit=$((LIMIT_MIB * 1024 * 1024))

[ "$CHECK_ONLY" = 1 ] || node - "$OUT_DIR/manifest.json" "$(node --version)" "$LEVEL" "$commit" "$dirty" \
  "$tracked_bytes" "$(size node.xz)" "$(size modules.tar.xz)" "$(size dist.tar.xz)" "${PACKAGES[@]}" <<'EOF'
const [file, nodeVersion, level, commit, dirty, tracked, nodeXz, modules, dist, ...packages] = process.argv.slice(2);
const manifest = {
  format: 1,
  createdAt: new Date().toISOString(),
  node: nodeVersion,
  xzLevel: Number(level),
  commit,
  uncommittedChanges: Number(dirty),
  bytes: {
    tracked: Number(tracked),
    "node.xz": Number(nodeXz),
    "modules.tar.xz": Number(modules),
    "dist.tar.xz": Number(dist),
  },
  packages: packages.map((p) => p.replace(/^node_modules\//, "")),
};
require("node:fs").writeFileSync(file, JSON.stringify(manifest, null, 2) + "\n");
EOF

mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "bundle: $OUT_DIR ($(($(date +%s) - started)) s, xz -$LEVEL)"
printf '  %-16s %s\n' node.xz "$(mib "$(size node.xz)")" modules.tar.xz "$(mib "$(size modules.tar.xz)")" \
  dist.tar.xz "$(mib "$(size dist.tar.xz)")" "tracked files" "$(mib "$tracked_bytes")" "carry in all" "$(mib "$total")"
if [ "$total" -gt "$limit" ]; then
  echo "bundle: the carry would be $(mib "$total"), over the limit of $LIMIT_MIB MiB" >&2
  exit 1
fi
echo "bundle: within the $LIMIT_MIB MiB limit"
