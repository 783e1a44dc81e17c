import { describe, expect, it } from 'vitest';
import { writeFileSync, statSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { loadSettings } from './settings';
import { resolveEnvTemplate, resolveNumber, resolveBool } from './env-template';
import { checkFlowFile } from './flow-check';
import { resolveAdminCredentials } from './admin-credentials';
import { ConfigError } from '../contracts/errors';
import { tempDir } from '../../../test/helpers/env';
import { NODE_SPECS, knownProfileIds } from './node-specs';
import { checkFieldValue, validateNode, specMarkdown, editorDefaults } from './field-spec';
import { checkFlowNodes } from './flow-check';

describe('settings', () => {
  it('defaults, then file, then IOMT_* environment', () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'settings.json');
      writeFileSync(f, JSON.stringify({ http: { port: 1999 }, logLevel: 'warn', dataDir: 'state' }));
      const s = loadSettings({ file: f, env: { IOMT_HTTP_PORT: '2999', IOMT_ADMIN_USER: 'it-team' } });
      expect(s.http.port).toBe(2999);
      expect(s.logLevel).toBe('warn');
      expect(s.admin.user).toBe('it-team');
      expect(s.dataDir).toBe(join(t.dir, 'state')); // relative to the settings file
      expect(s.retention.maxAgeDays).toBe(30);
    } finally {
      t.cleanup();
    }
  });

  it('reports every problem at once with file, path and reason', () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'settings.json');
      writeFileSync(f, JSON.stringify({ http: { port: 99999 }, logLevel: 'loud', admin: { user: 'bad user!', password: 'short' } }));
      let err: unknown;
      try {
        loadSettings({ file: f, env: { IOMT_STORE_MAX_BYTES: 'lots' } });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      const paths = (err as ConfigError).problems.map((p) => p.path).sort();
      expect(paths).toEqual(['admin.password', 'admin.user', 'http.port', 'logLevel', 'store.maxDbBytes'].sort());
      expect((err as ConfigError).problems.find((p) => p.path === 'http.port')!.file).toBe(f);
      expect((err as ConfigError).problems.find((p) => p.path === 'store.maxDbBytes')!.file).toBe('env IOMT_STORE_MAX_BYTES');
    } finally {
      t.cleanup();
    }
  });
});

describe('${ENV} in node properties', () => {
  it('substitutes, applies defaults, and leaves unknown empty', () => {
    const env = { A: 'x', P: '2575' };
    expect(resolveEnvTemplate('${A}', env)).toBe('x');
    expect(resolveEnvTemplate('pre-${A}-post', env)).toBe('pre-x-post');
    expect(resolveEnvTemplate('${B:-dflt}', env)).toBe('dflt');
    expect(resolveEnvTemplate('${B}', env)).toBe('');
    expect(resolveNumber('${P}', 1, env)).toBe(2575);
    expect(resolveNumber('${Q}', 7, env)).toBe(7);
    expect(resolveNumber('abc', 7, env)).toBeNaN();
    expect(resolveBool('${T:-true}', false, env)).toBe(true);
  });
});

describe('flow check', () => {
  it('accepts the shipped relay flow and reports bad ports, dangling wires and duplicate ids', () => {
    const root = join(__dirname, '..', '..', '..');
    expect(checkFlowFile(join(root, 'flows', 'hl7-relay.json'), {})).toEqual([]);
    const t = tempDir();
    try {
      const f = join(t.dir, 'flows.json');
      writeFileSync(
        f,
        JSON.stringify([
          { id: 'a', type: 'iomt-hl7-in', port: '${IN}', deviceId: 'dev', wires: [['nope']] },
          { id: 'b', type: 'iomt-hl7-in', port: '2575', deviceId: 'dev', wires: [[]] },
          { id: 'c', type: 'iomt-hl7-out', port: '70000', wires: [] },
        ]),
      );
      const problems = checkFlowFile(f, { IN: 'not-a-port' });
      const reasons = problems.map((p) => `${p.path}: ${p.reason}`).join('\n');
      expect(reasons).toMatch(/port.*not-a-port/);
      expect(reasons).toMatch(/wired to a node that does not exist: 'nope'/);
      expect(reasons).toMatch(/deviceId: same device id as/);
      expect(reasons).toMatch(/iomt-hl7-out.*port/);
      expect(problems.every((p) => p.file === f)).toBe(true);
    } finally {
      t.cleanup();
    }
  });
});

