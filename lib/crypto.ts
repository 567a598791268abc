// Secrets Mailplane makes and keeps: API keys (random, shown once, stored as SHA-256), DKIM key
// pairs, and the envelope that encrypts DKIM private keys at rest under the installation's key.

import { createCipheriv, createDecipheriv, createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createPublicKey, timingSafeEqual } from 'node:crypto';

/** Every key starts with this, so that secret scanners and people recognise a leaked one. */
export const API_KEY_PREFIX = 'mp_live_';
/** Characters of a key kept in clear (after the prefix) to tell keys apart in listings. */
const API_KEY_ID_LENGTH = 8;

export interface NewApiKey {
  /** The whole key; shown once and never stored. */
  key: string;
  /** `mp_live_` plus the first characters: safe to show and store. */
  prefix: string;
  hash: Buffer;
}

/**
 * Makes a new API key: 32 random bytes (256 bits), base64url, behind the `mp_live_` prefix.
 *
 *   const { key, prefix, hash } = newApiKey();   // store prefix and hash, print key once
 */
export function newApiKey(): NewApiKey {
  const key = API_KEY_PREFIX + randomBytes(32).toString('base64url');
  return { key, prefix: key.slice(0, API_KEY_PREFIX.length + API_KEY_ID_LENGTH), hash: hashApiKey(key) };
}

/** SHA-256 is enough for keys with 256 bits of entropy; a slow hash would only slow every request. */
export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

export function sameHash(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

const ENVELOPE_VERSION = 'v1';

/** AES-256-GCM; the result is `v1:` + base64(iv ‖ tag ‖ ciphertext). */
export function encrypt(key: Buffer, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return `${ENVELOPE_VERSION}:${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64')}`;
}

export function decrypt(key: Buffer, envelope: string): string {
  const [version, payload] = envelope.split(':', 2);
  if (version !== ENVELOPE_VERSION || !payload) throw new Error(`unknown envelope version "${version}"`);
  const raw = Buffer.from(payload, 'base64');
  const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
  decipher.setAuthTag(raw.subarray(12, 28));
  return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
}

export type DkimAlgorithm = 'rsa-2048' | 'ed25519';

export interface DkimKeyPair {
  algorithm: DkimAlgorithm;
  /** PKCS#8 PEM. */
  privateKeyPem: string;
  /** The `p=` value of the DKIM TXT record. */
  publicKeyDns: string;
}

/** Generates a DKIM key pair; RSA-2048 is what every receiver verifies, Ed25519 (RFC 8463) is smaller. */
export function generateDkimKey(algorithm: DkimAlgorithm): DkimKeyPair {
  const { privateKey } =
    algorithm === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
  const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  return { algorithm, privateKeyPem, publicKeyDns: dkimPublicKey(privateKeyPem).publicKeyDns };
}

/**
 * Derives the algorithm and DNS public key of a user-supplied PEM (PKCS#1 or PKCS#8).
 * Throws for keys DKIM cannot use (RSA under 1024 bits, EC, DSA).
 */
export function dkimPublicKey(privateKeyPem: string): { algorithm: DkimAlgorithm; publicKeyDns: string } {
  const publicKey = createPublicKey(privateKeyPem);
  if (publicKey.asymmetricKeyType === 'ed25519') {
    // RFC 8463: p= is the raw 32-byte key, which is the tail of its SPKI encoding.
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    return { algorithm: 'ed25519', publicKeyDns: spki.subarray(spki.length - 32).toString('base64') };
  }
  if (publicKey.asymmetricKeyType === 'rsa') {
    const bits = publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < 1024) throw new Error(`RSA key of ${bits} bits is too short for DKIM (RFC 8301 wants ≥ 1024)`);
    return {
      algorithm: 'rsa-2048',
      publicKeyDns: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    };
  }
  throw new Error(`a ${publicKey.asymmetricKeyType} key cannot sign DKIM; use RSA or Ed25519`);
}

/** The TXT value to publish at `<selector>._domainkey.<domain>`. */
export function dkimTxtValue(algorithm: DkimAlgorithm, publicKeyDns: string): string {
  return `v=DKIM1; k=${algorithm === 'ed25519' ? 'ed25519' : 'rsa'}; p=${publicKeyDns}`;
}
