// Listening on a port, with the answer a person needs when it fails: which port, and which
// setting moves it (a taken port is the usual first-run surprise).

import type { Server } from 'node:net';
import { UserError } from './user-error.js';

/**
 * Listens and resolves once bound; a port in use or not permitted rejects with a UserError that
 * names `setting`.
 *
 *   await listen(server, { port: config.port, host: '0.0.0.0', setting: 'PORT' });
 */
export function listen(
  server: Server,
  options: { port: number; host?: string; setting: string },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const where = `${options.host ?? '*'}:${options.port}`;
      if (err.code === 'EADDRINUSE') {
        reject(
          new UserError(
            `port ${options.port} (${where}) is already in use; set ${options.setting} to another port`,
          ),
        );
      } else if (err.code === 'EACCES') {
        reject(
          new UserError(
            `no permission to listen on port ${options.port}; set ${options.setting} to a port above 1023`,
          ),
        );
      } else reject(err);
    };
    server.once('error', onError);
    const listening = () => {
      server.off('error', onError);
      resolve();
    };
    if (options.host === undefined) server.listen(options.port, listening);
    else server.listen(options.port, options.host, listening);
  });
}
