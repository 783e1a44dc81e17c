/**
 * Shared helpers of the byte transports. The Transport contract itself lives in
 * gateway/src/contracts/transport.ts (architecture §5); re-exported here for the implementations.
 */
import { EventEmitter } from 'node:events';
import type { TransportStatus } from '../../../gateway/src/contracts/transport';

export type { Transport, TransportConnection, TransportState, TransportStatus } from '../../../gateway/src/contracts/transport';

/** The status every transport keeps: `status()` returns a copy, `setStatus()` merges and emits 'state'. */
export abstract class TransportStatusEmitter extends EventEmitter {
  protected st: TransportStatus = { state: 'stopped', connections: 0 };

  status(): TransportStatus {
    return { ...this.st };
  }

  protected setStatus(p: Partial<TransportStatus>): void {
    this.st = { ...this.st, ...p };
    this.emit('state', this.status());
  }
}

/** Exponential backoff with a cap (reopen/reconnect). */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
}

/**
 * Reopen/reconnect timer with exponential backoff: `schedule()` runs `retry` once after the next
 * delay (a second call while one is pending does nothing), `succeeded()` starts over from `baseMs`.
 */
export class RetryTimer {
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly baseMs: number,
    private readonly maxMs: number,
    private readonly retry: () => void,
  ) {}

  schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.retry();
    }, backoffMs(this.attempt++, this.baseMs, this.maxMs));
  }

  succeeded(): void {
    this.attempt = 0;
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
