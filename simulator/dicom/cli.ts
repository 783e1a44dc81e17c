/**
 * `iomt-gateway simulate modality`: a simulated imaging modality (issue 11 §8). See MODALITY_USAGE.
 */
import { readFileSync } from 'node:fs';
import { parseOpts, UsageError, type Out } from '../options';
import { fileObject, generatedObject, newUid, type ObjectInfo } from './objects';
import { AssociationRejected } from './scu';
import { defaultWorklistQuery, echo, mppsFinish, mppsStart, store, text, worklist, type Peer, type StoreFault } from './modality';

export const MODALITY_USAGE = `usage: iomt-gateway simulate modality --host H --port P [options]

  A simulated imaging modality (DICOM SCU). Steps (--do, comma-separated, in this order):
    echo    C-ECHO
    find    worklist query (MWL C-FIND): own AE as Scheduled Station AE, --modality, --date
    mpps    MPPS N-CREATE IN PROGRESS for the chosen worklist item (the first, or --accession),
            and N-SET COMPLETED after the store step (DISCONTINUED when the store failed)
    store   C-STORE of --count generated objects of --size bytes (streamed: a 1G object needs
            no 1 GB of memory), or of the given --file objects (Part-10, sent as written)
  Default: --do echo,find,mpps,store

  --aet AE            our (calling) AE title, default MODALITY
  --aec AE            the gateway's (called) AE title, default IOMT_GW
  --modality M        default CT
  --date D            SPS start date to ask for (YYYYMMDD, a range, or 'any'); default today
  --accession A       pick the worklist item with this accession number
  --count N           generated objects (default 1)
  --size S            pixel bytes per generated object: 512K, 20M, 1G ... (default 512K)
  --file F            a Part-10 file to send (repeatable)
  --fault F           (repeatable) abort       A-ABORT half-way through the first object
                                   vanish      drop the TCP connection half-way (no A-ABORT)
                                   wrong-aet   call the gateway with a wrong called AE title
                                   bad-ts      propose only an unsupported transfer syntax
                                   slow-reader stop reading the socket for --slow-ms after sending
  --slow-ms MS        default 5000
  --timeout-ms MS     per answer, default 30000
  --tls-ca FILE       DICOM TLS (PS3.15 B.1): verify the gateway's certificate against this CA
  --tls-cert FILE --tls-key FILE   our client certificate (mutual TLS)

  Prints one line per step (statuses in hex; no patient data). Exit 0 when every step succeeded,
  or, with --fault, when the gateway reacted as it must (no success for a broken transfer,
  A-ASSOCIATE-RJ for a wrong AE title, a rejected context for a bad transfer syntax); else 1.
`;

const hex = (n: number | undefined) => (n === undefined ? '-' : `0x${n.toString(16).padStart(4, '0').toUpperCase()}`);

export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMG]?)B?$/i.exec(s.trim());
  if (!m) throw new UsageError(`--size '${s}' is not a size (e.g. 512K, 20M, 1G)`);
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Math.round(Number(m[1]) * mult);
}

const FAULTS = new Set(['abort', 'vanish', 'wrong-aet', 'bad-ts', 'slow-reader']);

