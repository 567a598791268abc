// DKIM signing (RFC 6376, relaxed/relaxed; RSA-SHA256 and Ed25519-SHA256 per RFC 8463) with the
// private keys kept parsed in memory.
//
// Why not mailauth's dkimSign(): it hands the PEM to crypto.createPrivateKey() on every signature
// (lib/tools.js getPrivateKey) and accepts no KeyObject. With OpenSSL 3 that parse costs ~340 µs,
// more than the RSA signature itself (~250 µs) and 14× an Ed25519 one (~25 µs); a raw 32-byte
// Ed25519 key does not help, it is parsed as DER at the same cost. So this file keeps mailauth's
// canonicalization and formatting — the part that must match what verifiers compute — and does
// only the last step itself: crypto.sign() with a KeyObject cached per domain and key envelope.
// The signature is computed on libuv's thread pool (the callback form of crypto.sign), so RSA
// signing runs beside the event loop instead of on it.
// A domain may sign with more than one key (an Ed25519 key and an RSA one, as RFC 8463 recommends
// while many receivers verify only RSA): one DKIM-Signature field per key, each over the same
// message, as mailauth's dkimSign does for several signatureData entries. A receiver that cannot
// verify one takes the other (RFC 6376 6.1: any valid signature is enough).

import { createHash, createPrivateKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { dkimBody } from 'mailauth/lib/dkim/body/index.js';
import { generateCanonicalizedHeader } from 'mailauth/lib/dkim/header/index.js';
import { formatSignatureHeaderLine, getSigningHeaderLines, parseHeaders } from 'mailauth/lib/tools.js';
import { decrypt } from '../lib/crypto.js';
import { normalizeLineEndings } from './fold.js';

/**
 * Header fields signed when present: those a receiver shows or acts on. From is listed twice
 * ("oversigned"): the second, absent instance makes a From header added in transit break the
 * signature, which is what DMARC alignment relies on.
 */
export const SIGNED_FIELDS = [
  'From',
  'Sender',
  'Reply-To',
  'Subject',
  'Date',
  'Message-ID',
  'To',
  'Cc',
  'MIME-Version',
  'Content-Type',
  'Content-Transfer-Encoding',
  'In-Reply-To',
  'References',
  'List-Id',
  'List-Unsubscribe',
  'List-Unsubscribe-Post',
  'Feedback-ID',
];

/** Domains whose parsed keys stay in memory; far more than one sender process signs for. */
const DEFAULT_CACHE_SIZE = 1000;

export interface DkimDomainKey {
  /** Row id of the domain; with the envelope, the cache key. */
  domainId: string;
  /** d= */
  domain: string;
  /** s= */
  selector: string;
  /** The private key as stored: lib/crypto encrypt() of the PKCS#8 PEM. */
  privateKeyEnvelope: string;
  /** Keys that sign beside it, each under its own selector: the RSA key of an Ed25519 domain. */
  also?: { selector: string; privateKeyEnvelope: string }[];
}

export interface DkimSigner {
  /** Returns the message, its line endings made CRLF, with a DKIM-Signature field per key prepended. */
  sign(message: Buffer, key: DkimDomainKey): Promise<Buffer>;
}

/**
 * A signer that decrypts and parses each domain's key once.
 *
 *   const signer = createDkimSigner(config.secretKey);
 *   const signed = await signer.sign(raw, { domainId, domain: 'example.com', selector: 'mp1', privateKeyEnvelope });
 */
export function createDkimSigner(secretKey: Buffer, options: { cacheSize?: number } = {}): DkimSigner {
  const cacheSize = options.cacheSize ?? DEFAULT_CACHE_SIZE;
  // Keyed by domain id and envelope, so a rotated key (a new envelope) is picked up at once.
  const keys = new Map<string, KeyObject>();
  const keyFor = (domainId: string, envelope: string): KeyObject => {
    const cacheKey = `${domainId}\0${envelope}`;
    let keyObject = keys.get(cacheKey);
    if (!keyObject) {
      keyObject = createPrivateKey(decrypt(secretKey, envelope));
      // Insertion order is age: drop the oldest entry, whatever domain it belongs to.
      if (keys.size >= cacheSize) keys.delete(keys.keys().next().value as string);
      keys.set(cacheKey, keyObject);
    }
    return keyObject;
  };
  return {
    async sign(message, key) {
      // What is signed must be what is sent: the SMTP client turns a bare CR or LF into CRLF on
      // the wire, which would break a signature computed over the bare one.
      const clean = normalizeLineEndings(message);
      const signTime = new Date();
      const signing = [
        { selector: key.selector, privateKeyEnvelope: key.privateKeyEnvelope },
        ...(key.also ?? []),
      ];
      const fields = await Promise.all(
        signing.map((k) =>
          dkimSignature(clean, {
            domain: key.domain,
            selector: k.selector,
            privateKey: keyFor(key.domainId, k.privateKeyEnvelope),
            signTime,
          }),
        ),
      );
      return Buffer.concat([Buffer.from(fields.map((f) => f + '\r\n').join('')), clean]);
    },
  };
}

export interface SignatureOptions {
  domain: string;
  selector: string;
  privateKey: KeyObject;
  /** t= ; now by default. */
  signTime?: Date;
}

/**
 * Computes the DKIM-Signature field (folded, without its final CRLF) for a whole message.
 *
 *   const field = await dkimSignature(raw, { domain: 'example.com', selector: 'mp1', privateKey });
 */
export async function dkimSignature(message: Buffer, options: SignatureOptions): Promise<string> {
  const keyType = options.privateKey.asymmetricKeyType;
  if (keyType !== 'rsa' && keyType !== 'ed25519') {
    throw Object.assign(new Error(`a ${keyType} key cannot sign DKIM`), { code: 'EDKIMKEY' });
  }
  const { header, body } = splitMessage(message);

  const bodyHasher = dkimBody('relaxed', 'sha256', false);
  bodyHasher.update(body);
  const bodyHash = bodyHasher.digest('base64');

  const present = getSigningHeaderLines(parseHeaders(header).parsed, SIGNED_FIELDS.join(':'));
  const signing = { ...present, keys: `${present.keys}: From` };
  const algorithm = `${keyType}-sha256`;
  const { canonicalizedHeader, dkimHeaderOpts } = generateCanonicalizedHeader('DKIM', signing, {
    signingDomain: options.domain,
    selector: options.selector,
    algorithm,
    canonicalization: 'relaxed/relaxed',
    bodyHash,
    // Always given: without it mailauth stamps t= twice (once for the hashed copy, once for the
    // emitted one), and the two differ when a second boundary falls between them.
    signTime: options.signTime ?? new Date(),
  });

  // RFC 8463: Ed25519 signs the SHA-256 of the canonicalized header (PureEdDSA over the hash).
  const signature =
    keyType === 'rsa'
      ? await signAsync('rsa-sha256', canonicalizedHeader, options.privateKey)
      : await signAsync(null, createHash('sha256').update(canonicalizedHeader).digest(), options.privateKey);
  return formatSignatureHeaderLine('DKIM', { ...dkimHeaderOpts, b: signature.toString('base64') }, true);
}

/** Header (each field with its CRLF) and body, split at the first empty line. */
function splitMessage(message: Buffer): { header: Buffer; body: Buffer } {
  const end = message.indexOf('\r\n\r\n');
  if (end < 0) return { header: message, body: Buffer.alloc(0) };
  return { header: message.subarray(0, end + 2), body: message.subarray(end + 4) };
}

function signAsync(algorithm: string | null, data: Buffer, key: KeyObject): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    cryptoSign(algorithm, data, key, (err, signature) => (err ? reject(err) : resolve(signature))),
  );
}
