// Types for the parts of mailauth 4.x (which ships none) that Mailplane uses: the DKIM
// canonicalization helpers the signer in dkim.ts builds on, and the verifier the tests check with.
// Deep paths, because mailauth exports only its high-level API from the package root; the
// version is pinned by package-lock.json and the tests verify every signature we make.

declare module 'mailauth/lib/tools.js' {
  export interface ParsedHeader {
    /** Lower-cased field name. */
    key: string;
    /** Field name as written. */
    casedKey: string;
    /** The whole field, folding included, without the final CRLF. */
    line: Buffer;
  }
  export interface SigningHeaderLines {
    /** Value of the h= tag: the signed field names joined by ': '. */
    keys: string;
    headers: ParsedHeader[];
  }
  export function parseHeaders(header: Buffer): { parsed: ParsedHeader[]; original: Buffer };
  export function getSigningHeaderLines(
    parsed: ParsedHeader[],
    fieldNames?: string,
    verify?: boolean,
  ): SigningHeaderLines;
  export function formatSignatureHeaderLine(
    type: 'DKIM' | 'ARC' | 'AS',
    values: Record<string, unknown>,
    folded?: boolean,
  ): string;
  export const defaultDKIMFieldNames: string;
}

declare module 'mailauth/lib/dkim/body/index.js' {
  export interface BodyHasher {
    update(chunk: Buffer): void;
    digest(encoding: 'base64'): string;
  }
  export function dkimBody(
    canonicalization: 'relaxed' | 'simple',
    hashAlgo: 'sha256',
    maxBodyLength: number | false,
  ): BodyHasher;
}

declare module 'mailauth/lib/dkim/header/index.js' {
  import type { SigningHeaderLines } from 'mailauth/lib/tools.js';
  export function generateCanonicalizedHeader(
    type: 'DKIM',
    signingHeaderLines: SigningHeaderLines,
    options: {
      signingDomain: string;
      selector: string;
      algorithm: string;
      canonicalization: string;
      bodyHash: string;
      signTime: Date;
    },
  ): { canonicalizedHeader: Buffer; dkimHeaderOpts: Record<string, unknown> };
}

declare module 'mailauth/lib/dkim/verify.js' {
  export interface DkimVerifyResult {
    results: {
      signingDomain: string;
      selector: string;
      algo: string;
      status: {
        result: 'pass' | 'fail' | 'neutral' | 'none' | 'temperror' | 'permerror' | 'policy';
        comment?: string;
      };
    }[];
  }
  export function dkimVerify(
    input: Buffer | string,
    options: { resolver: (name: string, type: string) => Promise<string[][]> },
  ): Promise<DkimVerifyResult>;
}
