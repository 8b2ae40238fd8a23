// RFC 6962 §2.1 hashing and RFC 9162 §2.1.3–2.1.4 proofs, against the transparency-dev/merkle reference vectors
// (test/vectors/rfc6962.json) and that project's corrupted-proof matrix (proof/verify_test.go).
import { describe, expect, test } from 'vitest';
import { isCoded } from '../../../core/errors.ts';
import {
  consistencyProof,
  EMPTY_ROOT,
  inclusionProof,
  leafHash,
  nodeHash,
  rootFromLeafHashes,
  rootsAtSizes,
  verifyConsistency,
  verifyInclusion,
} from '../../../engine/ledger/merkle.ts';
import vectors from '../../vectors/rfc6962.json' with { type: 'json' };

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const VECTOR_LEAVES = vectors.leaves.map((l) => leafHash(unhex(l)));
const SOME_HASH = unhex('abacaba000000000000000000000000000000000000000000060061e00123456');
/** 24 distinct leaves: the 8 reference leaves, then 16 more. */
const LEAVES = [
  ...VECTOR_LEAVES,
  ...Array.from({ length: 16 }, (_, i) => leafHash(new TextEncoder().encode(`leaf ${i}`))),
];
const MAX = 20;
const rootOf = (n: number): Uint8Array => rootFromLeafHashes(LEAVES.slice(0, n));

function flip(proof: Uint8Array[], i: number, mask: number): Uint8Array[] {
  const out = proof.map((p) => p.slice());
  out[i]![0]! ^= mask;
  return out;
}

function expectInvalidArgument(f: () => unknown): void {
  try {
    f();
  } catch (err) {
    expect(isCoded(err, 'SH_ERR_INVALID_ARGUMENT')).toBe(true);
    return;
  }
  expect.fail('expected SH_ERR_INVALID_ARGUMENT');
}

describe('RFC 6962 §2.1 tree hashing', () => {
  test('leaf and node hashes carry the 0x00 / 0x01 domain prefixes', () => {
    expect(hex(VECTOR_LEAVES[0]!)).toBe(vectors.roots[1]);
    expect(hex(nodeHash(VECTOR_LEAVES[0]!, VECTOR_LEAVES[1]!))).toBe(vectors.roots[2]);
    expect(hex(EMPTY_ROOT)).toBe(vectors.roots[0]);
  });

  test('MTH of the first n reference leaves matches the known roots for n = 0..8', () => {
    vectors.roots.forEach((root, n) =>
      expect(hex(rootFromLeafHashes(VECTOR_LEAVES.slice(0, n))), `size ${n}`).toBe(root),
    );
  });

  test('rootsAtSizes agrees with rootFromLeafHashes for every size, in any order', () => {
    const sizes = [...Array(LEAVES.length + 1).keys()].reverse();
    const roots = rootsAtSizes(LEAVES, sizes);
    sizes.forEach((n, i) => expect(hex(roots[i]!), `size ${n}`).toBe(hex(rootOf(n))));
  });

  test('refuses hashes that are not 32 bytes and sizes out of range', () => {
    expectInvalidArgument(() => nodeHash(new Uint8Array(31), VECTOR_LEAVES[0]!));
    expectInvalidArgument(() => rootFromLeafHashes([new Uint8Array(33)]));
    expectInvalidArgument(() => rootsAtSizes(LEAVES, [LEAVES.length + 1]));
    expectInvalidArgument(() => leafHash('abc' as unknown as Uint8Array));
  });

  test('100 000 leaves: root, a proof and its verification (each O(n))', () => {
    const big = Array.from({ length: 100_000 }, (_, i) => leafHash(new Uint8Array([i & 255, (i >> 8) & 255, i >> 16])));
    const root = rootFromLeafHashes(big);
    expect(verifyInclusion(big[77_777]!, 77_777, big.length, inclusionProof(big, 77_777, big.length), root)).toBe(true);
    const old = rootsAtSizes(big, [65_537])[0]!;
    expect(verifyConsistency(65_537, big.length, consistencyProof(big, 65_537, big.length), old, root)).toBe(true);
  });
});

