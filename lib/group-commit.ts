// Group commit: concurrent writers share a database round trip. While a write is in flight, new
// arrivals wait and go together in the next one; there is no timer, so an idle server writes a
// lone item at once and a busy one writes in groups as large as the load makes them.

export interface GroupCommitter<T> {
  /** Resolves once `items` are written, all or none; rejects with the write's error. */
  write(items: T[]): Promise<void>;
  /** Resolves when nothing is waiting or in flight. */
  drain(): Promise<void>;
}

interface Pending<T> {
  items: T[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Wraps a write function that takes many items in one statement.
 *
 *   const rows = createGroupCommitter((items) => insertAll(pool, items), { maxInFlight: 4, maxGroup: 500 });
 *   await rows.write([row]);
 */
export function createGroupCommitter<T>(
  writeAll: (items: T[]) => Promise<void>,
  options: {
    maxInFlight: number;
    /** Largest group, in units of sizeOf. */
    maxGroup: number;
    /** What an item weighs against maxGroup; 1 each by default. */
    sizeOf?: (item: T) => number;
  },
): GroupCommitter<T> {
  const sizeOf = options.sizeOf ?? (() => 1);
  const weigh = (items: T[]) => items.reduce((n, item) => n + sizeOf(item), 0);
  const waiting: Pending<T>[] = [];
  const idle: (() => void)[] = [];
  let inFlight = 0;

  const writeGroup = async (group: Pending<T>[]): Promise<void> => {
    try {
      await writeAll(group.flatMap((p) => p.items));
      group.forEach((p) => p.resolve());
    } catch (err) {
      if (group.length === 1) return group[0]!.reject(err);
      // One caller's bad item (a duplicate key, say) must not fail its neighbours: write each
      // caller's items alone, so that each gets its own answer.
      await Promise.all(
        group.map((p) =>
          writeAll(p.items).then(
            () => p.resolve(),
            (e: unknown) => p.reject(e),
          ),
        ),
      );
    }
  };

  const pump = () => {
    while (inFlight < options.maxInFlight && waiting.length > 0) {
      const group: Pending<T>[] = [waiting.shift()!];
      let size = weigh(group[0]!.items);
      while (waiting.length > 0 && size + weigh(waiting[0]!.items) <= options.maxGroup) {
        const next = waiting.shift()!;
        size += weigh(next.items);
        group.push(next);
      }
      inFlight++;
      void writeGroup(group).finally(() => {
        inFlight--;
        if (inFlight === 0 && waiting.length === 0) idle.splice(0).forEach((fn) => fn());
        pump();
      });
    }
  };

  return {
    write(items) {
      return new Promise<void>((resolve, reject) => {
        waiting.push({ items, resolve, reject });
        pump();
      });
    },
    drain() {
      if (inFlight === 0 && waiting.length === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idle.push(resolve));
    },
  };
}
