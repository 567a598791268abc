// The certificate `mailplane dev` gives SMTP submission, which takes no AUTH before TLS (RFC 8314
// asks as much of a submission server, and submission/ holds to it in development too): a
// self-signed one for localhost, made once with openssl into the state directory and made again
// when it is about to expire. A client trusts it by its file (nodemailer's `tls.ca`), or a developer
// skips verification on loopback; nothing outside the machine is meant to.

import { execFile } from 'node:child_process';
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';

export interface DevTlsFiles {
  certFile: string;
  keyFile: string;
}

/** How long a made certificate is valid: well past any dev session, within what clients accept. */
const VALID_DAYS = 825;
/** A certificate this close to expiry is made again, so that a running dev never sees it lapse. */
const RENEW_BEFORE_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * The certificate and key in `stateDir` (submission-tls.crt and .key), made now if they are
 * missing or about to expire; undefined when openssl cannot be run, with why.
 *
 *   const tls = await devSubmissionTls(stateDir);
 *   // { files: { certFile: '.dev/submission-tls.crt', keyFile: '.dev/submission-tls.key' } }
 *   // or { unavailable: 'openssl is not installed to make its certificate' }
 */
export async function devSubmissionTls(
  stateDir: string,
): Promise<{ files: DevTlsFiles } | { unavailable: string }> {
  const files = {
    certFile: join(stateDir, 'submission-tls.crt'),
    keyFile: join(stateDir, 'submission-tls.key'),
  };
  if (current(files)) return { files };
  try {
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      files.keyFile,
      '-out',
      files.certFile,
      '-days',
      String(VALID_DAYS),
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
    ]);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return {
      unavailable:
        code === 'ENOENT'
          ? 'openssl is not installed to make its certificate'
          : `openssl could not make its certificate: ${(err as Error).message.split('\n')[0]}`,
    };
  }
  // openssl keeps the mode of a key file it writes over (a renewal): the key is the owner's alone.
  chmodSync(files.keyFile, 0o600);
  return { files };
}

function current(files: DevTlsFiles): boolean {
  if (!existsSync(files.certFile) || !existsSync(files.keyFile)) return false;
  try {
    const cert = new X509Certificate(readFileSync(files.certFile));
    return Date.parse(cert.validTo) - Date.now() > RENEW_BEFORE_MS;
  } catch {
    return false;
  }
}
