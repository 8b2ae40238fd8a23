// C2SP signed-note (Ed25519) and tlog-checkpoint, checked byte for byte against golang.org/x/mod/sumdb/note's
// published PeterNeumann vector (test/vectors/signed-note.json), then round trips and tampering.
import { ed25519 } from '@noble/curves/ed25519.js';
import { describe, expect, test } from 'vitest';
import { isCoded, type ErrorCode } from '../../../core/errors.ts';
import {
  keyHash,
  parseCheckpoint,
  parseNote,
  signCheckpoint,
  signNote,
  verifierKey,
  verifyCheckpoint,
  verifyNote,
} from '../../../engine/ledger/checkpoint.ts';
import { leafHash } from '../../../engine/ledger/merkle.ts';
import go from '../../vectors/signed-note.json' with { type: 'json' };
import { expectCode as expectCodeOf } from '../../fixtures/expect.ts';
const expectCode = (code: ErrorCode, f: () => unknown): void => expectCodeOf(f, code);

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const goSeed = new Uint8Array(Buffer.from(go.signerKey.split('+').slice(4).join('+'), 'base64')).slice(1);
const goPub = ed25519.getPublicKey(goSeed);

const { secretKey, publicKey } = ed25519.keygen(new Uint8Array(32).fill(7));
const KEY = 'safehouse.test/ledger';
const CP = { origin: 'safehouse.test/ledger', size: 8, rootHash: leafHash(new Uint8Array([1, 2, 3])) };
const NOTE = signCheckpoint(CP, KEY, secretKey);

describe('signed-note: golang.org/x/mod/sumdb/note reference vector', () => {
  test('key hash and verifier key match the published ones', () => {
    expect(Buffer.from(keyHash(go.name, goPub)).toString('hex')).toBe(go.keyHash);
    expect(verifierKey(go.name, goPub)).toBe(go.verifierKey);
  });

  test('signNote reproduces the published note byte for byte (Ed25519 is deterministic)', () => {
    expect(signNote(go.text, go.name, goSeed)).toBe(go.note);
    expect(verifyNote(go.note, go.name, goPub)).toBe(go.text);
  });

  test("another key's signature line is parsed and ignored", () => {
    const note = go.note + go.otherSignatureLine;
    expect(parseNote(note).signatures.map((s) => s.name)).toEqual(['PeterNeumann', 'EnochRoot']);
    expect(verifyNote(note, go.name, goPub)).toBe(go.text);
  });

  test('the Go malformed-message table is refused', () => {
    const sig = go.note.slice(go.text.length + 1);
    for (const bad of [
      go.text,
      go.text + '\n',
      go.text + '\n' + sig.slice(0, -1),
      '\x01' + go.text + '\n' + sig,
      go.text + '\n' + sig.replace('PeterNeumann', 'Bad Name'),
      go.text + '\n' + sig + 'Unexpected line.\n',
      go.text + '\n' + sig.repeat(101),
    ]) {
      expectCode('SH_ERR_LEDGER_TAMPERED', () => verifyNote(bad, go.name, goPub));
    }
    expectCode('SH_ERR_BAD_SIGNATURE', () =>
      verifyNote(go.note.replace('cryptography', 'cryptographY'), go.name, goPub),
    );
  });
});

