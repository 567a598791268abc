// A keyed work queue in the manner of client-go's: a key waits in the queue at most once, is never
// processed by two workers at once (an add while it runs marks it to run again afterwards), and a
// key that fails is retried after a delay that doubles per consecutive failure, per key.

import type { Logger } from '../lib/log.js';

/** What a handler may ask for after a successful pass: to look again later (e.g. a DNS re-check). */
export interface HandlerResult {
  requeueAfterMs?: number;
}

export type Handler = (key: string) => Promise<HandlerResult | void>;

export interface WorkQueueOptions {
  handler: Handler;
  /** Keys processed at once. */
  concurrency?: number;
  /** First retry delay; 5 ms as client-go, so a conflict is retried almost at once. */
  baseDelayMs?: number;
  /** Longest retry delay: 1000 s (5 ms doubled 18 times is ~22 min; client-go caps at 1000 s). */
  maxDelayMs?: number;
  log: Logger;
  onError?: (key: string, err: unknown) => void;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private running = false;
  private idle: (() => void) | undefined;

  constructor(private readonly options: WorkQueueOptions) {}

  /** Starts the workers; keys added before are processed from now on. */
  start(): void {
    this.running = true;
    this.pump();
  }

  /** Queues a key now, unless it already waits. */
  add(key: string): void {
    this.clearTimer(key);
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  /** Queues a key after a delay; an earlier pending delay for the key wins. */
  addAfter(key: string, delayMs: number): void {
    if (delayMs <= 0) return this.add(key);
    const at = Date.now() + delayMs;
    const pending = this.timers.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Forgets a key's failures, so that its next failure is retried after the first delay again. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Keys waiting or running; for tests and the readiness of a shutdown. */
  get length(): number {
    return this.queue.length + this.processing.size;
  }

  /** Stops taking keys and resolves once the keys being processed are done. */
  async stop(): Promise<void> {
    this.running = false;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    if (this.processing.size === 0) return;
    await new Promise<void>((resolve) => (this.idle = resolve));
  }

  private clearTimer(key: string): void {
    const pending = this.timers.get(key);
    if (!pending) return;
    clearTimeout(pending.timer);
    this.timers.delete(key);
  }

  private pump(): void {
    const concurrency = this.options.concurrency ?? 1;
    while (this.running && this.processing.size < concurrency && this.queue.length > 0) {
      const key = this.queue.shift()!;
      this.queued.delete(key);
      this.processing.add(key);
      void this.process(key);
    }
  }

  private async process(key: string): Promise<void> {
    let retryAfter: number | undefined;
    try {
      const result = await this.options.handler(key);
      this.failures.delete(key);
      retryAfter = result?.requeueAfterMs;
    } catch (err) {
      const failures = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, failures);
      retryAfter = this.backoff(failures);
      this.options.onError?.(key, err);
      this.options.log.debug('requeued after an error', { key, failures, retryAfterMs: retryAfter });
    } finally {
      this.processing.delete(key);
    }
    if (this.running) {
      if (this.dirty.delete(key)) this.add(key);
      else if (retryAfter !== undefined) this.addAfter(key, retryAfter);
    }
    if (!this.running && this.processing.size === 0) this.idle?.();
    this.pump();
  }

  private backoff(failures: number): number {
    const base = this.options.baseDelayMs ?? 5;
    const max = this.options.maxDelayMs ?? 1_000_000;
    return Math.min(max, base * 2 ** Math.min(failures - 1, 30));
  }
}
