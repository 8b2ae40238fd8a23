/**
 * Signed checkpoints: the C2SP signed-note format (https://c2sp.org/signed-note) with Ed25519 signatures, and the
 * C2SP tlog-checkpoint body (https://c2sp.org/tlog-checkpoint) on top of it. The generic note functions come first,
 * the checkpoint instance after (one verifier object per checkpoint, as golang.org/x/mod/sumdb/note). Output is byte-compatible with golang.org/x/mod/sumdb/note: the tests
 * reproduce that package's published PeterNeumann signature.
 *
 *   <origin>\n<tree size, decimal>\n<base64 root hash>\n   ← note text (signed bytes, UTF-8)
 *   \n
 *   — <key name> <base64(4-byte key hash ‖ 64-byte Ed25519 signature)>\n   ← one line per signature
 *
 * Malformed notes throw SH_ERR_LEDGER_TAMPERED; a note without a valid signature by the expected key throws
 * SH_ERR_BAD_SIGNATURE; bad arguments (key lengths, names, sizes) throw SH_ERR_INVALID_ARGUMENT.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { describe, fail } from '../../core/errors.ts';
import { equalBytes, HASH_SIZE } from './merkle.ts';
import { ed25519PublicKey, ed25519Sign } from '../../core/sign.ts';

/** signed-note algorithm identifier for Ed25519. */
const ALG_ED25519 = 0x01;
/** golang.org/x/mod/sumdb/note refuses notes with more signatures than this; so do we. */
const MAX_SIGNATURES = 100;
const SIG_PREFIX = '\u2014 '; // EM DASH, space
const utf8 = new TextEncoder();

/** One signature line of a note, undecoded beyond its key hash. */
export interface NoteSignature {
  readonly name: string;
  /** The 4-byte key hash that prefixes the signature blob. */
  readonly keyHash: Uint8Array;
  /** The rest of the blob (64 bytes for Ed25519). */
  readonly signature: Uint8Array;
}

/** The fields a tlog checkpoint commits to. */
export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly rootHash: Uint8Array;
}

/** A checkpoint as parsed, with its (unverified) signatures and any extension lines. */
export interface ParsedCheckpoint extends Checkpoint {
  readonly extensions: readonly string[];
  readonly signatures: readonly NoteSignature[];
}

// --- signed-note (generic)

/**
 * The 4-byte key hash of an Ed25519 note key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[0:4] (signed-note,
 * "Signatures" and "Ed25519").
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT for an invalid key name or a public key that is not 32 bytes.
 * @example keyHash('PeterNeumann', pub) // c7 4f 20 a3
 */
export function keyHash(name: string, publicKey: Uint8Array): Uint8Array {
  checkKeyName(name);
  checkKey(publicKey, 'publicKey');
  const n = utf8.encode(name);
  const buf = new Uint8Array(n.length + 2 + publicKey.length);
  buf.set(n);
  buf.set([0x0a, ALG_ED25519], n.length);
  buf.set(publicKey, n.length + 2);
  return sha256(buf).slice(0, 4);
}

/**
 * The verifier key string `<name>+<hex key hash>+<base64(0x01 ‖ public key)>` (signed-note, "Verifier keys").
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT as keyHash.
 * @example verifierKey('PeterNeumann', pub) === 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'
 */
export function verifierKey(name: string, publicKey: Uint8Array): string {
  const hash = Buffer.from(keyHash(name, publicKey)).toString('hex');
  return `${name}+${hash}+${Buffer.from([ALG_ED25519, ...publicKey]).toString('base64')}`;
}

/**
 * Signs note text with an Ed25519 key and returns the note: text, blank line, one signature line (signed-note).
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT if the text is not valid note text (must end in a newline, no
 *   control characters but newline, well-formed Unicode), the key name is invalid or the secret key is not 32 bytes.
 * @example signNote('hello\n', 'example.com/log', sk) // 'hello\n\n— example.com/log …\n'
 */