describe('admin credentials', () => {
  it('generates a random password on first start, keeps only its bcrypt hash, writes the password 0600, and reuses the hash later', () => {
    const t = tempDir();
    try {
      const settings = loadSettings({ env: { IOMT_DATA_DIR: t.dir } });
      const first = resolveAdminCredentials(settings);
      expect(first.generatedPassword).toMatch(/^[A-Za-z0-9_-]{20,}$/);
      expect(bcrypt.compareSync(first.generatedPassword!, first.passwordHash)).toBe(true);
      const file = join(t.dir, 'admin-password.txt');
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(readFileSync(join(t.dir, 'admin.json'), 'utf8')).not.toContain(first.generatedPassword!);
      const second = resolveAdminCredentials(settings);
      expect(second.generatedPassword).toBeUndefined();
      expect(second.passwordHash).toBe(first.passwordHash);
      // an explicit password wins and nothing is generated
      const t2 = tempDir();
      const s2 = loadSettings({ env: { IOMT_DATA_DIR: t2.dir, IOMT_ADMIN_PASSWORD: 'correct horse battery' } });
      const c = resolveAdminCredentials(s2);
      expect(c.generatedPassword).toBeUndefined();
      expect(bcrypt.compareSync('correct horse battery', c.passwordHash)).toBe(true);
      expect(existsSync(join(t2.dir, 'admin-password.txt'))).toBe(false);
      t2.cleanup();
    } finally {
      t.cleanup();
    }
  });
});

describe('bool properties (checkboxes) with ${VAR:-default}', () => {
  // [stored value, environment, expected] — the shipped flows hold '${HL7_IN_TLS:-false}'
  const cases: Array<[unknown, Record<string, string>, boolean | 'throws']> = [
    [false, {}, false],
    [true, {}, true],
    ['${HL7_IN_TLS:-false}', {}, false],
    ['${HL7_IN_TLS:-false}', { HL7_IN_TLS: 'true' }, true],
    ['${HL7_IN_TLS:-true}', { HL7_IN_TLS: '0' }, false],
    ['${HL7_IN_TLS}', {}, false], // empty → default
    ['${HL7_IN_TLS}', { HL7_IN_TLS: 'On' }, true],
    ['no', {}, false],
    ['${HL7_IN_TLS:-flase}', {}, 'throws'], // a typo never silently turns TLS on or off
    ['maybe', {}, 'throws'],
  ];
  it.each(cases)('resolveBool(%j, %j) → %s', (stored, env, want) => {
    if (want === 'throws') expect(() => resolveBool(stored, false, env)).toThrow(/does not resolve to true or false/);
    else expect(resolveBool(stored, false, env)).toBe(want);
  });
});

describe('field specs', () => {
  const root = join(__dirname, '..', '..', '..');
  // every node-red/<type>.html of the drivers and outputs: each has a spec, each spec has its editor
  const html: Record<string, string> = {};
  for (const base of ['drivers', 'gateway/src/outputs']) {
    for (const d of readdirSync(join(root, base))) {
      const dir = join(root, base, d, 'node-red');
      if (!existsSync(dir)) continue;
      for (const f of readdirSync(dir)) if (f.endsWith('.html')) html[f.slice(0, -5)] = join(dir, f);
    }
  }
  it('cover every node type, and every field has an editor input (bool fields a checkbox/template widget)', () => {
    expect(NODE_SPECS.map((s) => s.type).sort()).toEqual(Object.keys(html).sort());
    for (const spec of NODE_SPECS) {
      const text = readFileSync(html[spec.type], 'utf8');
      expect(text).toContain(`iomtFields.defaults('${spec.type}')`);
      for (const f of spec.fields) {
        if (f.type === 'bool') {
          expect(text, `${spec.type}.${f.name}`).toContain(`data-field="${f.name}"`);
          expect(text, `${spec.type}.${f.name}`).not.toContain(`type="checkbox" id="node-input-${f.name}"`);
        } else expect(text, `${spec.type}.${f.name}`).toMatch(new RegExp(`id="node-input-${f.name}"`));
      }
    }
  });
  it('literal defaults pass their own validation; the shipped flows use only spec fields', () => {
    for (const spec of NODE_SPECS) {
      for (const f of spec.fields) {
        if (typeof f.default === 'string' && f.default.includes('${')) continue;
        if (f.type === 'file') continue;
        expect(checkFieldValue({ ...f, required: false }, f.default, { env: {} }), `${spec.type}.${f.name}`).toBeUndefined();
      }
    }
    const structural = new Set(['id', 'type', 'z', 'x', 'y', 'wires', 'g', 'd']);
    for (const file of readdirSync(join(root, 'flows')).filter((f) => f.endsWith('.json'))) {
      const nodes = JSON.parse(readFileSync(join(root, 'flows', file), 'utf8')) as Array<Record<string, unknown>>;
      for (const n of nodes) {
        const spec = NODE_SPECS.find((s) => s.type === n.type);
        if (!spec) continue;
        for (const k of Object.keys(n)) if (!structural.has(k)) expect(spec.fields.map((f) => f.name), `${file} ${String(n.id)}.${k}`).toContain(k);
      }
    }
  });
  it('editor defaults and docs come from the spec', () => {
    const hl7in = NODE_SPECS.find((s) => s.type === 'iomt-hl7-in')!;
    expect(editorDefaults(hl7in).port).toEqual({ value: '2575', required: true });
    expect(editorDefaults(hl7in).tls).toEqual({ value: false });
    const md = specMarkdown(hl7in);
    for (const f of hl7in.fields) expect(md).toContain(`| \`${f.name}\` |`);
  });
  it('knows the shipped ASTM profiles', () => {
    const ids = knownProfileIds({});
    expect(ids.astm.has('generic-lis2-a2')).toBe(true);
    expect(ids.astm.has('sysmex-xn')).toBe(true);
    expect(ids.astm.has('no-such')).toBe(false);
  });
  it('a required field left empty by its variable says so', () => {
    const out = NODE_SPECS.find((s) => s.type === 'iomt-hl7-out')!;
    const problems = validateNode(out, { host: '${HIS_HOST}', port: '2576' }, 'f.json', '[0]', { env: {} });
    expect(problems).toEqual([{ file: 'f.json', path: '[0].host', reason: expect.stringMatching(/HIS_HOST.*empty; set the variable or give a default/) }]);
  });
});

