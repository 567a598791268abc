// Structured JSON logs, one line per entry, with child loggers that carry their scope
// ({task, jobId, messageId} in the sender, {controller, namespace, name} in the operator,
// {requestId} for each request in the api).

export type Level = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(scope: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  level?: Level;
  /** Where lines go; stdout by default. Tests pass an array-backed sink. */
  write?: (line: string) => void;
}

/**
 * Creates a JSON-lines logger.
 *
 *   const log = createLogger({ level: 'info' }).child({ component: 'api' });
 *   log.info('listening', { port: 8080 });
 */
export function createLogger(options: LoggerOptions = {}, scope: Record<string, unknown> = {}): Logger {
  const min = LEVELS[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stdout.write(line + '\n'));
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] < min) return;
    write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...scope, ...serialize(fields) }));
  };
  return {
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
    child: (more) => createLogger(options, { ...scope, ...more }),
  };
}

/** Errors do not survive JSON.stringify; turn them into plain fields. */
function serialize(fields?: Record<string, unknown>): Record<string, unknown> | undefined {
  if (!fields) return fields;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    out[key] =
      value instanceof Error
        ? { message: value.message, code: (value as { code?: unknown }).code, stack: value.stack }
        : value;
  }
  return out;
}

/** A logger that drops everything, for tests and tools that print their own output. */
export const silentLogger: Logger = createLogger({ write: () => {} });
