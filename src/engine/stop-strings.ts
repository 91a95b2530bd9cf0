/**
 * Stop strings over streamed text.
 *
 * A stop string can arrive split over several tokens ("\n\n" as "\n" + "\n", "END" as "E" + "ND"),
 * and text that was already streamed cannot be taken back. So when the stop string is to be cut
 * from the output, any suffix that could still grow into a stop string is held back until the next
 * delta settles it (vLLM holds back `max(len(stop)) - 1` characters; holding back only a real
 * partial match emits sooner and is otherwise equivalent).
 *
 * When the stop string is kept in the output (`includeInOutput`), nothing needs holding back: the
 * text before the stop string is output either way. We then remember the tail of emitted text so a
 * stop string that began in an earlier delta is still found.
 *
 * Several stop strings: the completed match that starts first wins (ties: the one listed first).
 * We stop as soon as one completes; a longer stop string that started earlier but is still
 * incomplete does not delay the stop (a stream cannot wait for text that may never come).
 */
export interface StopPushResult {
  /** Text that is final and safe to send now. */
  emit: string;
  /** The stop string that completed in this push, or null. */
  stopped: string | null;
}

export class StopStringMatcher {
  private readonly stops: string[];
  private readonly maxLen: number;
  /** Text received but not emitted yet (only when the stop string is excluded from the output). */
  private pending = '';
  /** The last `maxLen - 1` emitted characters (only when the stop string is included). */
  private tail = '';
  private done: string | null = null;

  constructor(stops: readonly string[], private readonly includeInOutput: boolean) {
    this.stops = stops.filter((s) => s.length > 0);
    this.maxLen = this.stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  /** The stop string that ended the text, or null while running. */
  get stopped(): string | null {
    return this.done;
  }

  push(delta: string): StopPushResult {
    if (this.done !== null) return { emit: '', stopped: this.done };
    if (this.stops.length === 0) return { emit: delta, stopped: null };

    const text = this.tail + this.pending + delta;
    // Characters before `fresh` were emitted already (include mode), so a match must end after it.
    const fresh = this.tail.length;
    let bestIdx = -1;
    let best: string | null = null;
    for (const s of this.stops) {
      const idx = text.indexOf(s, Math.max(0, fresh - s.length + 1));
      if (idx >= 0 && (bestIdx < 0 || idx < bestIdx)) {
        bestIdx = idx;
        best = s;
      }
    }

    if (best !== null) {
      const cut = this.includeInOutput ? bestIdx + best.length : bestIdx;
      this.done = best;
      const emit = cut > fresh ? text.slice(fresh, cut) : '';
      this.pending = '';
      this.tail = '';
      return { emit, stopped: best };
    }

    if (this.includeInOutput) {
      this.tail = text.slice(Math.max(0, text.length - (this.maxLen - 1)));
      return { emit: text.slice(fresh), stopped: null };
    }
    const hold = this.partialSuffixLength(text);
    this.pending = text.slice(text.length - hold);
    return { emit: text.slice(0, text.length - hold), stopped: null };
  }

  /** End of generation without a stop string: release the held-back text. */
  flush(): string {
    const rest = this.pending;
    this.pending = '';
    return rest;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private partialSuffixLength(text: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let len = Math.min(s.length - 1, text.length); len > best; len--) {
        if (text.endsWith(s.slice(0, len))) {
          best = len;
          break;
        }
      }
    }
    return best;
  }
}