describe('RFC 9162 §2.1.3 inclusion proofs', () => {
  test.each(vectors.inclusion)('reference proof for index $index in size $size', ({ index, size, proof }) => {
    expect(inclusionProof(VECTOR_LEAVES, index, size).map(hex)).toEqual(proof);
    expect(verifyInclusion(VECTOR_LEAVES[index]!, index, size, proof.map(unhex), unhex(vectors.roots[size]!))).toBe(
      true,
    );
  });

  test(`every (index, size) up to size ${MAX} verifies`, () => {
    for (let size = 1; size <= MAX; size++) {
      for (let index = 0; index < size; index++) {
        const ok = verifyInclusion(LEAVES[index]!, index, size, inclusionProof(LEAVES, index, size), rootOf(size));
        expect(ok, `index ${index} size ${size}`).toBe(true);
      }
    }
  });

  test(`corrupted proofs are rejected for every (index, size) up to size ${MAX}`, () => {
    for (let size = 1; size <= MAX; size++) {
      for (let index = 0; index < size; index++) {
        const proof = inclusionProof(LEAVES, index, size);
        const root = rootOf(size);
        const leaf = LEAVES[index]!;
        const probes: Array<[string, number, number, Uint8Array, Uint8Array[], Uint8Array]> = [
          ['index + 1', index + 1, size, leaf, proof, root],
          ['index ^ 2', index ^ 2, size, leaf, proof, root],
          ['size * 2', index, size * 2, leaf, proof, root],
          ['size / 2', index, Math.floor(size / 2), leaf, proof, root],
          ['wrong leaf', index, size, new TextEncoder().encode('WrongLeaf'), proof, root],
          ['other leaf', index, size, LEAVES[index + 1]!, proof, root],
          ['empty root', index, size, leaf, proof, EMPTY_ROOT],
          ['random root', index, size, leaf, proof, SOME_HASH],
          ['trailing garbage', index, size, leaf, [...proof, new Uint8Array(0)], root],
          ['trailing root', index, size, leaf, [...proof, root], root],
          ['preceding garbage', index, size, leaf, [new Uint8Array(0), ...proof], root],
          ['preceding root', index, size, leaf, [root, ...proof], root],
        ];
        if (index > 0) probes.push(['index - 1', index - 1, size, leaf, proof, root]);
        proof.forEach((_, i) =>
          probes.push([`flipped bit in proof[${i}]`, index, size, leaf, flip(proof, i, 8), root]),
        );
        if (proof.length > 0) probes.push(['truncated proof', index, size, leaf, proof.slice(0, -1), root]);
        if (proof.length > 1)
          probes.push(['inserted component', index, size, leaf, [proof[0]!, SOME_HASH, ...proof.slice(1)], root]);
        for (const [desc, i, n, l, p, r] of probes) {
          expect(verifyInclusion(l, i, n, p, r), `${desc} (index ${index}, size ${size})`).toBe(false);
        }
      }
    }
  });

  test('degenerate inputs: empty tree, index ≥ size, wrong hash sizes', () => {
    const h = VECTOR_LEAVES[1]!;
    expect(verifyInclusion(h, 0, 1, [], h)).toBe(true);
    expect(verifyInclusion(h, 0, 1, [], new Uint8Array(0))).toBe(false);
    expect(verifyInclusion(new Uint8Array(0), 0, 1, [], h)).toBe(false);
    for (const [index, size] of [
      [0, 0],
      [1, 0],
      [1, 1],
      [2, 1],
    ] as const) {
      expect(verifyInclusion(SOME_HASH, index, size, [], EMPTY_ROOT)).toBe(false);
    }
    expectInvalidArgument(() => inclusionProof(LEAVES, 3, 3));
    expectInvalidArgument(() => inclusionProof(LEAVES, 0, LEAVES.length + 1));
    expectInvalidArgument(() => verifyInclusion(h, -1, 1, [], h));
    expectInvalidArgument(() => verifyInclusion(h, 0.5, 1, [], h));
  });
});