describe('C2SP tlog-checkpoint', () => {
  test('round trip, and the exact note layout', () => {
    const lines = NOTE.split('\n');
    expect(lines.slice(0, 4)).toEqual([CP.origin, '8', b64(CP.rootHash), '']);
    expect(lines[4]).toMatch(new RegExp(`^\u2014 ${KEY} [A-Za-z0-9+/]{91}=$`));
    expect(lines[5]).toBe('');
    expect(Buffer.from(lines[4]!.split(' ')[2]!, 'base64').subarray(0, 4)).toEqual(
      Buffer.from(keyHash(KEY, publicKey)),
    );
    expect(verifyCheckpoint(NOTE, KEY, publicKey)).toEqual(CP);
    expect(parseCheckpoint(NOTE)).toMatchObject({ ...CP, extensions: [] });
    const [vname, vhash, ...rest] = verifierKey(KEY, publicKey).split('+');
    const vkey = rest.join('+');
    expect([vname, vhash]).toEqual([KEY, Buffer.from(keyHash(KEY, publicKey)).toString('hex')]);
    expect(new Uint8Array(Buffer.from(vkey, 'base64'))).toEqual(new Uint8Array([1, ...publicKey]));
  });

  test('a changed body byte (size, root, origin) breaks the signature', () => {
    const root = b64(CP.rootHash);
    const otherRoot = (root[0] === 'A' ? 'B' : 'A') + root.slice(1);
    for (const forged of [
      NOTE.replace('\n8\n', '\n9\n'),
      NOTE.replace(root, otherRoot),
      NOTE.replace('safehouse.test/ledger\n', 'safehouse.test/ledgeR\n'),
    ]) {
      expectCode('SH_ERR_BAD_SIGNATURE', () => verifyCheckpoint(forged, KEY, publicKey));
    }
  });

  test('a changed signature byte, or key hash byte, is refused', () => {
    const [text, line] = [NOTE.slice(0, NOTE.lastIndexOf('\n\n') + 2), NOTE.slice(NOTE.lastIndexOf('\n\n') + 2, -1)];
    const [dash, name, blob] = line.split(' ');
    for (const at of [0, 4, 40, 67]) {
      const bytes = Buffer.from(blob!, 'base64');
      bytes[at]! ^= 1;
      const forged = `${text}${dash} ${name} ${bytes.toString('base64')}\n`;
      expectCode('SH_ERR_BAD_SIGNATURE', () => verifyCheckpoint(forged, KEY, publicKey));
    }
  });

  test('wrong key or wrong key name', () => {
    const other = ed25519.keygen(new Uint8Array(32).fill(9));
    expectCode('SH_ERR_BAD_SIGNATURE', () => verifyCheckpoint(NOTE, KEY, other.publicKey));
    expectCode('SH_ERR_BAD_SIGNATURE', () => verifyCheckpoint(NOTE, 'safehouse.test/other', publicKey));
    expectCode('SH_ERR_BAD_SIGNATURE', () =>
      verifyCheckpoint(signCheckpoint(CP, KEY, other.secretKey), KEY, publicKey),
    );
  });

  test('an extra or missing newline anywhere is refused as malformed', () => {
    const split = NOTE.lastIndexOf('\n\n');
    for (const bad of [
      NOTE + '\n', // extra at the end
      NOTE.slice(0, -1), // missing final newline
      NOTE.slice(0, split) + '\n' + NOTE.slice(split), // extra blank line before the signatures
      NOTE.slice(0, split) + NOTE.slice(split + 1), // missing blank line
      '\n' + NOTE, // empty origin
      NOTE.replace('\n8\n', '\n8\n\n'), // blank line inside the body
    ]) {
      expectCode('SH_ERR_LEDGER_TAMPERED', () => verifyCheckpoint(bad, KEY, publicKey));
    }
  });

  test('validly signed but malformed bodies are refused; non-empty extension lines are kept', () => {
    const root = b64(CP.rootHash);
    const sign = (text: string): string => signNote(text, KEY, secretKey);
    for (const body of [
      `o\n08\n${root}\n`, // leading zero
      `o\n-1\n${root}\n`,
      `o\n9007199254740993\n${root}\n`, // beyond 2^53
      `o\n8\n${b64(CP.rootHash.slice(1))}\n`, // 31-byte root
      `o\n8\n${root.replace(/\+/g, '-').replace(/\//g, '_').replace(/=$/, '')}\n`, // base64url, unpadded
      `o\n8\n`,
    ]) {
      expectCode('SH_ERR_LEDGER_TAMPERED', () => verifyCheckpoint(sign(body), KEY, publicKey));
    }
    expect(parseCheckpoint(sign(`o\n0\n${root}\nextension\n`)).extensions).toEqual(['extension']);
    expectCode('SH_ERR_LEDGER_TAMPERED', () => parseCheckpoint(NOTE.replace('\u2014', '-')));
  });

  test('bad arguments are SH_ERR_INVALID_ARGUMENT', () => {
    expectCode('SH_ERR_INVALID_ARGUMENT', () => signCheckpoint({ ...CP, size: -1 }, KEY, secretKey));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => signCheckpoint({ ...CP, size: 1.5 }, KEY, secretKey));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => signCheckpoint({ ...CP, origin: 'a\nb' }, KEY, secretKey));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => signCheckpoint({ ...CP, origin: '' }, KEY, secretKey));
    expectCode('SH_ERR_INVALID_ARGUMENT', () =>
      signCheckpoint({ ...CP, rootHash: new Uint8Array(31) }, KEY, secretKey),
    );
    expectCode('SH_ERR_INVALID_ARGUMENT', () => signCheckpoint(CP, KEY, secretKey.slice(1)));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => signCheckpoint(CP, 'bad name', secretKey));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => signCheckpoint(CP, 'bad+name', secretKey));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => verifyCheckpoint(NOTE, KEY, publicKey.slice(1)));
    expectCode('SH_ERR_INVALID_ARGUMENT', () => parseCheckpoint(42 as unknown as string));
  });
});
