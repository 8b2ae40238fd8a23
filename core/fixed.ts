/**
 * Decimal fixed-point codec. Every numeric field declares `decimals`; a value is the exact integer
 * value·10^decimals. All engine arithmetic is on these integers, so results are exact decimals, never floats.
 * Slots hold residues mod t; signed integers are mapped to [0, t) and read back centered in (−t/2, t/2).
 */
import { fail, type ErrorCode } from './errors.ts';

const DECIMAL = /^([+-]?)(\d+)(?:\.(\d+))?$/;

/**
 * Parse an exact decimal string with at most `decimals` places into value·10^decimals.
 * @throws SafehouseError `code` (default SH_ERR_INVALID_ARGUMENT) naming `what` for malformed text or extra places.
 * @example parseFixed('12.5', 2) === 1250n
 */
export function parseFixed(
  text: string,
  decimals: number,
  what = 'value',
  code: ErrorCode = 'SH_ERR_INVALID_ARGUMENT',
): bigint {
  const m = DECIMAL.exec(text.trim());
  if (!m) fail(code, `"${what}" expected a decimal number, got ${JSON.stringify(text)}`, { field: what });
  const [, sign, whole, frac = ''] = m;
  const trimmed = frac.replace(/0+$/, '');
  if (trimmed.length > decimals) {
    fail(code, `"${what}" expected at most ${decimals} decimal places, got ${JSON.stringify(text)}`, { field: what });
  }
  const v = BigInt(whole + trimmed.padEnd(decimals, '0'));
  return sign === '-' ? -v : v;
}

/**
 * Format value/10^scale as the shortest exact decimal string (no exponent, trailing zeros trimmed).
 * @example formatFixed(-1250n, 3) === '-1.25'
 */
export function formatFixed(value: bigint, scale: number): string {
  const neg = value < 0n;
  const digits = (neg ? -value : value).toString().padStart(scale + 1, '0');
  const whole = digits.slice(0, digits.length - scale);
  const frac = digits.slice(digits.length - scale).replace(/0+$/, '');
  return (neg ? '-' : '') + whole + (frac ? '.' + frac : '');
}

/** 10^k as a bigint. */
export function pow10(k: number): bigint {
  if (!Number.isInteger(k) || k < 0)
    fail('SH_ERR_INVALID_ARGUMENT', `"exponent" expected a non-negative integer, got ${k}`);
  return 10n ** BigInt(k);
}

/** Residue of a signed integer in [0, t). */
export function toSlot(x: bigint, t: bigint): bigint {
  const r = x % t;
  return r < 0n ? r + t : r;
}

/** Centered representative of a residue: the unique v ≡ u (mod t) with −t/2 < v ≤ t/2 (t odd: |v| ≤ (t−1)/2). */
export function centered(u: bigint, t: bigint): bigint {
  const r = toSlot(u, t);
  return r > (t - 1n) / 2n ? r - t : r;
}