describe('RFC 9162 §2.1.4 consistency proofs', () => {
  test.each(vectors.consistency)('reference proof from size $m to size $n', ({ m, n, proof }) => {
    expect(consistencyProof(VECTOR_LEAVES, m, n).map(hex)).toEqual(proof);
    expect(verifyConsistency(m, n, proof.map(unhex), unhex(vectors.roots[m]!), unhex(vectors.roots[n]!))).toBe(true);
  });

  test(`every (m, n) with 0 ≤ m ≤ n ≤ ${MAX} verifies`, () => {
    for (let n = 0; n <= MAX; n++) {
      for (let m = 0; m <= n; m++) {
        const ok = verifyConsistency(m, n, consistencyProof(LEAVES, m, n), rootOf(m), rootOf(n));
        expect(ok, `m ${m} n ${n}`).toBe(true);
      }
    }
  });

  test(`corrupted proofs are rejected for every 0 < m < n ≤ ${MAX}`, () => {
    const wrong = new TextEncoder().encode('WrongRoot');
    for (let n = 2; n <= MAX; n++) {
      for (let m = 1; m < n; m++) {
        const proof = consistencyProof(LEAVES, m, n);
        const [r1, r2] = [rootOf(m), rootOf(n)];
        const probes: Array<[string, number, number, Uint8Array[], Uint8Array, Uint8Array]> = [
          ['m - 1', m - 1, n, proof, r1, r2],
          ['m + 1', m + 1, n, proof, r1, r2],
          ['m ^ 2', m ^ 2, n, proof, r1, r2],
          ['n * 2', m, n * 2, proof, r1, r2],
          ['n / 2', m, Math.floor(n / 2), proof, r1, r2],
          ['wrong old root', m, n, proof, wrong, r2],
          ['wrong new root', m, n, proof, r1, wrong],
          ['swapped roots', m, n, proof, r2, r1],
          ['empty proof', m, n, [], r1, r2],
          ['trailing garbage', m, n, [...proof, new Uint8Array(0)], r1, r2],
          ['trailing old root', m, n, [...proof, r1], r1, r2],
          ['trailing new root', m, n, [...proof, r2], r1, r2],
          ['preceding garbage', m, n, [new Uint8Array(0), ...proof], r1, r2],
          ['preceding old root', m, n, [r1, ...proof], r1, r2],
          ['preceding new root', m, n, [r2, ...proof], r1, r2],
          ['preceding proof[0]', m, n, [proof[0]!, ...proof], r1, r2],
          ['truncated proof', m, n, proof.slice(0, -1), r1, r2],
        ];
        proof.forEach((_, i) => probes.push([`flipped bit in proof[${i}]`, m, n, flip(proof, i, 16), r1, r2]));
        for (const [desc, a, b, p, x, y] of probes) {
          expect(verifyConsistency(a, b, p, x, y), `${desc} (m ${m}, n ${n})`).toBe(false);
        }
      }
    }
  });

  test('trivial sizes: m = n needs equal roots and no proof; m = 0 needs the empty root; no time travel', () => {
    const [r1, r2] = [rootOf(1), rootOf(2)];
    expect(verifyConsistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)).toBe(true);
    expect(verifyConsistency(1, 1, [], r1, r1)).toBe(true);
    expect(verifyConsistency(1, 1, [], r1, r2)).toBe(false);
    expect(verifyConsistency(1, 1, [EMPTY_ROOT], r1, r1)).toBe(false);
    expect(verifyConsistency(0, 1, [], EMPTY_ROOT, r1)).toBe(true);
    expect(verifyConsistency(0, 1, [], SOME_HASH, r1)).toBe(false);
    expect(verifyConsistency(0, 1, [EMPTY_ROOT], EMPTY_ROOT, r1)).toBe(false);
    expect(verifyConsistency(2, 1, [], r2, r1)).toBe(false);
    expect(verifyConsistency(1, 2, [], r1, r2)).toBe(false);
    expectInvalidArgument(() => consistencyProof(LEAVES, 3, 2));
    expectInvalidArgument(() => consistencyProof(LEAVES, 0, LEAVES.length + 1));
    expectInvalidArgument(() => verifyConsistency(-1, 2, [], r1, r2));
  });
});
