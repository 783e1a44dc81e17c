import type { CommitResult, InboundMessage } from '../contracts/driver';
import type { Logger } from 'pino';
import { metrics } from '../metrics/registry';

/**
 * After a driver's commit (architecture §3 step 4), the same for every driver: count it as committed
 * or as a duplicate (a repeat is logged and not handed on), and hand a new message to the driver's
 * `onCommitted` hook (the device node emits it into the flow); a failing hook never fails the ACK.
 * A new message whose sender + control id had been stored before for other content
 * (`result.controlIdReused`, store README "Duplicates and reused control ids") is counted in
 * `iomt_control_id_reused_total` and logged once at warn: device, message id/uid and the control id
 * (MSH-10 / ASTM H.3: an instrument's counter, not patient data); never the payload.
 */
export function reportCommitted(
  log: Logger,
  result: CommitResult,
  inbound: InboundMessage,
  onCommitted: ((r: CommitResult, inbound: InboundMessage) => void) | undefined,
  duplicate: { connId: string | number; msg: string },
): void {
  const device = inbound.deviceId;
  if (result.duplicate) {
    metrics.duplicates.inc({ device });
    log.info({ conn: duplicate.connId, messageId: result.messageId }, duplicate.msg);
    return;
  }
  metrics.committed.inc({ device });
  if (result.controlIdReused) {
    metrics.controlIdReused.inc({ device });
    log.warn(
      { device, messageId: result.messageId, messageUid: result.messageUid, controlId: inbound.sourceMessageId },
      'control id reused for other content: stored and delivered as a new message, flagged control-id-reused',
    );
  }
  try {
    onCommitted?.(result, inbound);
  } catch (e) {
    log.error({ err: String(e) }, 'onCommitted callback failed');
  }
}