describe('check-config on broken flows (one fault each, on the shipped lab flow)', () => {
  const root = join(__dirname, '..', '..', '..');
  const base = () => JSON.parse(readFileSync(join(root, 'flows', 'lab-astm-to-his.json'), 'utf8')) as Array<Record<string, unknown>>;
  const byId = (nodes: Array<Record<string, unknown>>, id: string) => nodes.find((n) => n.id === id)!;
  const env = {};
  const cases: Array<[string, (n: Array<Record<string, unknown>>) => void, RegExp]> = [
    ['ASTM TCP port 99999', (n) => (byId(n, 'astm-tcp').tcpPort = '99999'), /Analyzer on TCP'\.tcpPort: '99999' is not a port number 1\.\.65535/],
    ['port from a variable out of range', (n) => (byId(n, 'astm-tcp').tcpPort = '${X:-70000}'), /tcpPort: '\$\{X:-70000\}' \(resolves to '70000'\) is not a port number/],
    ['unknown profile', (n) => (byId(n, 'astm-serial').profile = 'sysmex-xx'), /\.profile: unknown profile 'sysmex-xx'/],
    ['unknown transport', (n) => (byId(n, 'astm-serial').transport = 'usb'), /\.transport: 'usb' is not one of: serial, tcp-server, tcp-client/],
    ['mistyped node type', (n) => (byId(n, 'astm-serial').type = 'iomt-astm-devise'), /\.type: unknown node type 'iomt-astm-devise' \(did you mean 'iomt-astm-device'\?\)/],
    ['two nodes on one port', (n) => (byId(n, 'hl7-orders-in').port = '${ASTM_TCP_PORT:-5000}'), /hl7-in 'Orders from HIS\/LIS'\.port: port 5000 is already listened on by \[2\] iomt-astm-device 'Analyzer on TCP'/],
    ['empty HIS host', (n) => (byId(n, 'hl7-out-his-lab').host = ''), /hl7-out 'HIS \(HL7 v2\.5\.1\)'\.host: required, but empty/],
    ['TLS on with missing files', (n) => Object.assign(byId(n, 'hl7-orders-in'), { tls: true, tlsCert: '/nonexistent/server.crt', tlsKey: '' }), /tlsCert: file not found: \/nonexistent\/server\.crt[\s\S]*tlsKey: required, but empty/],
    ['TLS bool typo', (n) => (byId(n, 'hl7-out-his-lab').tls = '${HIS_TLS:-ture}'), /\.tls: '\$\{HIS_TLS:-ture\}' does not resolve to true or false/],
    ['duplicate device id', (n) => (byId(n, 'astm-tcp').deviceId = 'astm-serial'), /deviceId: same device id as/],
    ['serial without a path', (n) => (byId(n, 'astm-serial').serialPath = ''), /serialPath: required, but empty/],
  ];
  it('the unmodified flow passes', () => {
    expect(checkFlowNodes(base(), 'lab.json', { env })).toEqual([]);
  });
  it.each(cases)('%s', (_name, mutate, want) => {
    const nodes = base();
    mutate(nodes);
    const problems = checkFlowNodes(nodes, 'lab.json', { env });
    const text = problems.map((p) => `${p.file}: ${p.path}: ${p.reason}`).join('\n');
    expect(text).toMatch(want);
    expect(problems.length, text).toBeLessThanOrEqual(2);
  });
  it('a listener on the gateway HTTP port clashes', () => {
    const problems = checkFlowNodes(base(), 'lab.json', { env, httpPort: 2577 });
    expect(problems.map((p) => p.reason)).toEqual([expect.stringMatching(/port 2577 is the gateway's own HTTP port/)]);
  });
  it('disabled nodes are not field-checked', () => {
    const nodes = base();
    Object.assign(byId(nodes, 'astm-tcp'), { tcpPort: '99999', d: true });
    expect(checkFlowNodes(nodes, 'lab.json', { env })).toEqual([]);
  });
});
