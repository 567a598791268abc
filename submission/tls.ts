// The certificate of SMTP submission, from the files MAILPLANE_TLS_CERT_FILE and
// MAILPLANE_TLS_KEY_FILE name (in Kubernetes, a Secret mounted as a volume, which cert-manager
// renews in place). The files are read again on a timer and a changed pair is taken up by the
// running listeners, so a renewal needs no restart; a pair that does not load (a renewal half
// written, a key that does not match) is logged and the previous one kept.

import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type { Logger } from '../lib/log.js';
import { UserError } from '../lib/user-error.js';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

export interface TlsPair {
  cert: Buffer;
  key: Buffer;
}

/**
 * How often the files are read again. Kubelet refreshes a mounted Secret within about a minute of
 * its change, and cert-manager renews weeks before expiry: reading two small files every half
 * minute is cheap and leaves nothing to wait for.
 */
export const TLS_RELOAD_MS = 30_000;

/**
 * Reads and checks the pair; a missing file or a pair that does not load is a UserError naming the
 * setting.
 *
 *   const pair = await readTlsPair({ certFile: '/tls/tls.crt', keyFile: '/tls/tls.key' });
 */
export async function readTlsPair(files: TlsFiles): Promise<TlsPair> {
  const read = async (path: string, setting: string) => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new UserError(`cannot read ${setting} (${path}): ${(err as Error).message}`, { cause: err });
    }
  };
  const pair = {
    cert: await read(files.certFile, 'MAILPLANE_TLS_CERT_FILE'),
    key: await read(files.keyFile, 'MAILPLANE_TLS_KEY_FILE'),
  };
  try {
    createSecureContext(pair);
  } catch (err) {
    throw new UserError(
      `MAILPLANE_TLS_CERT_FILE and MAILPLANE_TLS_KEY_FILE do not load as a certificate and its key: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return pair;
}

/**
 * Reads the files every `intervalMs` and calls `onChange` with a pair that differs from the last
 * one taken and loads. close() stops it.
 *
 *   const watch = watchTlsPair(files, pair, (next) => server.updateTls(next), log);
 */
export function watchTlsPair(
  files: TlsFiles,
  current: TlsPair,
  onChange: (pair: TlsPair) => void,
  log: Logger,
  intervalMs = TLS_RELOAD_MS,
): { close(): void } {
  let taken = current;
  let refused: TlsPair | undefined;
  let reading = false;
  const same = (a: TlsPair, b: TlsPair | undefined) => !!b && a.cert.equals(b.cert) && a.key.equals(b.key);
  const check = async () => {
    if (reading) return;
    reading = true;
    try {
      const next = { cert: await readFile(files.certFile), key: await readFile(files.keyFile) };
      if (same(next, taken) || same(next, refused)) return;
      try {
        createSecureContext(next);
      } catch (err) {
        refused = next;
        log.warn('the TLS certificate changed but does not load; keeping the previous one', { err });
        return;
      }
      taken = next;
      refused = undefined;
      onChange(next);
      log.info('TLS certificate reloaded', { certFile: files.certFile });
    } catch (err) {
      log.warn('cannot read the TLS certificate files; keeping the previous pair', { err });
    } finally {
      reading = false;
    }
  };
  const timer = setInterval(() => void check(), intervalMs);
  timer.unref();
  return { close: () => clearInterval(timer) };
}