export function signNote(text: string, keyName: string, secretKey: Uint8Array): string {
  if (!isNoteText(text))
    fail('SH_ERR_INVALID_ARGUMENT', `"text" expected note text ending in a newline, got ${describe(text)}`);
  checkKey(secretKey, 'secretKey');
  const publicKey = ed25519PublicKey(secretKey);
  const sig = ed25519Sign(utf8.encode(text), secretKey);
  const blob = Buffer.concat([keyHash(keyName, publicKey), sig]).toString('base64');
  return `${text}\n${SIG_PREFIX}${keyName} ${blob}\n`;
}

/**
 * Splits a note into its text and signature lines without verifying anything (signed-note, "Format"): the text
 * ends at the last blank line; every later line must be a signature line.
 * @throws SafehouseError SH_ERR_LEDGER_TAMPERED for a malformed note; SH_ERR_INVALID_ARGUMENT if `note` is not a string.
 * @example parseNote(note).signatures[0].name === 'PeterNeumann'
 */
export function parseNote(note: string): { text: string; signatures: NoteSignature[] } {
  if (typeof note !== 'string') fail('SH_ERR_INVALID_ARGUMENT', `"note" expected string, got ${describe(note)}`);
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !isNoteText(note)) malformed('it is not note text followed by a blank line and signatures');
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2).split('\n');
  if (lines.pop() !== '' || lines.length === 0) malformed('the signature block is empty or lacks its final newline');
  if (lines.length > MAX_SIGNATURES) malformed(`it has more than ${MAX_SIGNATURES} signatures`);
  const signatures = lines.map((line, i) => {
    const m = /^\u2014 ([^\s+]+) ([A-Za-z0-9+/=]+)$/u.exec(line);
    const blob = m ? decodeBase64(m[2]!) : undefined;
    if (!m || !blob || blob.length < 5) malformed(`signature line ${i + 1} is not "— <name> <base64>"`);
    return { name: m[1]!, keyHash: blob.slice(0, 4), signature: blob.slice(4) };
  });
  return { text, signatures };
}

/**
 * Verifies a note's signature by the Ed25519 key `publicKey` named `keyName` and returns the signed text.
 * Signatures by other keys are ignored (signed-note, "Verifying"); verification is RFC 8032 strict (no ZIP-215).
 * @throws SafehouseError SH_ERR_BAD_SIGNATURE if no line carries this key's name and hash, or its signature is
 *   invalid; SH_ERR_LEDGER_TAMPERED for a malformed note; SH_ERR_INVALID_ARGUMENT for a bad key or name.
 * @example verifyNote(signNote('hi\n', 'k', sk), 'k', pk) === 'hi\n'
 */
export function verifyNote(note: string, keyName: string, publicKey: Uint8Array): string {
  const hash = keyHash(keyName, publicKey);
  const { text, signatures } = parseNote(note);
  const mine = signatures.filter((s) => s.name === keyName && equalBytes(s.keyHash, hash));
  if (mine.length === 0) fail('SH_ERR_BAD_SIGNATURE', `note has no signature by key "${keyName}"`, { keyName });
  const msg = utf8.encode(text);
  for (const s of mine) {
    if (!verifyEd25519(s.signature, msg, publicKey)) {
      fail('SH_ERR_BAD_SIGNATURE', `note signature by key "${keyName}" does not verify`, { keyName });
    }
  }
  return text;
}

// --- tlog-checkpoint (the instance)

/**
 * Formats and signs a checkpoint note (C2SP tlog-checkpoint: origin line, decimal tree size, base64 root hash).
 * @throws SafehouseError SH_ERR_INVALID_ARGUMENT for an empty or multi-line origin, a size that is not a
 *   non-negative safe integer, a root hash that is not 32 bytes, or a bad key (see signNote).
 * @example signCheckpoint({ origin: 'safehouse.example/ledger', size: 8, rootHash }, 'safehouse.example/ledger', sk)
 */
export function signCheckpoint(cp: Checkpoint, keyName: string, secretKey: Uint8Array): string {
  const { origin, size, rootHash } = cp;
  if (typeof origin !== 'string' || !/^[^\x00-\x1f]+$/.test(origin) || !origin.isWellFormed()) {
    fail('SH_ERR_INVALID_ARGUMENT', `"origin" expected a non-empty single line, got ${describe(origin)}`);
  }
  if (!Number.isSafeInteger(size) || size < 0)
    fail('SH_ERR_INVALID_ARGUMENT', `"size" expected a non-negative integer, got ${describe(size)}`);
  if (!(rootHash instanceof Uint8Array) || rootHash.length !== HASH_SIZE) {
    fail('SH_ERR_INVALID_ARGUMENT', `"rootHash" expected 32 bytes, got ${describe(rootHash)}`);
  }
  return signNote(`${origin}\n${size}\n${Buffer.from(rootHash).toString('base64')}\n`, keyName, secretKey);
}

