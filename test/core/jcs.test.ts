/**
 * RFC 8785 JSON Canonicalization (engine/jcs.ts): member order by UTF-16 code units (§3.2.3's example), ECMAScript
 * number and string serialization (§3.2.2), and coded refusals that name the offending path.
 */
import { describe, it, expect } from 'vitest';
import { canonicalize, canonicalBytes } from '../../core/jcs.ts';

describe('canonicalize (RFC 8785)', () => {
  it('sorts members by UTF-16 code units (RFC 8785 §3.2.3 example)', () => {
    const input = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    };
    const order = Object.keys(JSON.parse(canonicalize(input)) as object);
    // JSON.parse re-orders integer-like keys first; compare the serialized order instead.
    expect(order).toContain('1');
    const text = canonicalize(input);
    const positions = ['\\r', '"1"', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33'].map((k) =>
      text.indexOf(k),
    );
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
  });

  it('numbers and strings as ECMAScript serializes them (RFC 8785 §3.2.2)', () => {
    expect(canonicalize({ numbers: [333333333.33333329, 1e30, 4.5, 2e-3, 0.000001, -0, 1e21] })).toBe(
      '{"numbers":[333333333.3333333,1e+30,4.5,0.002,0.000001,0,1e+21]}',
    );
    expect(canonicalize({ string: '€$\u000f\nA\'B"\\\\"/' })).toBe('{"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}');
    expect(canonicalize({ literals: [null, true, false] })).toBe('{"literals":[null,true,false]}');
    expect(canonicalize({ b: undefined, a: [undefined, 1] })).toBe('{"a":[null,1]}');
    expect(new TextDecoder().decode(canonicalBytes({ k: '数据安全屋' }))).toBe('{"k":"数据安全屋"}');
  });

  it('refuses what JSON cannot represent, naming the path', () => {
    const coded = (v: unknown, message: RegExp) =>
      expect(() => canonicalize(v)).toThrow(
        expect.objectContaining({ code: 'SH_ERR_INVALID_ARGUMENT', message: expect.stringMatching(message) }),
      );
    coded({ a: [1, { b: Number.NaN }] }, /"\$\.a\[1\]\.b" expected a finite number/);
    coded({ s: ['ok', 'x\ud800'] }, /"\$\.s\[1\]" expected well-formed Unicode/);
    coded({ bin: new Uint8Array(2) }, /"\$\.bin" expected JSON, got binary/);
    coded({ big: 1n }, /"\$\.big" expected JSON, got bigint/);
    coded(() => 1, /"\$" expected JSON, got function/);
  });
});
