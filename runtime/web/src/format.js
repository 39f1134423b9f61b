/**
 * Numbers as Python's `format(value, '.Pg')` writes them, digit for digit, so a message this
 * runtime shows equals the Python runtime's (the divergence line names the same stable rate).
 * JavaScript's toPrecision differs: it rounds halves up (Python: to even, on the double's exact
 * decimal value), writes 'e-7' for 'e-07' and keeps trailing zeros.
 */

/** A finite double > 0 as its exact decimal value: 0.`digits` x 10^`point` (no trailing zeros). */
function exactDecimal(value) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, value);
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  let mantissa = bits & ((1n << 52n) - 1n), exponent = -1074;     // subnormal
  if (biased !== 0) {
    mantissa |= 1n << 52n;
    exponent = biased - 1075;
  }
  // value = mantissa * 2^exponent = integer * 10^-decimals, exactly.
  const [integer, decimals] = exponent >= 0 ? [mantissa << BigInt(exponent), 0] : [mantissa * 5n ** BigInt(-exponent), -exponent];
  const text = integer.toString();
  return {digits: text.replace(/0+$/, ''), point: text.length - decimals};
}

/** `digits` rounded to `precision` significant digits, half to even (Python's float formatting). */
function roundHalfEven({digits, point}, precision) {
  if (digits.length <= precision) return {digits, point};
  const head = digits.slice(0, precision), rest = digits.slice(precision);
  const up = rest[0] > '5' || (rest[0] === '5' && (/[1-9]/.test(rest.slice(1)) || Number(head.at(-1)) % 2 === 1));
  if (!up) return {digits: head.replace(/0+$/, ''), point};
  const incremented = (BigInt(head) + 1n).toString();               // 999 -> 1000 moves the point
  return incremented.length > precision ? {digits: '1', point: point + 1} : {digits: incremented.replace(/0+$/, ''), point};
}

/** Python's format(value, f'.{precision}g'); precision 6 is Python's plain 'g'. */
export function formatG(value, precision = 6) {
  if (Number.isNaN(value)) return 'nan';
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf';
  const sign = value < 0 || Object.is(value, -0) ? '-' : '';
  if (value === 0) return `${sign}0`;
  const {digits, point} = roundHalfEven(exactDecimal(Math.abs(value)), Math.max(1, precision));
  const exponent = point - 1;                                        // of d.ddd x 10^exponent
  if (exponent < -4 || exponent >= Math.max(1, precision)) {
    const mantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${mantissa}e${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
  }
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}
