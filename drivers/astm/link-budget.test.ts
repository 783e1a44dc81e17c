/**
 * Issue 10 §7: the ASTM link reserves a message's bytes from the in-flight budget. A full budget holds
 * the reply to a frame (the sender waits: stop-and-wait, LIS01 §1.3.4) until bytes are released, at
 * most BUDGET_WAIT_MS, then NAKs; a committed or discarded message gives its bytes back.
 */
import { describe, expect, it } from 'vitest';
import { MemoryBudget } from '../../gateway/src/pipeline/memory-budget';
import { ACK, ENQ, EOT, NAK, encodeFrame } from './frame';
import { AstmLink, BUDGET_WAIT_MS, type LinkEvent } from './link';
import { ManualClock } from './link-clock';

const tick = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};
const frame = (fn: number, rec: string) => encodeFrame(fn, Buffer.from(`${rec}\r`, 'latin1'), true);

function harness(budget: MemoryBudget) {
  const clock = new ManualClock();
  const written: number[] = [];
  const messages: string[][] = [];
  const events: LinkEvent[] = [];
  let heldDuringCommit = -1;
  const link: AstmLink = new AstmLink(
    {
      write: (b) => written.push(...b),
      onMessage: async (r) => {
        heldDuringCommit = budget.heldBy(link);
        messages.push(r.map((x) => x.toString('latin1')));
      },
      onEvent: (e) => events.push(e),
    },
    {},
    clock,
    budget,
  );
  const replies = () => written.filter((b) => b === ACK || b === NAK);
  return { clock, written, messages, events, link, replies, heldDuringCommit: () => heldDuringCommit };
}

describe('AstmLink and the in-flight budget (issue 10 §7)', () => {
  it('a frame that does not fit waits for its reply; released bytes let it in; the committed message gives its bytes back', async () => {
    const budget = new MemoryBudget({ maxBytes: 100, headroomBytes: 50 });
    const other = {};
    expect(budget.tryReserve(other, 60)).toBe(true); // the headroom is someone else's
    const h = harness(budget);
    h.link.onBytes(Buffer.from([ENQ]));
    await tick();
    expect(h.replies()).toEqual([ACK]);
    h.link.onBytes(frame(1, 'H|\\^&|||A'));
    await tick();
    expect(h.replies()).toEqual([ACK]); // no reply while the budget is full
    expect(budget.waiting).toBe(1);
    budget.release(other, 60);
    await tick();
    expect(h.replies()).toEqual([ACK, ACK]);
    expect(budget.heldBy(h.link)).toBe('H|\\^&|||A'.length + 1);
    h.link.onBytes(frame(2, 'L|1|N'));
    await tick();
    expect(h.replies()).toEqual([ACK, ACK, ACK]);
    expect(h.messages).toEqual([['H|\\^&|||A', 'L|1|N']]);
    expect(h.heldDuringCommit()).toBeGreaterThan(0); // held until committed
    expect(budget.heldBy(h.link)).toBe(0);
    expect(budget.used).toBe(0);
    h.link.onBytes(Buffer.from([EOT]));
    await tick();
  });

  it(`still full after ${BUDGET_WAIT_MS} ms: NAK (busy), nothing kept; the retransmitted frame is taken once there is room`, async () => {
    const budget = new MemoryBudget({ maxBytes: 100, headroomBytes: 50 });
    const other = {};
    budget.tryReserve(other, 60);
    const h = harness(budget);
    h.link.onBytes(Buffer.from([ENQ]));
    await tick();
    h.link.onBytes(frame(1, 'H|\\^&|||A'));
    await tick();
    h.clock.advance(BUDGET_WAIT_MS - 1);
    await tick();
    expect(h.replies()).toEqual([ACK]);
    h.clock.advance(1);
    await tick();
    expect(h.replies()).toEqual([ACK, NAK]);
    expect(h.events).toContainEqual(expect.objectContaining({ type: 'nak', reason: 'busy', fn: 1 }));
    expect(budget.waiting).toBe(0);
    expect(budget.heldBy(h.link)).toBe(0);
    budget.release(other, 60);
    h.link.onBytes(frame(1, 'H|\\^&|||A')); // LIS01 §1.3.4: the sender retransmits the NAKed frame
    await tick();
    h.link.onBytes(frame(2, 'L|1|N'));
    await tick();
    expect(h.replies()).toEqual([ACK, NAK, ACK, ACK]);
    expect(h.messages).toEqual([['H|\\^&|||A', 'L|1|N']]);
    expect(budget.used).toBe(0);
  });

  it('a connection closed mid-message gives its bytes back', async () => {
    const budget = new MemoryBudget({ maxBytes: 1000 });
    const h = harness(budget);
    h.link.onBytes(Buffer.from([ENQ]));
    h.link.onBytes(frame(1, 'H|\\^&|||A'));
    await tick();
    expect(budget.used).toBeGreaterThan(0);
    h.link.close();
    expect(budget.used).toBe(0);
  });
});