/**
 * Parses a checkpoint note without verifying its signatures (C2SP tlog-checkpoint, "Note text"): the size must be
 * decimal without leading zeros, the root hash standard base64 of 32 bytes; further non-empty lines are extensions.
 * @throws SafehouseError SH_ERR_LEDGER_TAMPERED for a malformed note or body.
 * @example parseCheckpoint(note).size === 8
 */
export function parseCheckpoint(note: string): ParsedCheckpoint {
  const { text, signatures } = parseNote(note);
  const [origin, sizeLine, rootLine, ...extensions] = text.slice(0, -1).split('\n');
  if (!origin) malformed('the origin line is empty');
  if (sizeLine === undefined || !/^(0|[1-9][0-9]*)$/.test(sizeLine) || !Number.isSafeInteger(Number(sizeLine))) {
    malformed(`the tree size line is not a decimal integer: ${describe(sizeLine)}`);
  }
  const rootHash = rootLine === undefined ? undefined : decodeBase64(rootLine);
  if (!rootHash || rootHash.length !== HASH_SIZE) malformed('the root hash line is not base64 of 32 bytes');
  if (extensions.some((l) => l === '')) malformed('it has an empty line in its body');
  return { origin, size: Number(sizeLine), rootHash, extensions, signatures };
}

/**
 * Verifies a checkpoint note's signature by `keyName`/`publicKey` and returns what it commits to.
 * @throws SafehouseError SH_ERR_BAD_SIGNATURE for a missing or invalid signature by that key;
 *   SH_ERR_LEDGER_TAMPERED for a malformed note.
 * @example verifyCheckpoint(signCheckpoint(cp, 'log', sk), 'log', pk).size === cp.size
 */
export function verifyCheckpoint(note: string, keyName: string, publicKey: Uint8Array): Checkpoint {
  const { origin, size, rootHash } = parseCheckpoint(note);
  verifyNote(note, keyName, publicKey);
  return { origin, size, rootHash };
}

// --- internals

function malformed(why: string): never {
  return fail('SH_ERR_LEDGER_TAMPERED', `malformed signed note: ${why}`);
}

/** signed-note text: ends in a newline, well-formed Unicode (so valid UTF-8), no control character but newline. */
function isNoteText(s: unknown): s is string {
  return typeof s === 'string' && s.endsWith('\n') && s.isWellFormed() && !/[\x00-\x09\x0b-\x1f]/.test(s);
}

/** Strict standard base64 (RFC 4648 §4, padded): Buffer alone would accept garbage, so re-encode and compare. */
function decodeBase64(s: string): Uint8Array | undefined {
  if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) return undefined;
  const bytes = Buffer.from(s, 'base64');
  return bytes.toString('base64') === s ? new Uint8Array(bytes) : undefined;
}

function verifyEd25519(sig: Uint8Array, msg: Uint8Array, publicKey: Uint8Array): boolean {
  if (sig.length !== 64) return false;
  try {
    return ed25519.verify(sig, msg, publicKey, { zip215: false });
  } catch {
    return false; // an invalid point encoding is a bad signature, not a crash
  }
}

function checkKeyName(name: unknown): void {
  if (typeof name !== 'string' || !/^[^\s+]+$/u.test(name) || !name.isWellFormed()) {
    fail('SH_ERR_INVALID_ARGUMENT', `"keyName" expected a non-empty name without spaces or "+", got ${describe(name)}`);
  }
}

function checkKey(key: unknown, name: string): asserts key is Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== 32) {
    fail(
      'SH_ERR_INVALID_ARGUMENT',
      `"${name}" expected 32 bytes, got ${key instanceof Uint8Array ? `${key.length} bytes` : describe(key)}`,
    );
  }
}
