#!/bin/sh
# Regenerates src/generated/tflite_schema.js, the TFLite schema's FlatBuffers accessors that
# src/flatbuffer.js reads models with (run from anywhere; needs flatc and npx):
#
#   git -C tflite-micro show 4bbdef5f8aee54c3435cb46b4408865612f2ffb0:tensorflow/lite/schema/schema.fbs > /tmp/schema.fbs
#   runtime/web/tools/generate_tflite_schema.sh /tmp/schema.fbs
#
# schema.fbs: TFLite's schema as the repository tensorflow/tflite-micro held it at commit
# 4bbdef5f8aee (2023-09-29, synced from TensorFlow), the newest one Debian 12's flatc 2.0.8
# (apt-get install flatbuffers-compiler) parses: later schemas put attributes on enum values
# ("REDUCE_WINDOW = 205 (deprecated)"), which flatc learnt after 2.0.8. Tables only ever gain
# fields at their end, so these accessors read models written with any later schema.
# flatc 2.0.8 emits TypeScript only (--ts; --ts-flat-files: one module, no relative imports);
# tsc 5.9.3 (npm typescript, fetched by npx, not a dependency of the package) type-checks it
# against the pinned npm flatbuffers library and emits the ES2020 module that is committed.
set -eu
schema=${1:?usage: $0 path/to/schema.fbs (see the comment at the top of this script)}
expected_sha256=0dd6774bad6007256c6c5c27d1bb70b90cd30f3e9e08c8a7b5a7c20fb6f9b254
web=$(cd "$(dirname "$0")/.." && pwd)
output="$web/src/generated/tflite_schema.js"

echo "$expected_sha256  $schema" | sha256sum --check --quiet - ||
  { echo "$schema is not the schema.fbs this script documents (sha256 differs)" >&2; exit 1; }
[ "$(flatc --version)" = "flatc version 2.0.8" ] ||
  { echo "expected flatc version 2.0.8, found: $(flatc --version)" >&2; exit 1; }
[ -d "$web/node_modules/flatbuffers" ] || { echo "run npm ci in $web first" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flatc --ts --ts-flat-files -o "$work" "$schema"
ln -s "$web/node_modules" "$work/node_modules"      # tsc resolves 'flatbuffers' from here
(cd "$work" && npx --yes -p typescript@5.9.3 tsc --target es2020 --module es2020 --moduleResolution node \
  --strict --skipLibCheck --outDir js schema_generated.ts)
{
  echo "// GENERATED, do not edit: runtime/web/tools/generate_tflite_schema.sh wrote this file from"
  echo "// TFLite's schema.fbs (tensorflow/tflite-micro 4bbdef5f8aee, sha256 ${expected_sha256})"
  echo "// with flatc 2.0.8 --ts --ts-flat-files and tsc 5.9.3 --target es2020 --module es2020."
  echo "// The schema and so this code: Copyright The TensorFlow Authors, Apache License 2.0."
  cat "$work/js/schema_generated.js"
} > "$output"
echo "wrote $output ($(wc -c < "$output") bytes)"