export async function simulateModality(argv: string[], out: Out): Promise<number> {
  const lists: Record<string, string[]> = {};
  const o = parseOpts(
    argv,
    { host: 'string', port: 'string', aet: 'string', aec: 'string', modality: 'string', date: 'string', accession: 'string', count: 'string', size: 'string', file: 'list', fault: 'list', 'slow-ms': 'string', 'timeout-ms': 'string', do: 'string', 'tls-ca': 'string', 'tls-cert': 'string', 'tls-key': 'string', help: 'flag' },
    lists,
  );
  if (o.help) {
    out.log(MODALITY_USAGE);
    return 0;
  }
  if (!o.host) throw new UsageError('--host is required');
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError('--port is required (1..65535)');
  const faults = lists.fault ?? [];
  for (const f of faults) if (!FAULTS.has(f)) throw new UsageError(`unknown --fault '${f}'`);
  const steps = (o.do ?? 'echo,find,mpps,store').split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of steps) if (!['echo', 'find', 'mpps', 'store'].includes(s)) throw new UsageError(`unknown step '${s}' in --do`);
  const count = Number(o.count ?? 1);
  if (!Number.isInteger(count) || count < 0) throw new UsageError('--count must be an integer >= 0');
  const size = parseSize(o.size ?? '512K');
  const modality = (o.modality ?? 'CT').toUpperCase();
  const calling = o.aet ?? 'MODALITY';
  const peer: Peer = { host: o.host, port, calling, called: faults.includes('wrong-aet') ? 'NOT_THE_GATEWAY' : o.aec ?? 'IOMT_GW', timeoutMs: Number(o['timeout-ms'] ?? 30_000) };
  if (o['tls-ca'] || o['tls-cert'] || o['tls-key']) {
    if (!!o['tls-cert'] !== !!o['tls-key']) throw new UsageError('--tls-cert and --tls-key go together');
    peer.tls = { ...(o['tls-ca'] ? { ca: readFileSync(o['tls-ca']) } : {}), ...(o['tls-cert'] ? { cert: readFileSync(o['tls-cert']), key: readFileSync(o['tls-key']) } : {}) };
  }
  const today = new Date();
  const date = o.date === 'any' ? '' : o.date ?? `${today.getFullYear()}${String(today.getMonth() + 1).padStart(2, '0')}${String(today.getDate()).padStart(2, '0')}`;

  let ok = true;
  let faultSeen = false;
  let item: Record<string, unknown> | undefined;
  let mppsUid: string | undefined;
  try {
    if (steps.includes('echo')) {
      const s = await echo(peer);
      out.log(`echo ${hex(s)}`);
      ok &&= s === 0;
    }
    if (steps.includes('find')) {
      const r = await worklist(peer, defaultWorklistQuery({ stationAeTitle: calling, modality, date }));
      item = o.accession ? r.items.find((i) => text(i.AccessionNumber) === o.accession) : r.items[0];
      out.log(`find ${hex(r.status)} items=${r.items.length}${item ? ` chosen accession=${text(item.AccessionNumber) || '(none)'}` : ''}`);
      ok &&= r.status === 0;
    }
    if (steps.includes('mpps')) {
      if (!item) {
        out.log('mpps skipped: no worklist item');
        ok = false;
      } else {
        mppsUid = newUid();
        const s = await mppsStart(peer, mppsUid, item, modality);
        out.log(`mpps n-create IN PROGRESS ${hex(s)}`);
        ok &&= s === 0;
      }
    }
    let stored: Awaited<ReturnType<typeof store>> = [];
    const seriesUid = newUid();
    const objects: ObjectInfo[] = [];
    if (steps.includes('store')) {
      for (const f of lists.file ?? []) objects.push(fileObject(f));
      if (!(lists.file ?? []).length) {
        for (let i = 0; i < count; i++) {
          objects.push(
            generatedObject({
              bytes: size,
              modality,
              seriesInstanceUid: seriesUid,
              ...(item ? { patientName: text(item.PatientName), patientId: text(item.PatientID), accessionNumber: text(item.AccessionNumber), studyInstanceUid: text(item.StudyInstanceUID) || undefined } : {}),
            }),
          );
        }
      }
      const t0 = Date.now();
      stored = await store(peer, objects, faults.filter((f): f is StoreFault => f !== 'wrong-aet'), Number(o['slow-ms'] ?? 5000));
      const bytes = stored.reduce((a, r) => a + (r.status === 0 ? r.bytes : 0), 0);
      const secs = Math.max(1, Date.now() - t0) / 1000;
      for (const r of stored) if (r.status !== 0) out.log(`store ${r.sopInstanceUid.slice(-12)} ${r.status !== undefined ? hex(r.status) : `failed: ${r.error}`}`);
      const good = stored.filter((r) => r.status === 0).length;
      out.log(`store ok=${good}/${objects.length} ${(bytes / 1048576).toFixed(1)} MiB ${(bytes / 1048576 / secs).toFixed(1)} MiB/s`);
      if (faults.some((f) => f === 'abort' || f === 'vanish' || f === 'bad-ts')) faultSeen = stored.length > 0 && stored[0].status !== 0;
      ok &&= good === objects.length;
    }
    if (mppsUid && steps.includes('mpps')) {
      const done = !steps.includes('store') || (stored.length > 0 && stored.every((r) => r.status === 0));
      const s = await mppsFinish(peer, mppsUid, done ? 'COMPLETED' : 'DISCONTINUED', done && stored.length ? [{ seriesInstanceUid: seriesUid, sopClassUid: objects[0].sopClassUid, sopInstanceUids: stored.map((r) => r.sopInstanceUid) }] : []);
      out.log(`mpps n-set ${done ? 'COMPLETED' : 'DISCONTINUED'} ${hex(s)}`);
      ok &&= s === 0;
    }
  } catch (e) {
    if (e instanceof AssociationRejected) {
      out.log(`association rejected: ${e.message}`);
      if (faults.includes('wrong-aet') && e.source === 1 && e.reason === 7) faultSeen = true; // PS3.8 9.3.4 reason 7
    } else out.log(`failed: ${(e as Error).message}`);
    ok = false;
  }
  if (faults.length) {
    out.log(`fault ${faults.join(',')}: ${faultSeen || (faults.length === 1 && faults[0] === 'slow-reader' && ok) ? 'the gateway reacted as it must' : 'UNEXPECTED outcome'}`);
    return faultSeen || (faults.length === 1 && faults[0] === 'slow-reader' && ok) ? 0 : 1;
  }
  return ok ? 0 : 1;
}
