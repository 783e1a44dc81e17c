/**
 * The golden corpus (issue 8 part 8): one runner for every result-fidelity case, HL7 and ASTM.
 *
 * A case is a folder `<name>/` with
 *   input.hl7 | input.astm        the device's bytes (HL7: one message, MLLP framing optional; ASTM: records one per line)
 *   case.json                     { "driver": "hl7" | "astm", "profile"?: id, "strict"?: bool, "charset"?: name, "fallbackCharset"?: name, "description": "…" }
 *   expected-observations.json    what the parser makes of it: { drafts, withheld, messageFlags? } (JSON as an output sees it)
 *   expected-out.hl7              the ORU^R01 v2.5.1 the HL7 output sends for it (segments one per line here; CR on the wire)
 * Folders: test/golden/cases/ (fidelity faults, both protocols) and drivers/astm/results-cases/ (ASTM profiles).
 *
 * Decoding and parsing use the receivers' own steps (gateway/src/charset, parseHl7 lenient / parseOru,
 * parseRecords / parseAstmMessage with the shipped profile); the output is built by the HL7 output's
 * builder and must also pass the independent v2.5.1 validator (test/helpers/hl7v251-validator.ts).
 * `GOLDEN_UPDATE=1 npx vitest run test/golden` writes the expected files: read every one before committing it.
 */
process.env.TZ = 'Asia/Ho_Chi_Minh'; // MSH-7 carries the local offset: fixed here so the expected bytes are stable
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeHl7Message, decodeWithFallback, type CharsetName } from '../../gateway/src/charset/charset';
import type { Observation, ObservationDraft } from '../../gateway/src/contracts/observation';
import { controlIdForKey } from '../../gateway/src/outputs/hl7-mllp/hl7-mllp-output';
import { loadProfiles } from '../../drivers/astm/profile';
import { parseRecords } from '../../drivers/astm/records';
import { parseAstmMessage } from '../../drivers/astm/results-parser';
import { parseHl7 } from '../../drivers/hl7-mllp/hl7-message';
import { buildOruR251 } from '../../drivers/hl7-mllp/oru-builder';
import { parseOru } from '../../drivers/hl7-mllp/oru-parser';
import { validateOruR01v251 } from '../helpers/hl7v251-validator';
import { normalizeProcessingId } from '../../gateway/src/pipeline/processing-id';

const ROOTS = [join(__dirname, 'cases'), join(__dirname, '../../drivers/astm/results-cases')];
const profiles = loadProfiles(join(__dirname, '../../firmware-config/profiles/astm'));
const update = process.env.GOLDEN_UPDATE === '1';
const RECEIVED_AT = '2026-11-30T03:15:00.000Z';

interface CaseSpec {
  driver?: 'hl7' | 'astm';
  profile?: string;
  strict?: boolean;
  charset?: CharsetName;
  fallbackCharset?: CharsetName;
  description?: string;
}

/** What a receiver hands on: drafts + withheld parts + message flags + processing id. */
function parseCase(dir: string, spec: CaseSpec): { observations: Record<string, unknown>; drafts: ObservationDraft[]; processingId?: string } {
  const hl7 = existsSync(join(dir, 'input.hl7'));
  let raw = readFileSync(join(dir, hl7 ? 'input.hl7' : 'input.astm'));
  if (hl7) {
    // MLLP framing (VT … FS CR) is the transport's: strip it as the decoder does
    if (raw[0] === 0x0b) raw = raw.subarray(1);
    const fs = raw.indexOf(0x1c);
    if (fs !== -1) raw = raw.subarray(0, fs);
    const d = decodeHl7Message(raw, { listenerCharset: spec.charset ?? 'utf8', fallback: spec.fallbackCharset });
    const r = parseOru(parseHl7(d.text, { lenient: !spec.strict }), { strict: spec.strict });
    const observations = { charset: d.charset, usedFallback: d.usedFallback, drafts: r.drafts, withheld: r.withheld, messageFlags: r.messageFlags };
    return { observations, drafts: r.drafts, processingId: r.header.processingId || undefined };
  }
  const profile = profiles.get(spec.profile ?? 'generic-lis2-a2');
  if (!profile) throw new Error(`case.json names an unknown profile '${spec.profile}'`);
  const d = decodeWithFallback(raw, profile.encoding, profile.fallbackEncoding);
  const parsed = parseAstmMessage(parseRecords(d.text.split(/\r\n|\r|\n/)), profile);
  const observations = { drafts: parsed.drafts, withheld: parsed.withheld };
  // as the ASTM driver: a QC specimen (O.12 Q) makes the message quality control (processing id Q)
  const processingId = parsed.qualityControl ? 'Q' : normalizeProcessingId(parsed.header.processingId);
  return { observations, drafts: parsed.drafts, processingId };
}

function expand(drafts: ObservationDraft[], processingId: string | undefined): Observation[] {
  return drafts.map((d, i) => {
    const o = Object.assign({}, d) as Observation;
    o.id = `GOLDEN-${i + 1}`;
    o.messageId = 1;
    o.messageUid = 'GOLDEN';
    o.seq = i + 1;
    o.deviceId = 'golden';
    o.driver = 'golden';
    o.receivedAt = RECEIVED_AT;
    if (processingId) o.processingId = processingId;
    return o;
  });
}

const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

for (const root of ROOTS) {
  const names = existsSync(root)
    ? readdirSync(root, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name)
        .sort()
    : [];
  describe(`golden cases in ${root.replace(/^.*?(test\/|drivers\/)/, '$1')}`, () => {
    it('has cases', () => expect(names.length).toBeGreaterThan(5));
    for (const name of names) {
      it(name, () => {
        const dir = join(root, name);
        const spec = (existsSync(join(dir, 'case.json')) ? JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) : {}) as CaseSpec;
        const { observations, drafts, processingId } = parseCase(dir, spec);
        const obsFile = join(dir, 'expected-observations.json');
        const gotObs = plain(observations) as Record<string, unknown>;
        if (update) writeFileSync(obsFile, `${JSON.stringify(gotObs, null, 2)}\n`);
        expect(existsSync(obsFile), `${obsFile} missing (GOLDEN_UPDATE=1 writes it)`).toBe(true);
        const want = JSON.parse(readFileSync(obsFile, 'utf8')) as Record<string, unknown>;
        expect(gotObs).toEqual(want);

        const outFile = join(dir, 'expected-out.hl7');
        if (!drafts.length) {
          // nothing to send (e.g. every result withheld): the output is never asked to build an empty message
          expect(existsSync(outFile)).toBe(false);
          return;
        }
        const out = buildOruR251(expand(drafts, processingId), {
          controlId: controlIdForKey('GOLDEN'),
          sendingApp: 'IOMT-GW',
          sendingFacility: 'BV_DEMO',
          receivingApp: 'HIS',
          country: 'VNM',
          charset: 'UNICODE UTF-8',
          now: new Date(RECEIVED_AT),
        });
        // the wire separates segments with CR; the file has one segment per line to be readable in a diff
        const readable = `${out.split('\r').join('\n')}\n`;
        if (update) writeFileSync(outFile, readable);
        expect(existsSync(outFile), `${outFile} missing (GOLDEN_UPDATE=1 writes it)`).toBe(true);
        expect(readable).toBe(readFileSync(outFile, 'utf8'));
        expect(out).not.toMatch(/[\x00-\x0c\x0e-\x1f\x7f]/); // control characters never raw (only CR between segments)
        expect(validateOruR01v251(out)).toEqual([]);
      });
    }
  });
}
