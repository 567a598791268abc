// The DNS check lives in lib/dns-check.ts, where the api finds it too; the operator's reconcilers
// and tests import it from here as before.

export { checkDnsRecords, type RecordCheck, type TxtMxResolver } from '../lib/dns-check.js';
