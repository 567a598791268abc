// A loopback port nothing listens on right now, for a server a test starts with a fixed port
// (Postgres, Postfix, a child process). Another process may take it before the server binds it;
// the helpers that can tell (Postfix's log) try again.

import { createServer } from 'node:net';

export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  if (!address || typeof address === 'string') throw new Error('no free port');
  return address.port;
}
