import { randomInt } from 'node:crypto';

/** Crockford base32 alphabet (no I, L, O, U): sorts the same as the numbers it encodes. */
export const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

const TIME_CHARS = 10; // 50 bits: epoch ms until year 37648
const COUNTER_CHARS = 3; // 15 bits: 32768 ids per ms before borrowing the next ms
const RANDOM_CHARS = 5; // 25 bits: separates ids of two processes (or a restart) in the same ms
const COUNTER_MAX = 32 ** COUNTER_CHARS - 1;

/** Length of every uid: 18 characters, inside HL7 MSH-10 (ST, 20). */
export const UID_LENGTH = TIME_CHARS + COUNTER_CHARS + RANDOM_CHARS;

function encode(n: number, chars: number): string {
  let out = '';
  for (let i = 0; i < chars; i++) {
    out = CROCKFORD[n % 32] + out;
    n = Math.floor(n / 32);
  }
  return out;
}

/**
 * Stable, sortable, unique message ids: `TTTTTTTTTT CCC RRRRR` (time ms, counter, random), Crockford base32.
 * Monotonic within a process even when the clock steps back (the last time is reused and the counter
 * advances); usable as HL7 MSH-10, FHIR identifier value, MQTT message key.
 */
export class UidGenerator {
  private lastMs = 0;
  private counter = 0;

  constructor(private readonly now: () => number = Date.now, private readonly random: (n: number) => number = (n) => randomInt(n)) {}

  next(): string {
    let ms = this.now();
    if (ms <= this.lastMs) {
      ms = this.lastMs;
      this.counter++;
      if (this.counter > COUNTER_MAX) {
        ms = this.lastMs + 1; // borrow the next millisecond; stays sortable
        this.counter = 0;
      }
    } else {
      this.counter = 0;
    }
    this.lastMs = ms;
    return encode(ms, TIME_CHARS) + encode(this.counter, COUNTER_CHARS) + encode(this.random(32 ** RANDOM_CHARS), RANDOM_CHARS);
  }
}

/** Epoch ms encoded in a uid (for diagnostics). */
export function uidTime(uid: string): number {
  let n = 0;
  for (const c of uid.slice(0, TIME_CHARS)) {
    const v = CROCKFORD.indexOf(c);
    if (v < 0) throw new RangeError(`not a uid: ${uid}`);
    n = n * 32 + v;
  }
  return n;
}
