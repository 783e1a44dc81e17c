/**
 * A second, independent reader of what a HIS received: python-hl7 0.4.5 (Debian python3-hl7),
 * a parser nobody on this team wrote. Each message is parsed with `hl7.parse`; the fields the
 * end-to-end checks compare are returned as JSON.
 */
import { execFileSync } from 'node:child_process';

export interface PyHl7View {
  msh: { sendingApp: string; type: string; controlId: string; processingId: string; version: string; charset: string };
  pid3: string;
  pid5: string;
  obx: Array<{ type: string; code: string; subId: string; value: string; units: string; range: string; flags: string; status: string }>;
  segments: string[];
}

const SCRIPT = String.raw`
import hl7, json, sys
out = []
for text in json.load(sys.stdin):
    m = hl7.parse(text)
    msh = m.segment('MSH')
    f = lambda s, n: str(s[n]) if len(s) > n else ''
    pids = m.segments('PID') if any(str(s[0]) == 'PID' for s in m) else []
    out.append({
        'msh': {'sendingApp': f(msh, 3), 'type': f(msh, 9), 'controlId': f(msh, 10), 'processingId': f(msh, 11),
                'version': f(msh, 12), 'charset': f(msh, 18)},
        'pid3': f(pids[0], 3) if pids else '',
        'pid5': f(pids[0], 5) if pids else '',
        'obx': [{'type': f(s, 2), 'code': s.extract_field(1, 3, 1, 1) if len(s) > 3 else '', 'subId': f(s, 4), 'value': f(s, 5),
                 'units': f(s, 6), 'range': f(s, 7), 'flags': f(s, 8), 'status': f(s, 11)}
                for s in (m.segments('OBX') if any(str(s[0]) == 'OBX' for s in m) else [])],
        'segments': [str(s[0]) for s in m],
    })
json.dump(out, sys.stdout)
`;

/** Parse each message with python-hl7 (`/usr/bin/python3`, see docs/peers.md). Field texts stay escaped as sent. */
export function pyHl7Parse(messages: string[]): PyHl7View[] {
  const stdout = execFileSync('/usr/bin/python3', ['-c', SCRIPT], { input: JSON.stringify(messages), encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(stdout) as PyHl7View[];
}
