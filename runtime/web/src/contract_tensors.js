/**
 * The contract's user-facing tensors (contract version 3), as runtime/contract_tensors.py has
 * them: the tensor name of each role, the description of the model's input, the bottleneck
 * adapter, and the rule a one-hot label row follows. Versions 1 and 2 used fixed names and an
 * image input; `fixedNames` gives those. Signature keys and state names never change.
 */

// Roles of the user-facing tensors, in the order of the metadata's `names`.
export const NAME_ROLES = ['input', 'bottleneck', 'label', 'loss', 'output'];
// Which roles share a signature (so must differ).
const ROLES_BY_SIGNATURE = {infer: ['input', 'output'], load: ['input', 'bottleneck'],
                            train: ['bottleneck', 'label', 'loss'], train_images: ['input', 'label', 'loss']};
// A name any TFLite API, Kotlin map, JS object and JSON key carries unchanged.
const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;

export const IMAGE_KIND = 'image', TENSOR_KIND = 'tensor';
export const INPUT_KINDS = [IMAGE_KIND, TENSOR_KIND];
export const BOTTLENECK_ADAPTERS = ['flatten', 'mean', 'max'];

// One-hot (or soft) labels: rows >= 0 summing to 1 within this (the cross-entropy gradient
// softmax - target is the true gradient only for such rows; the tolerance admits float32
// rounding and label smoothing done by the app). tests/golden/contract_v3.json holds it.
export const ONE_HOT_SUM_TOLERANCE = 1e-3;

/** The names of contract versions 1 and 2 (only the output varied: probabilities or predictions). */
export function fixedNames(output) {
  return Object.freeze({input: 'image', bottleneck: 'bottleneck', label: 'label', loss: 'loss', output});
}

/** Version 3's part of a metadata record, read (shapes, types) but not yet checked for meaning. */
export function version3Fields(record, {requireInt, requireString}) {
  const names = record.names;
  if (names === null || typeof names !== 'object' || Array.isArray(names) ||
      Object.keys(names).sort().join() !== [...NAME_ROLES].sort().join()) {
    throw new TypeError(`names must give exactly the roles ${NAME_ROLES.join(', ')}`);
  }
  const spec = record.input;
  if (spec === null || typeof spec !== 'object') throw new TypeError('input: expected an object');
  const adapter = record.bottleneck_adapter ?? null;
  return {
    names: Object.freeze(Object.fromEntries(NAME_ROLES.map((role) => [role, requireString(names[role], `names.${role}`)]))),
    input: Object.freeze({kind: requireString(spec.kind, 'input kind'), dtype: requireString(spec.dtype, 'input dtype'),
                          shape: Object.freeze(spec.shape.map((d) => requireInt(d, 'input shape', 0))),
                          range: optionalRange(spec.range, 'input range'), baseRange: optionalRange(spec.base_range, 'input base_range')}),
    bottleneckAdapter: adapter === null ? null : Object.freeze({
      kind: requireString(adapter.kind, 'bottleneck_adapter kind'),
      cutShape: Object.freeze(adapter.cut_shape.map((d) => requireInt(d, 'bottleneck_adapter cut_shape', 0)))}),
  };
}

function optionalRange(value, what) {
  if (value === null || value === undefined) return null;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'number')) throw new TypeError(`${what}: expected [low, high], got ${JSON.stringify(value)}`);
  return Object.freeze([...value]);
}

const rangeIsValid = (value) => value.length === 2 && value.every(Number.isFinite) && value[0] < value[1];

/** What is wrong with a set of names ([] when nothing), as contract_tensors.names_problems says it. */
export function namesProblems(names, stateNames = []) {
  const problems = [];
  for (const role of NAME_ROLES) {
    if (!NAME_PATTERN.test(names[role])) {
      problems.push(`${role} name ${JSON.stringify(names[role])} is not a name (a letter or _, then up to 63 letters, digits, _ . -)`);
    }
  }
  for (const [signature, roles] of Object.entries(ROLES_BY_SIGNATURE)) {
    roles.forEach((role, index) => roles.slice(index + 1).forEach((other) => {
      if (names[role] === names[other]) problems.push(`${role} and ${other} are both named '${names[role]}' in '${signature}'`);
    }));
  }
  const clashes = [...new Set(NAME_ROLES.map((role) => names[role]).filter((name) => stateNames.includes(name)))].sort();
  if (clashes.length) problems.push(`${clashes.map((name) => `'${name}'`).join(', ')} is also a state variable's name`);
  return problems;
}

/** The checks of a version 3 record: names, output, input, bottleneck adapter. */
export function version3Problems(metadata) {
  const problems = namesProblems(metadata.names, metadata.state.map((entry) => entry.name));
  if (metadata.names.output !== metadata.output) problems.push(`output '${metadata.output}' is not names.output '${metadata.names.output}'`);
  const input = metadata.input;
  if (!INPUT_KINDS.includes(input.kind)) problems.push(`input kind '${input.kind}'`);
  if (!input.shape.length || input.shape.some((d) => d < 1)) problems.push(`input shape [${input.shape}]`);
  for (const [what, value] of [['range', input.range], ['base_range', input.baseRange]]) {
    if (value !== null && !rangeIsValid(value)) problems.push(`input ${what} [${value}]`);
  }
  const adapter = metadata.bottleneckAdapter;
  if (adapter !== null) {
    const shape = adapter.cutShape;
    const features = shape.length ? (adapter.kind === 'flatten' ? shape.reduce((a, b) => a * b, 1) : shape.at(-1)) : 0;
    if (!BOTTLENECK_ADAPTERS.includes(adapter.kind) || ![2, 3].includes(shape.length) || Math.min(...shape) < 1 ||
        features !== metadata.bottleneckSize) {
      problems.push(`bottleneck_adapter ${adapter.kind} [${shape}] for bottleneck_size ${metadata.bottleneckSize}`);
    }
  }
  return problems;
}
