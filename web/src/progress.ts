/**
 * Load progress: the events `createEngine({ onProgress })` receives, and the
 * bookkeeping that produces them (monotonic byte counts, throttling).
 * @module
 */

/** The stage of a model load. */
export type LoadPhase = 'manifest' | 'download' | 'upload' | 'ready';

/** One progress event of a model load. */
export interface LoadProgress {
  /**
   * `manifest`: fetching manifest.json; `download`: fetching (or reading from
   * the cache) and verifying the tokenizer and shards; `upload`: a verified
   * shard goes to the GPU (downloads of other shards may still run);
   * `ready`: the engine is loaded (the last event).
   */
  phase: LoadPhase;
  /** Bytes of the package's files obtained so far (downloaded or cached); never decreases. */
  loadedBytes: number;
  /** Bytes of every file of the package (manifest `total_bytes`; 0 until the manifest is read). */
  totalBytes: number;
  /** Shards handed to the GPU so far. */
  shardsDone: number;
  /** Shards of the package (0 until the manifest is read). */
  shardsTotal: number;
  /** Bytes of `loadedBytes` that came from the cache. */
  cachedBytes: number;
  /** The file this event is about, when there is one. */
  file?: string;
}

/** Receives {@link LoadProgress} events. */
export type ProgressCallback = (progress: LoadProgress) => void;

/**
 * Counts bytes per file and emits {@link LoadProgress} events: byte-count
 * updates at most every `intervalMs`, everything else (phase changes, a file
 * finished) at once. A file restarted by a retry does not count its bytes
 * twice, so `loadedBytes` only grows.
 */
export class ProgressTracker {
  private readonly perFile = new Map<string, number>();
  private loaded = 0;
  private cached = 0;
  private shardsDone = 0;
  private lastEmit = -Infinity;
  private phase: LoadPhase = 'manifest';

  /**
   * @param totalBytes bytes of every file of the package
   * @param shardsTotal shards of the package
   * @param callback where events go (exceptions it throws are logged, not propagated)
   * @param intervalMs shortest time between two byte-count events
   * @param now the clock (tests pass their own)
   */
  constructor(
    private readonly totalBytes: number,
    private readonly shardsTotal: number,
    private readonly callback: ProgressCallback | undefined,
    private readonly intervalMs = 100,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** `file` has `bytes` bytes so far in its current attempt (capped at `fileBytes`). */
  bytes(file: string, bytes: number, fileBytes: number): void {
    const before = this.perFile.get(file) ?? 0;
    const after = Math.min(fileBytes, Math.max(before, bytes));
    if (after === before) return;
    this.perFile.set(file, after);
    this.loaded += after - before;
    this.emit('download', file, false);
  }

  /** `file` (of `fileBytes` bytes) is complete; `fromCache` when the cache supplied it. */
  fileDone(file: string, fileBytes: number, fromCache: boolean): void {
    const before = this.perFile.get(file) ?? 0;
    this.perFile.set(file, fileBytes);
    this.loaded += fileBytes - before;
    if (fromCache) this.cached += fileBytes;
    this.emit('download', file, true);
  }

  /** Shard `file` is going to the GPU. */
  uploading(file: string): void {
    this.emit('upload', file, true);
  }

  /** Shard `file` is on the GPU. */
  uploaded(file: string): void {
    this.shardsDone++;
    this.emit('upload', file, true);
  }

  /** Emits a `phase` event now. */
  phaseEvent(phase: LoadPhase): void {
    this.emit(phase, undefined, true);
  }

  /** The current state as an event. */
  snapshot(phase: LoadPhase = this.phase, file?: string): LoadProgress {
    const p: LoadProgress = {
      phase,
      loadedBytes: this.loaded,
      totalBytes: this.totalBytes,
      shardsDone: this.shardsDone,
      shardsTotal: this.shardsTotal,
      cachedBytes: this.cached,
    };
    if (file !== undefined) p.file = file;
    return p;
  }

  private emit(phase: LoadPhase, file: string | undefined, force: boolean): void {
    const now = this.now();
    if (!force && phase === this.phase && now - this.lastEmit < this.intervalMs) return;
    this.phase = phase;
    this.lastEmit = now;
    if (!this.callback) return;
    try {
      this.callback(this.snapshot(phase, file));
    } catch (e) {
      console.error('hearth-llm: onProgress threw:', e);
    }
  }
}
