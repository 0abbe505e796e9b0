/**
 * A push-fed async iterable: the producer pushes chunks as the engine makes
 * them, the consumer iterates with `for await`. Chunks pushed before the
 * consumer asks are buffered.
 * @module
 */

/**
 * The stream `create({ stream: true })` resolves to: an async iterable of
 * chunks. Leaving the loop early (`break`) aborts the request.
 */
export class ChunkStream<T> implements AsyncIterable<T> {
  private readonly buffered: T[] = [];
  private waiting?: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void };
  private ended = false;
  private error: unknown;
  private iterated = false;

  /** @param onCancel called when the consumer leaves the loop before the end */
  constructor(private readonly onCancel: () => void = () => {}) {}

  /** Adds a chunk (ignored after the end). */
  push(chunk: T): void {
    if (this.ended) return;
    if (this.waiting) {
      this.waiting.resolve({ value: chunk, done: false });
      this.waiting = undefined;
    } else {
      this.buffered.push(chunk);
    }
  }

  /** Ends the stream after the buffered chunks. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.waiting && this.buffered.length === 0) {
      this.waiting.resolve({ value: undefined, done: true });
      this.waiting = undefined;
    }
  }

  /** Ends the stream with an error, thrown to the consumer after the buffered chunks. */
  fail(error: unknown): void {
    if (this.ended) return;
    this.error = error;
    this.ended = true;
    if (this.waiting && this.buffered.length === 0) {
      this.waiting.reject(error);
      this.waiting = undefined;
    }
  }

  /** The chunks, once (a stream cannot be iterated twice). */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated) throw new TypeError('hearth-llm: a completion stream can be iterated only once');
    this.iterated = true;
    return {
      next: () => {
        if (this.buffered.length > 0) return Promise.resolve({ value: this.buffered.shift()!, done: false });
        if (this.ended) {
          if (this.error !== undefined) {
            const error = this.error;
            this.error = undefined;
            return Promise.reject(error);
          }
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
      },
      return: () => {
        if (!this.ended) this.onCancel();
        this.ended = true;
        this.buffered.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
