// A certificate authority of a test's own, made with openssl in a temporary directory: the CA a
// process under test is told to trust (NODE_EXTRA_CA_CERTS=ca.caFile), certificates it issues for
// the names a test's servers stand for, and self-signed ones that nothing trusts.
//
//   const ca = await createTestCa();
//   const { key, cert } = await ca.issue(['mx.example.test']);
//   // env: { NODE_EXTRA_CA_CERTS: ca.caFile }
//   await ca.close();

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface KeyPair {
  /** PEM */
  key: string;
  /** PEM */
  cert: string;
}

export interface TestCa {
  /** The CA's certificate (PEM) as a file, for NODE_EXTRA_CA_CERTS. */
  caFile: string;
  /**
   * A key and a certificate for `names` (subjectAltName DNS entries), signed by this CA; with
   * `expired`, one that was valid in January 2020 only.
   */
  issue(names: string[], options?: { expired?: boolean }): Promise<KeyPair>;
  /** A key and a self-signed certificate for `names`: no CA vouches for it. */
  selfSigned(names: string[]): Promise<KeyPair>;
  close(): Promise<void>;
}

export async function createTestCa(): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'mailplane-ca-'));
  const caKey = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    caKey,
    '-out',
    caFile,
    '-days',
    '2',
    '-subj',
    '/CN=Mailplane Test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  let serial = 0;

  const pair = async (names: string[], signed: boolean, expired = false): Promise<KeyPair> => {
    const base = join(dir, `leaf-${++serial}`);
    const san = `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`;
    await writeFile(`${base}.ext`, `${san}\nextendedKeyUsage=serverAuth\n`);
    await run('openssl', [
      'req',
      ...(signed ? [] : ['-x509', '-days', '2', '-addext', san]),
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${base}.key`,
      '-out',
      signed ? `${base}.csr` : `${base}.pem`,
      '-subj',
      `/CN=${names[0]}`,
    ]);
    if (expired) {
      // `openssl x509 -req` dates a certificate from now; `openssl ca` takes any dates.
      await writeFile(`${base}.index`, '');
      await writeFile(`${base}.serial`, `${1000 + serial}\n`);
      await writeFile(
        `${base}.cnf`,
        [
          '[ca]',
          'default_ca = test',
          '[test]',
          `database = ${base}.index`,
          `new_certs_dir = ${dir}`,
          `serial = ${base}.serial`,
          'default_md = sha256',
          'policy = any',
          '[any]',
          'commonName = supplied',
          '[leaf]',
          san,
          'extendedKeyUsage = serverAuth',
          '',
        ].join('\n'),
      );
      await run('openssl', [
        'ca',
        '-batch',
        '-config',
        `${base}.cnf`,
        '-cert',
        caFile,
        '-keyfile',
        caKey,
        '-in',
        `${base}.csr`,
        '-out',
        `${base}.pem`,
        '-startdate',
        '20200101000000Z',
        '-enddate',
        '20200201000000Z',
        '-extensions',
        'leaf',
        '-notext',
      ]);
    } else if (signed) {
      await run('openssl', [
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        caFile,
        '-CAkey',
        caKey,
        '-set_serial',
        String(1000 + serial),
        '-days',
        '2',
        '-extfile',
        `${base}.ext`,
        '-out',
        `${base}.pem`,
      ]);
    }
    return { key: await readFile(`${base}.key`, 'utf8'), cert: await readFile(`${base}.pem`, 'utf8') };
  };

  return {
    caFile,
    issue: (names, options) => pair(names, true, options?.expired),
    selfSigned: (names) => pair(names, false),
    close: () => rm(dir, { recursive: true, force: true }),
  };
}
